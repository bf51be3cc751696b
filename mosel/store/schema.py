"""The profile store's schema: the migrations that build it, one per schema version, with the
statements for each backend (SQLite and PostgreSQL).

Every record lives in one table, `records`: a global write sequence number `seq`, the
record's identity (model, kind, version), a variant label, the write time and the
payload, which is text (protobuf JSON written by the service layer; nothing pickled).
Applied migrations are recorded in `schema_version` (mosel.store.base.Store.migrate).
"""

from __future__ import annotations

from dataclasses import dataclass


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

# The table of applied migrations: created before any migration runs, so it is in no migration.
SCHEMA_VERSION_DDL = """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_unix_ms BIGINT NOT NULL)"""
