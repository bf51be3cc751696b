"""The profile store: durable, versioned manifests, profiles, strategy matrices and tuning.

`mosel.store.db` is the database layer (SQLite file or PostgreSQL URL, one schema),
`mosel.store.validate` checks incoming protos, `mosel.store.servicer` is the gRPC
servicer and `mosel.store.client` its typed client. Only the database layer is
re-exported here, so importing the package needs no gRPC.
"""

from mosel.store.db import (ACCURACY_PROFILE, KINDS, LATENCY_PROFILE, MODEL, SCHEMA_VERSION, STRATEGY_MATRIX, TUNING,
                            Record, Store, VersionRef, default_store_path, open_store)

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
