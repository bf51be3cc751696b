"""Opening the profile store's database (docs/architecture.md, "The profile store"): one
schema, two backends, picked by `open_store` from a URL or path.

* SQLite file (mosel.store.sqlite) — the embedded default (`mosel_home()/profile_store.sqlite`).
* PostgreSQL by URL (mosel.store.postgres) — where several store processes or machines
  share one database.

The store itself is mosel.store.base.Store, its records mosel.store.records, its schema
mosel.store.schema.
"""

from __future__ import annotations

from pathlib import Path

from mosel.store.base import DEFAULT_BUSY_TIMEOUT_S, Store
from mosel.store.postgres import PostgresStore
# Store, the record kinds, Record and VersionRef: this module's public API (the servicer and
# the client read them as db.*).
from mosel.store.records import (ACCURACY_PROFILE, KINDS, LATENCY_PROFILE, MODEL, STRATEGY_MATRIX, TUNING, Record,
                                 VersionRef)
from mosel.store.sqlite import SqliteStore

__all__ = [
    "ACCURACY_PROFILE", "KINDS", "LATENCY_PROFILE", "MODEL", "STRATEGY_MATRIX", "TUNING", "Record", "Store",
    "VersionRef", "default_store_path", "open_store",
]

DEFAULT_FILENAME = "profile_store.sqlite"


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
