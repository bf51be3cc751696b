"""The versions of one model an encoder service can encode with.

The selection service names the weights each round was planned for (EncodeRequest
.model_digest). When it asks for weights the encoder has not loaded -- a new repository
version, a retrained pack -- the encoder finds that version, loads and warms it, and
serves it from then on; the previous one stays loaded for rounds still in flight.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Callable

from mosel.encoder.runner import EncoderRunner
from mosel.errors import NotFound
from mosel.repository.source import OpenedModel

log = logging.getLogger(__name__)

KEEP = 2  # the version served and the one before it


def runner_digest(runner: EncoderRunner) -> str:
    return (runner.manifest.get("checkpoint") or {}).get("sha256", "")


class EncoderVersions:
    def __init__(self, runner: EncoderRunner, find: Callable[[str], OpenedModel | None] | None = None,
                 build: Callable[[OpenedModel], EncoderRunner] | None = None):
        """`find(digest)` opens the version with those weights (None: there is none); `build`
        makes its runner. Without `find` the encoder serves only the weights it started with."""
        self._runners: OrderedDict[str, EncoderRunner] = OrderedDict({runner_digest(runner): runner})
        self._find = find
        self._build = build
        self._lock = threading.Lock()

    @property
    def current(self) -> EncoderRunner:
        return next(reversed(self._runners.values()))

    def runner_for(self, digest: str) -> EncoderRunner:
        """The runner of weights `digest` ("" = the current), loading them if needed; NotFound
        when no version of the model has them."""
        if not digest:
            return self.current
        runner = self._runners.get(digest)
        if runner is not None:
            return runner
        with self._lock:  # one load at a time; a second caller finds it loaded
            runner = self._runners.get(digest)
            if runner is not None:
                return runner
            opened = self._find(digest) if self._find is not None else None
            current = self.current
            if opened is None or self._build is None:
                raise NotFound(f"model_digest: no version of {current.model!r} with weights {digest[:12]} here; "
                               f"this encoder serves {runner_digest(current)[:12]}")
            runner = self._build(opened)
            runner.warm_up()
            self._runners[digest] = runner
            while len(self._runners) > KEEP:
                self._runners.popitem(last=False)
            log.info("%s/%s now serves weights %s from %s", current.model, current.modality, digest[:12], opened.where)
            return runner
