"""The profile store: durable, versioned manifests, profiles, strategy matrices and tuning.

`mosel.store.db` opens the database (SQLite file or PostgreSQL URL, one schema): `records`
says what is kept, `schema` how it is laid out, `base` the store both backends (`sqlite`,
`postgres`) share. `mosel.store.validate` checks incoming protos, `mosel.store.servicer` is
the gRPC servicer and `mosel.store.client` its typed client. Only the database layer is
re-exported here, so importing the package needs no gRPC.
"""

from mosel.store.base import Store
from mosel.store.db import default_store_path, open_store
from mosel.store.records import (ACCURACY_PROFILE, KINDS, LATENCY_PROFILE, MODEL, STRATEGY_MATRIX, TUNING, Record,
                                 VersionRef)
from mosel.store.schema import SCHEMA_VERSION

__all__ = [
    "ACCURACY_PROFILE",
    "KINDS",
    "LATENCY_PROFILE",
    "MODEL",
    "SCHEMA_VERSION",
    "STRATEGY_MATRIX",
    "TUNING",
    "Record",
    "Store",
    "VersionRef",
    "default_store_path",
    "open_store",
]
