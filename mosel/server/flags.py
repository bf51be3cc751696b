"""Flags every service shares, so `python -m services.<name> --help` reads alike: the
`ServiceSettings` base of each service's settings, and setting a service process up from it."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

from mosel.server.channels import DEFAULT_MAX_MESSAGE_BYTES
from mosel.server.settings import Settings, setting

MIB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class ServiceSettings(Settings):
    """Binding, logging, limits and the drain of one service process. Each service gives
    `port` its own default (`redefault(ServiceSettings, "port", N)`)."""

    host: str = setting("127.0.0.1", "address to bind")
    port: int = setting(0, "port to bind, 0 = any free", at_least=0, at_most=65535)
    device: str = setting("cpu", "torch device, e.g. cpu, cuda, cuda:1")
    log_level: str = setting("INFO", "stderr log level")
    max_message_mb: int = setting(DEFAULT_MAX_MESSAGE_BYTES // MIB, "gRPC message size limit, both directions",
                                  at_least=1)
    grace_s: float = setting(30.0, "on SIGTERM, seconds to let in-flight calls finish", at_least=0)
    threads: int = setting(1, "torch intra-op threads (default {default}: services share cores; OpenMP spinning "
                              "threads of several processes on the same cores slow each other down badly)")
    ready_file: str | None = setting(None, "write the bound port to this file once SERVING (for supervisors)")
    metrics_port: int = setting(-1, "Prometheus /metrics port on --host (0 = any free, -1 = no metrics)",
                                at_least=-1, at_most=65535)

    @property
    def max_message_bytes(self) -> int:
        return self.max_message_mb * MIB

    def setup_logging(self, service: str) -> None:
        logging.basicConfig(
            level=self.log_level.upper(),
            stream=sys.stderr,
            format=f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s",
        )

    def apply_threads(self) -> None:
        import torch

        torch.set_num_threads(max(1, self.threads))


def checkpoint_home():
    """The `--home` field of the services that load checkpoints."""
    return setting(None, "state directory holding checkpoints (default $MOSEL_HOME)")


@dataclass(frozen=True, kw_only=True)
class ModelServiceSettings(ServiceSettings):
    """A service that loads models: where they are found (see mosel.repository.source)."""

    home: str | None = checkpoint_home()
    model_repository: str | None = setting(None, "model repository: <DIR>/<model>/<version>/manifest.json "
                                           "(default $MOSEL_HOME/repository)", metavar="DIR")
    packs: tuple[str, ...] = setting((), "plug-in model pack on the Python path (repeatable; installed packs "
                                     "are found through the mosel.models entry points)", flag="--pack",
                                     metavar="MODULE:CLASS")

    def open_model(self, name: str, version: int | None = None):
        """The model `name` from the repository or the trained packs (one of MODEL_ERRORS if it cannot be)."""
        from mosel.models.registry import use_packs
        from mosel.repository.source import open_model

        use_packs(self.packs)
        return open_model(name, home=self.home, repository=self.model_repository, version=version)
