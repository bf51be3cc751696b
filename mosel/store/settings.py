"""Settings of the profile store service (`python -m services.profile_store`), and the
address its clients look for it at by default."""

from __future__ import annotations

from dataclasses import dataclass

from mosel.server.flags import ServiceSettings
from mosel.server.settings import redefault, setting

DEFAULT_PORT = 50051
DEFAULT_ADDRESS = f"{ServiceSettings.default('host')}:{DEFAULT_PORT}"
# Watch streams served at once (each holds a handler thread while open); a deployment has one
# or two watchers per selection service, so this is ample, and polling for that many stays cheap.
DEFAULT_MAX_WATCH_STREAMS = 16


@dataclass(frozen=True, kw_only=True)
class ProfileStoreSettings(ServiceSettings):
    MODULE = "services.profile_store"
    DESCRIPTION = ("MOSEL profile store: versioned model manifests, latency/accuracy profiles, strategy matrices "
                   "and tuned thresholds.")

    port: int = redefault(ServiceSettings, "port", DEFAULT_PORT)
    db: str | None = setting(None, "SQLite file or postgresql:// URL (default: profile_store.sqlite under "
                                   "$MOSEL_HOME)", metavar="PATH_OR_URL")
    poll_ms: float = setting(150.0, "how often Watch polls the database for writes by other store processes",
                             above=0)
    max_watch_streams: int = setting(DEFAULT_MAX_WATCH_STREAMS, "Watch streams served at once (each holds a thread, given on top of the "
                                         "handler pool); more are refused with RESOURCE_EXHAUSTED", at_least=1)
