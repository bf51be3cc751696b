"""The profile store on PostgreSQL by URL (`postgresql://user@host:port/db`, psycopg 3), where
several store processes or machines share one database.

Writes are serialised by a transaction-level advisory lock (`pg_advisory_xact_lock`)
taken as the first statement of every write transaction and released by the commit.
Under READ COMMITTED the following `SELECT max(version)` takes its snapshot after the lock
is held, so it sees every earlier write. No retry loop is needed; the
UNIQUE(model, kind, version) constraint stays as a backstop. Migrations take a second
advisory lock the same way.
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from mosel.errors import Unavailable
from mosel.store.base import DEFAULT_BUSY_TIMEOUT_S, Store


class PostgresStore(Store):
    backend = "postgresql"

    def __init__(self, url: str, connect_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        super().__init__()
        import psycopg  # imported here so SQLite-only use needs no libpq

        self._psycopg = psycopg
        self.url = url
        self.connect_timeout_s = connect_timeout_s

    def describe(self) -> str:
        parts = urlsplit(self.url)
        netloc = parts.netloc
        if "@" in netloc:
            user, host = netloc.rsplit("@", 1)
            if ":" in user:
                user = user.split(":", 1)[0] + ":***"
            netloc = f"{user}@{host}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None and (conn.closed or conn.broken):
            self._drop_conn()
        return super()._conn()

    def _connect(self) -> Any:
        try:
            # lock_timeout bounds the wait for the write lock, like SQLite's busy timeout.
            return self._psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self.connect_timeout_s)),
                                         application_name="mosel-profile-store",
                                         options=f"-c lock_timeout={int(self.connect_timeout_s * 1000)}")
        except self._psycopg.OperationalError as exc:
            raise Unavailable(f"cannot connect to {self.describe()}: {str(exc).strip()}") from exc

    def _run_write(self, conn: Any, body: Callable[[Any], Any], lock_key: int) -> Any:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
            return body(conn)

    def _translate(self, exc: Exception) -> Exception | None:
        if isinstance(exc, self._psycopg.OperationalError):
            self._drop_conn()
            return Unavailable(f"profile store database unavailable ({self.describe()}): {str(exc).strip()}")
        return None
