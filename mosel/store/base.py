"""The profile store's versioned records over SQL (docs/architecture.md, "The profile store"):
`Store`, the reads, writes and migrations both backends share (mosel.store.sqlite,
mosel.store.postgres; open one with mosel.store.db.open_store).

Versions are 1, 2, 3, ... per (model, kind) and are never overwritten.

Concurrency (several threads of one server, several processes, several machines):

* Writes are serialised database-wide (each backend's `_run_write` takes the lock), so
  `version = max + 1` can never be computed twice and `seq` order equals commit order (a
  watcher that has seen `seq = n` has seen every write with a smaller seq; it can never
  skip one).

* Schema migrations (mosel.store.schema) run at open, inside one transaction, under the
  same kind of lock (MIGRATE_LOCK_KEY), and are recorded in `schema_version`, so opening
  is idempotent and safe when two processes open a fresh database at once.

* Connections are per thread (the gRPC server is multi-threaded); `close()` closes all.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any, Callable, Iterable, Sequence

from mosel.errors import NotFound, Unavailable
from mosel.store.records import MODEL, Record, VersionRef, check_kind, check_model
from mosel.store.schema import MIGRATIONS, SCHEMA_VERSION, SCHEMA_VERSION_DDL

log = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT_S = 30.0


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_xact_lock, derived from a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


WRITE_LOCK_KEY = _lock_key("mosel.profile_store.write")
MIGRATE_LOCK_KEY = _lock_key("mosel.profile_store.migrate")

_REF_COLUMNS = "seq, model, kind, version, variant, created_unix_ms"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ref(row: Sequence[Any]) -> VersionRef:
    seq, model, kind, version, variant, created = row[:6]
    return VersionRef(model=model, kind=kind, version=int(version), variant=variant, seq=int(seq),
                      created_unix_ms=int(created))


class Store:
    """A versioned record store. Use `open_store()`; subclasses provide the backend."""

    backend = ""

    def __init__(self) -> None:
        self._local = threading.local()
        self._conns: list[Any] = []
        self._conns_lock = threading.Lock()
        self._closed = False

    # -- backend hooks -----------------------------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    def _sql(self, sql: str) -> str:
        """Backend paramstyle (queries are written with `?`)."""
        return sql

    def _run_write(self, conn: Any, body: Callable[[Any], Any], lock_key: int) -> Any:
        raise NotImplementedError

    def _translate(self, exc: Exception) -> Exception | None:
        """An Unavailable for connection/lock errors (and drop the connection), else None."""
        return None

    def describe(self) -> str:
        raise NotImplementedError

    # -- connections -------------------------------------------------------------------
    def _conn(self) -> Any:
        if self._closed:
            raise Unavailable("profile store database is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _drop_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._conns_lock:
                if conn in self._conns:
                    self._conns.remove(conn)
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - already broken
                pass

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        try:
            return list(self._conn().execute(self._sql(sql), tuple(params)).fetchall())
        except Exception as exc:  # noqa: BLE001
            mapped = self._translate(exc)
            if mapped is None:
                raise
            raise mapped from exc

    def _write(self, body: Callable[[Any], Any], lock_key: int = WRITE_LOCK_KEY) -> Any:
        try:
            return self._run_write(self._conn(), body, lock_key)
        except Exception as exc:  # noqa: BLE001
            mapped = self._translate(exc)
            if mapped is None:
                raise
            raise mapped from exc

    def close(self) -> None:
        """Close every thread's connection; the store is unusable afterwards."""
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                log.debug("closing a connection failed", exc_info=True)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ------------------------------------------------------------------------
    def migrate(self, upto: int | None = None) -> int:
        """Apply pending migrations (up to `upto`, default all) in one transaction.

        Returns the schema version afterwards. Idempotent; concurrent callers serialise."""
        target = SCHEMA_VERSION if upto is None else upto

        def body(conn: Any) -> int:
            conn.execute(SCHEMA_VERSION_DDL)
            current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchall()[0][0]
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.describe()} has schema version {current}, newer than this code knows "
                    f"({SCHEMA_VERSION}); upgrade mosel")
            for migration in MIGRATIONS:
                if current < migration.version <= target:
                    for statement in getattr(migration, self.backend):
                        conn.execute(statement)
                    conn.execute(
                        self._sql("INSERT INTO schema_version (version, description, applied_unix_ms) VALUES (?, ?, ?)"),
                        (migration.version, migration.description, _now_ms()),
                    )
                    log.info("%s: applied migration %d (%s)", self.describe(), migration.version,
                             migration.description)
                    current = migration.version
            return int(current)

        return self._write(body, MIGRATE_LOCK_KEY)

    def schema_version(self) -> int:
        return int(self._read("SELECT COALESCE(MAX(version), 0) FROM schema_version")[0][0])

    # -- records -----------------------------------------------------------------------
    def put(self, model: str, kind: str, payload: str, variant: str = "") -> VersionRef:
        """Store a new version (max + 1 for this model and kind); atomic across processes."""
        check_model(model)
        check_kind(kind)
        if not isinstance(payload, str):
            raise TypeError("payload must be text (protobuf JSON)")
        if not isinstance(variant, str):
            raise TypeError("variant must be a string")
        created = _now_ms()

        def body(conn: Any) -> VersionRef:
            rows = conn.execute(
                self._sql("SELECT COALESCE(MAX(version), 0) FROM records WHERE model = ? AND kind = ?"),
                (model, kind),
            ).fetchall()
            version = int(rows[0][0]) + 1
            rows = conn.execute(
                self._sql("INSERT INTO records (model, kind, version, variant, created_unix_ms, payload) "
                          "VALUES (?, ?, ?, ?, ?, ?) RETURNING seq"),
                (model, kind, version, variant, created, payload),
            ).fetchall()
            return VersionRef(model=model, kind=kind, version=version, variant=variant, seq=int(rows[0][0]),
                              created_unix_ms=created)

        return self._write(body)

    def get(self, model: str, kind: str, version: int = 0, variant: str = "") -> Record:
        """An exact version (version > 0), or the latest one, optionally of one variant.

        The variant filter applies to "latest" only. Raises NotFound."""
        check_model(model)
        check_kind(kind)
        if version < 0:
            raise ValueError("version must be >= 0 (0 = latest)")
        cols = f"{_REF_COLUMNS}, payload"
        if version > 0:
            rows = self._read(f"SELECT {cols} FROM records WHERE model = ? AND kind = ? AND version = ?",
                              (model, kind, version))
        elif variant:
            rows = self._read(f"SELECT {cols} FROM records WHERE model = ? AND kind = ? AND variant = ? "
                              "ORDER BY version DESC LIMIT 1", (model, kind, variant))
        else:
            rows = self._read(f"SELECT {cols} FROM records WHERE model = ? AND kind = ? "
                              "ORDER BY version DESC LIMIT 1", (model, kind))
        if not rows:
            label = "manifest" if kind == MODEL else kind.replace("_", " ")
            if version > 0:
                raise NotFound(f"{label} version {version} of model {model!r} not found")
            if variant:
                raise NotFound(f"no {label} with variant {variant!r} for model {model!r}")
            if kind == MODEL:
                raise NotFound(f"model {model!r} is not registered")
            raise NotFound(f"no {label} for model {model!r}")
        return Record(ref=_ref(rows[0]), payload=rows[0][6])

    def list_versions(self, model: str, kind: str) -> list[VersionRef]:
        """Every version of one kind of record for a model, oldest first (empty if none)."""
        check_model(model)
        check_kind(kind)
        rows = self._read(f"SELECT {_REF_COLUMNS} FROM records WHERE model = ? AND kind = ? ORDER BY version",
                          (model, kind))
        return [_ref(r) for r in rows]

    def list_models(self) -> list[Record]:
        """The latest manifest record of every model, by model name."""
        rows = self._read(
            f"SELECT r.seq, r.model, r.kind, r.version, r.variant, r.created_unix_ms, r.payload "
            "FROM records r JOIN (SELECT model, MAX(version) AS v FROM records WHERE kind = ? GROUP BY model) m "
            "ON r.model = m.model AND r.version = m.v WHERE r.kind = ? ORDER BY r.model",
            (MODEL, MODEL),
        )
        return [Record(ref=_ref(r), payload=r[6]) for r in rows]

    def events_after(self, seq: int, models: Iterable[str] = (), kinds: Iterable[str] = (),
                     upto: int | None = None, limit: int = 1000) -> list[VersionRef]:
        """Writes with seq > `seq` (and <= `upto` if given), oldest first, filtered by
        model and kind (empty = all), at most `limit` of them."""
        models = list(models)
        kinds = list(kinds)
        for kind in kinds:
            check_kind(kind)
        where = ["seq > ?"]
        params: list[Any] = [int(seq)]
        if upto is not None:
            where.append("seq <= ?")
            params.append(int(upto))
        if models:
            where.append(f"model IN ({', '.join('?' * len(models))})")
            params.extend(models)
        if kinds:
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            params.extend(kinds)
        params.append(int(limit))
        rows = self._read(f"SELECT {_REF_COLUMNS} FROM records WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
                          params)
        return [_ref(r) for r in rows]

    def latest_seq(self) -> int:
        """The newest committed write's seq (0 when empty); every smaller seq is committed too."""
        return int(self._read("SELECT COALESCE(MAX(seq), 0) FROM records")[0][0])
