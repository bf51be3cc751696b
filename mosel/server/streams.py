"""The reply side of a bidirectional stream whose requests a thread of its own reads and
whose replies arrive in completion order (InferStream, KServe ModelStreamInfer).

At most `max_outstanding` requests are read and not yet answered: the reader takes a slot
before it reads, the slot is given back once the reply has been sent. At the bound the
reader stops reading, so a client that does not read its answers is held back by gRPC flow
control instead of making the server buffer replies without limit.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator

# A reader waiting for a free slot looks this often whether its call has ended.
SLOT_POLL_S = 0.5


class ReplyStream:
    def __init__(self, context, max_outstanding: int):
        self._context = context
        self._out: queue.Queue = queue.Queue()
        self._slots = threading.Semaphore(max_outstanding)
        self._ended = threading.Event()
        self._lock = threading.Lock()
        self._outstanding = 0
        self._reading = True

    def take_slot(self) -> bool:
        """Before reading a request: False once the call has ended (stop reading)."""
        while not self._slots.acquire(timeout=SLOT_POLL_S):
            if self._ended.is_set() or not self._context.is_active():
                return False
        return not self._ended.is_set()

    def no_request(self) -> None:
        """The slot taken found the end of the requests."""
        self._slots.release()

    def started(self) -> None:
        """A request now waits for its answer (answered later through `finished`)."""
        with self._lock:
            self._outstanding += 1

    def finished(self, reply) -> None:
        """The answer of a started request."""
        self._out.put(reply)
        with self._lock:
            self._outstanding -= 1
            if not self._reading and self._outstanding == 0:
                self._out.put(None)

    def abandoned(self) -> None:
        """A started request that will get no answer through `finished` (it failed to start)."""
        with self._lock:
            self._outstanding -= 1

    def reply(self, reply) -> None:
        """An answer at once (an error entry for a request that never started)."""
        self._out.put(reply)

    def done_reading(self) -> None:
        with self._lock:
            self._reading = False
            if self._outstanding == 0:
                self._out.put(None)

    def replies(self) -> Iterator:
        """What the servicer yields: every reply, then the end once all are sent."""
        try:
            while True:
                msg = self._out.get()
                if msg is None:
                    return
                yield msg  # returns once gRPC has sent it (blocks while the client does not read)
                self._slots.release()
        finally:
            self._ended.set()  # the call is over: a reader waiting for a slot stops
            self._slots.release()
