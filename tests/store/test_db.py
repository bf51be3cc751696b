"""The profile store's database layer, on SQLite and on a real (throwaway) PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mosel.errors import NotFound
from mosel.store import db, schema
from mosel.store.db import open_store
from mosel.store.postgres import PostgresStore
from mosel.store.sqlite import SqliteStore
from tests.pg import postgres_server, postgres_url  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


def _unmigrated(url: str) -> db.Store:
    return PostgresStore(url) if url.startswith("postgresql://") else SqliteStore(Path(url))


def test_versions_increase_per_model_and_kind(store):
    refs = [store.put("m1", db.LATENCY_PROFILE, json.dumps({"n": i})) for i in range(3)]
    assert [r.version for r in refs] == [1, 2, 3]
    assert [r.kind for r in refs] == [db.LATENCY_PROFILE] * 3
    # Other kinds and other models count from 1 on their own.
    assert store.put("m1", db.ACCURACY_PROFILE, "{}").version == 1
    assert store.put("m2", db.LATENCY_PROFILE, "{}").version == 1
    assert store.put("m1", db.LATENCY_PROFILE, "{}").version == 4
    seqs = [r.seq for r in refs]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert all(r.created_unix_ms > 1_600_000_000_000 for r in refs)
    assert [r.version for r in store.list_versions("m1", db.LATENCY_PROFILE)] == [1, 2, 3, 4]
    assert store.list_versions("nobody", db.LATENCY_PROFILE) == []


def test_get_latest_exact_and_variant(store):
    store.put("m", db.LATENCY_PROFILE, '{"v": 1}', variant="cpu-fp32")
    store.put("m", db.LATENCY_PROFILE, '{"v": 2}', variant="cuda-fp16")
    store.put("m", db.LATENCY_PROFILE, '{"v": 3}', variant="cpu-fp32")
    store.put("m", db.LATENCY_PROFILE, '{"v": 4}', variant="cuda-fp16")

    latest = store.get("m", db.LATENCY_PROFILE)
    assert (latest.ref.version, latest.ref.variant, latest.payload) == (4, "cuda-fp16", '{"v": 4}')
    exact = store.get("m", db.LATENCY_PROFILE, version=2)
    assert (exact.ref.version, exact.payload) == (2, '{"v": 2}')
    cpu = store.get("m", db.LATENCY_PROFILE, variant="cpu-fp32")
    assert (cpu.ref.version, cpu.ref.variant, cpu.payload) == (3, "cpu-fp32", '{"v": 3}')
    assert store.get("m", db.LATENCY_PROFILE, variant="cuda-fp16").ref.version == 4
    # The record returned carries the same identity as the write that made it.
    assert exact.ref == store.list_versions("m", db.LATENCY_PROFILE)[1]


def test_missing_records_raise_not_found(store):
    with pytest.raises(NotFound, match="not registered"):
        store.get("ghost", db.MODEL)
    store.put("m", db.STRATEGY_MATRIX, "{}", variant="fp32")
    with pytest.raises(NotFound, match="version 2"):
        store.get("m", db.STRATEGY_MATRIX, version=2)
    with pytest.raises(NotFound, match="bf16"):
        store.get("m", db.STRATEGY_MATRIX, variant="bf16")
    with pytest.raises(NotFound):
        store.get("m", db.TUNING)


def test_bad_arguments_are_refused(store):
    with pytest.raises(ValueError, match="kind"):
        store.put("m", "pickles", "{}")
    with pytest.raises(ValueError, match="model"):
        store.put("", db.MODEL, "{}")
    with pytest.raises(TypeError):
        store.put("m", db.MODEL, b"{}")
    with pytest.raises(ValueError, match="version"):
        store.get("m", db.MODEL, version=-1)
    assert store.latest_seq() == 0


def test_list_models_returns_latest_manifest_of_each(store):
    store.put("beta", db.MODEL, '{"name": "beta", "v": 1}')
    store.put("alpha", db.MODEL, '{"name": "alpha", "v": 1}')
    store.put("beta", db.MODEL, '{"name": "beta", "v": 2}')
    store.put("alpha", db.LATENCY_PROFILE, "{}")  # not a manifest
    models = store.list_models()
    assert [(r.ref.model, r.ref.version) for r in models] == [("alpha", 1), ("beta", 2)]
    assert json.loads(models[1].payload) == {"name": "beta", "v": 2}


def test_events_after_filters_in_seq_order(store):
    assert store.latest_seq() == 0
    a = store.put("a", db.MODEL, "{}")
    b = store.put("b", db.MODEL, "{}")
    c = store.put("a", db.LATENCY_PROFILE, "{}", variant="cpu-fp32")
    d = store.put("b", db.TUNING, "{}")
    assert store.latest_seq() == d.seq
    assert store.events_after(0) == [a, b, c, d]
    assert store.events_after(b.seq) == [c, d]
    assert store.events_after(0, models=["a"]) == [a, c]
    assert store.events_after(0, kinds=[db.MODEL]) == [a, b]
    assert store.events_after(0, models=["b"], kinds=[db.TUNING, db.LATENCY_PROFILE]) == [d]
    assert store.events_after(0, upto=b.seq) == [a, b]
    assert store.events_after(0, limit=3) == [a, b, c]
    assert store.events_after(d.seq) == []


def test_migrations_are_idempotent_and_upgrade_old_schemas(store_url):
    old = _unmigrated(store_url)
    if isinstance(old, SqliteStore):
        old.enable_wal()
    assert old.migrate(upto=1) == 1
    assert old.schema_version() == 1
    ref = old.put("m", db.MODEL, '{"kept": true}')
    old.close()

    first = open_store(store_url)  # upgrades 1 -> latest, keeps the data
    assert first.schema_version() == schema.SCHEMA_VERSION == len(schema.MIGRATIONS)
    assert first.get("m", db.MODEL).payload == '{"kept": true}'
    first.close()
    second = open_store(store_url)  # nothing left to do
    assert second.schema_version() == schema.SCHEMA_VERSION
    assert second.migrate() == schema.SCHEMA_VERSION
    assert second.list_versions("m", db.MODEL) == [ref]
    assert second.put("m", db.MODEL, "{}").version == 2
    second.close()


def test_a_newer_schema_is_refused(store_url):
    s = open_store(store_url)
    s._write(lambda conn: conn.execute(  # simulate a database migrated by newer code
        s._sql("INSERT INTO schema_version (version, description, applied_unix_ms) VALUES (?, ?, ?)"),
        (schema.SCHEMA_VERSION + 1, "from the future", 0)))
    s.close()
    with pytest.raises(RuntimeError, match="newer than this code"):
        open_store(store_url)


def test_threads_get_their_own_connections(store):
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(10):
                store.put("threads", db.TUNING, json.dumps({"t": k, "i": i}))
                store.get("threads", db.TUNING)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [r.version for r in store.list_versions("threads", db.TUNING)] == list(range(1, 41))


def test_default_path_is_under_mosel_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MOSEL_HOME", str(tmp_path / "home"))
    s = open_store()
    try:
        assert isinstance(s, SqliteStore)
        assert s.path == tmp_path / "home" / "profile_store.sqlite"
        s.put("m", db.MODEL, "{}")
        assert s.path.is_file()
    finally:
        s.close()


# One writer process: open the store (racing the others' migrations on a fresh
# database), say "ready", wait for the start signal, then put COUNT records.
_WRITER = r"""
import json, sys, time
from pathlib import Path
from mosel.store.db import open_store
url, writer, count, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
store = open_store(url)
print("ready", flush=True)
while not go.exists():
    time.sleep(0.002)
