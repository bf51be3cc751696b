"""The profile store on an SQLite file, the embedded default (`mosel_home()/profile_store.sqlite`).

Writes are serialised with a WAL journal, `BEGIN IMMEDIATE` (the write lock is taken
before the read of max(version)) and a busy timeout, so other processes wait for the lock
instead of failing. WAL needs a local file system (not NFS).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

from mosel.errors import Unavailable
from mosel.store.base import DEFAULT_BUSY_TIMEOUT_S, Store


class SqliteStore(Store):
    backend = "sqlite"

    def __init__(self, path: Path, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        super().__init__()
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit; write transactions are opened explicitly.
        # check_same_thread=False only so close() can close every thread's connection;
        # each connection is otherwise used by the thread that opened it.
        conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def enable_wal(self) -> None:
        # Switching the journal needs the database to itself, and SQLite may answer "locked"
        # at once instead of calling the busy handler (several processes opening a fresh
        # store together): retry until the busy timeout has passed.
        give_up = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                mode = self._conn().execute("PRAGMA journal_mode = WAL").fetchall()[0][0]
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > give_up:
                    raise
                time.sleep(0.01)
        if str(mode).lower() != "wal":
            raise RuntimeError(f"{self.describe()}: could not switch to WAL journal (got {mode!r})")

    def _run_write(self, conn: sqlite3.Connection, body: Callable[[Any], Any], lock_key: int) -> Any:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def _translate(self, exc: Exception) -> Exception | None:
        if isinstance(exc, sqlite3.OperationalError):
            text = str(exc)
            if "locked" in text or "busy" in text:
                return Unavailable(f"profile store database busy: {text}")
            if "unable to open" in text or "disk I/O" in text:
                self._drop_conn()
                return Unavailable(f"profile store database unavailable: {text}")
        return None
