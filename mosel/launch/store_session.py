"""A profile store for one command (`mosel profile`, `mosel solve`, ...).

    with store_session(args.store) as session:
        session.client.put_latency_profile(...)

- `address` given: use that store (it must answer its health check within `ready_s`).
- Otherwise: the store `mosel up` runs (127.0.0.1:50051) if it answers a short health check;
  if nothing serves there, a temporary profile store process on the default SQLite database
  (<MOSEL_HOME>/profile_store.sqlite) is started for the duration and stopped (SIGTERM,
  drained) at the end. Either way the records land in the same database `mosel up` uses.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from mosel.config import mosel_home
from mosel.store.client import ProfileStoreClient
from mosel.store.settings import DEFAULT_ADDRESS as DEFAULT_STORE


@dataclass
class StoreSession:
    client: ProfileStoreClient
    address: str
    temporary: bool  # True when this session started its own store process

    def describe(self) -> str:
        return f"temporary profile store at {self.address}" if self.temporary else f"profile store at {self.address}"


@contextmanager
def store_session(address: str | None = None, home: str | Path | None = None, probe_s: float = 1.0,
                  ready_s: float = 10.0, say: Callable[[str], None] | None = None) -> Iterator[StoreSession]:
    say = say or (lambda _msg: None)
    if address:
        client = ProfileStoreClient(address)
        try:
            client.wait_ready(ready_s)
            yield StoreSession(client, address, False)
        finally:
            client.close()
        return

    client = ProfileStoreClient(DEFAULT_STORE)
    try:
        client.wait_ready(probe_s)
    except TimeoutError:
        client.close()
    else:
        try:
            say(f"using the profile store at {DEFAULT_STORE}")
            yield StoreSession(client, DEFAULT_STORE, False)
        finally:
            client.close()
        return

    from mosel.launch.stack import Stack

    stack = Stack(home=Path(home) if home is not None else mosel_home())
    say(f"no profile store at {DEFAULT_STORE}; starting one on {stack.home / 'profile_store.sqlite'}")
    started = stack.start_store()
    try:
        client = ProfileStoreClient(started)
        try:
            client.wait_ready(ready_s)
            yield StoreSession(client, started, True)
        finally:
            client.close()
    finally:
        stack.stop()
