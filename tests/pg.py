"""Throwaway PostgreSQL clusters for tests (docs/architecture.md, "The profile store").

`postgres_cluster()` runs initdb + pg_ctl in a fresh temp dir (as the `postgres` user
when we are root, since initdb refuses root), trust auth, listening on 127.0.0.1 at a
free port with its unix socket inside the temp dir, and yields the server URL; it
stops the server and removes the directory afterwards.

Fixtures (import them into a test module: `from tests.pg import postgres_server, postgres_url`):
  postgres_server  one cluster per test module (its URL, database "postgres")
  postgres_url     a fresh, empty database on that cluster for each test
Both skip only when the server binaries are absent.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

PG_BIN = Path(os.environ.get("MOSEL_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "mosel"


def missing_binaries() -> str | None:
    """Why a cluster cannot be started here, or None."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).is_file():
            return f"PostgreSQL server binaries not found ({PG_BIN / tool} is missing; set MOSEL_PG_BIN)"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(cmd: list[str]) -> list[str]:
    """initdb/pg_ctl refuse to run as root: run them as the `postgres` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _run(cmd: list[str], cwd: Path, timeout: float = 60.0) -> None:
    proc = subprocess.run(_as_owner(cmd), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


@contextlib.contextmanager
def postgres_cluster(user: str = PG_USER) -> Iterator[str]:
    """Start a throwaway cluster; yield `postgresql://user@127.0.0.1:PORT/postgres`."""
    reason = missing_binaries()
    if reason:
        raise FileNotFoundError(reason)
    # Not pytest's tmp_path: that lies under a root-only directory the postgres user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="mosel-pg-"))
    data = root / "data"
    started = False
    try:
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(root, owner.pw_uid, owner.pw_gid)
        _run([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", user, "-E", "UTF8",
              "--no-sync", "--no-instructions"], cwd=root)
        last_error: Exception | None = None
        for _attempt in range(3):  # the free port can be taken between probe and bind
            port = _free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root} "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            try:
                _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "30",
                      "-o", options, "start"], cwd=root)
            except RuntimeError as exc:
                last_error = exc
                continue
            started = True
            break
        if not started:
            log_text = (root / "server.log").read_text() if (root / "server.log").exists() else ""
            raise RuntimeError(f"could not start PostgreSQL: {last_error}\n{log_text}")
        yield f"postgresql://{user}@127.0.0.1:{port}/postgres"
    finally:
        if started:
            with contextlib.suppress(Exception):
                _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], cwd=root)
        shutil.rmtree(root, ignore_errors=True)


def create_database(server_url: str) -> str:
    """A new empty database on the cluster at `server_url`; returns its URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    deadline = time.monotonic() + 10
    while True:
        try:
            with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[str]:
    reason = missing_binaries()
    if reason:
        pytest.skip(reason)
    with postgres_cluster() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """URL of a fresh, empty database (one per test) on the module's throwaway cluster."""
    return create_database(postgres_server)
