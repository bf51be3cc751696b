"""The profile store's database layer: one schema, two backends.

* SQLite file — the embedded default (`mosel_home()/profile_store.sqlite`).
* PostgreSQL by URL (`postgresql://user@host:port/db`, psycopg 3) — where several
  store processes or machines share one database.

Every record lives in one table, `records`: a global write sequence number `seq`, the
record's identity (model, kind, version), a variant label, the write time and the
payload, which is text (protobuf JSON written by the service layer; nothing pickled).
Versions are 1, 2, 3, ... per (model, kind) and are never overwritten.

Concurrency (several threads of one server, several processes, several machines):

* Writes are serialised database-wide, so `version = max + 1` can never be computed
  twice and `seq` order equals commit order (a watcher that has seen `seq = n` has
  seen every write with a smaller seq; it can never skip one).

  - SQLite: WAL journal, `BEGIN IMMEDIATE` (the write lock is taken before the read of
    max(version)) and a busy timeout, so other processes wait for the lock instead of
    failing. WAL needs a local file system (not NFS).
  - PostgreSQL: a transaction-level advisory lock (`pg_advisory_xact_lock`) is taken as
    the first statement of every write transaction and released by the commit. Under
    READ COMMITTED the following `SELECT max(version)` takes its snapshot after the lock
    is held, so it sees every earlier write. No retry loop is needed; the
    UNIQUE(model, kind, version) constraint stays as a backstop.

* Schema migrations run at open, inside one transaction, under the same kind of lock
  (BEGIN IMMEDIATE / a second advisory lock), and are recorded in `schema_version`, so
  opening is idempotent and safe when two processes open a fresh database at once.

* Connections are per thread (the gRPC server is multi-threaded); `close()` closes all.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import urlsplit, urlunsplit

from mosel.errors import NotFound, Unavailable

log = logging.getLogger(__name__)

# Record kinds, as stored in records.kind.
MODEL = "model"
LATENCY_PROFILE = "latency_profile"
ACCURACY_PROFILE = "accuracy_profile"
STRATEGY_MATRIX = "strategy_matrix"
TUNING = "tuning"
KINDS: tuple[str, ...] = (MODEL, LATENCY_PROFILE, ACCURACY_PROFILE, STRATEGY_MATRIX, TUNING)

DEFAULT_FILENAME = "profile_store.sqlite"
DEFAULT_BUSY_TIMEOUT_S = 30.0


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_xact_lock, derived from a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


WRITE_LOCK_KEY = _lock_key("mosel.profile_store.write")
MIGRATE_LOCK_KEY = _lock_key("mosel.profile_store.migrate")


@dataclass(frozen=True)
class VersionRef:
    """Identity of one stored record (mirrors mosel.v1.VersionRef)."""

    model: str
    kind: str
    version: int
    variant: str
    seq: int
    created_unix_ms: int


@dataclass(frozen=True)
class Record:
    ref: VersionRef
    payload: str


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]


# Append only: never edit a migration that has shipped; add a new one.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "records table",
        sqlite=(
            """CREATE TABLE records (
                   seq INTEGER PRIMARY KEY AUTOINCREMENT,
                   model TEXT NOT NULL,
                   kind TEXT NOT NULL,
                   version INTEGER NOT NULL CHECK (version >= 1),
                   variant TEXT NOT NULL DEFAULT '',
                   created_unix_ms INTEGER NOT NULL,
                   payload TEXT NOT NULL,
                   UNIQUE (model, kind, version))""",
        ),
        postgresql=(
            """CREATE TABLE records (
                   seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                   model TEXT NOT NULL,
                   kind TEXT NOT NULL,
                   version BIGINT NOT NULL CHECK (version >= 1),
                   variant TEXT NOT NULL DEFAULT '',
                   created_unix_ms BIGINT NOT NULL,
                   payload TEXT NOT NULL,
                   UNIQUE (model, kind, version))""",
        ),
    ),
    Migration(
        2,
        "index for latest-by-variant reads",
        sqlite=("CREATE INDEX records_variant_idx ON records (model, kind, variant, version)",),
        postgresql=("CREATE INDEX records_variant_idx ON records (model, kind, variant, version)",),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

_SCHEMA_VERSION_DDL = """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_unix_ms BIGINT NOT NULL)"""

_REF_COLUMNS = "seq, model, kind, version, variant, created_unix_ms"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ref(row: Sequence[Any]) -> VersionRef:
    seq, model, kind, version, variant, created = row[:6]
    return VersionRef(model=model, kind=kind, version=int(version), variant=variant, seq=int(seq),
                      created_unix_ms=int(created))


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {KINDS}")


def _check_model(model: str) -> None:
    if not isinstance(model, str) or not model:
        raise ValueError("model name must be a non-empty string")


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
            conn.execute(_SCHEMA_VERSION_DDL)
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
        _check_model(model)
        _check_kind(kind)
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
        _check_model(model)
        _check_kind(kind)
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
        _check_model(model)
        _check_kind(kind)
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
            _check_kind(kind)
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


def default_store_path() -> Path:
    from mosel.config import mosel_home

    return mosel_home() / DEFAULT_FILENAME


def open_store(url_or_path: str | Path | None = None, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> Store:
    """Open (creating and migrating as needed) a store.

    `url_or_path`: a `postgresql://` (or `postgres://`) URL, a `sqlite:///abs/path` URL,
    a file path, or None for the default SQLite file under mosel_home()."""
    if url_or_path is None or str(url_or_path) == "":
        target: str | Path = default_store_path()
    else:
        target = url_or_path
    text = str(target)
    store: Store
    if text.startswith(("postgresql://", "postgres://")):
        store = PostgresStore(text, connect_timeout_s=busy_timeout_s)
    else:
        if text.startswith("sqlite://"):
            text = text[len("sqlite://"):]
        store = SqliteStore(Path(text), busy_timeout_s=busy_timeout_s)
    try:
        if isinstance(store, SqliteStore):
            store.enable_wal()
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store