versions = []
for i in range(count):
    payload = json.dumps({"writer": writer, "i": i, "pad": "x" * (50 + 37 * i)})
    versions.append(store.put("race", "latency_profile", payload, variant="w%d" % writer).version)
store.close()
print(json.dumps(versions), flush=True)
"""


def test_concurrent_writer_processes_lose_nothing(store_url, tmp_path):
    writers, per_writer = 4, 25
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, store_url, str(w), str(per_writer), str(go)],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in range(writers)]
    try:
        for p in procs:
            line = p.stdout.readline()
            assert line.strip() == "ready", p.stderr.read()
        go.touch()  # all four start writing at once
        results = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    for versions in results:  # each writer's own puts got increasing versions
        assert versions == sorted(versions) and len(versions) == per_writer
    assert sorted(v for vs in results for v in vs) == list(range(1, writers * per_writer + 1))

    s = open_store(store_url)
    try:
        refs = s.list_versions("race", db.LATENCY_PROFILE)
        assert [r.version for r in refs] == list(range(1, writers * per_writer + 1))
        assert len({r.seq for r in refs}) == len(refs)
        seen = set()
        for ref in refs:
            payload = json.loads(s.get("race", db.LATENCY_PROFILE, version=ref.version).payload)
            assert payload["pad"] == "x" * (50 + 37 * payload["i"])  # intact
            assert ref.variant == f"w{payload['writer']}"
            seen.add((payload["writer"], payload["i"]))
        assert seen == {(w, i) for w in range(writers) for i in range(per_writer)}
        # Commit order equals seq order: versions of one (model, kind) rise with seq.
        by_seq = sorted(refs, key=lambda r: r.seq)
        assert [r.version for r in by_seq] == list(range(1, writers * per_writer + 1))
        assert s.schema_version() == schema.SCHEMA_VERSION
    finally:
        s.close()
