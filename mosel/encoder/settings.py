"""Settings of one encoder service (`python -m services.encoder`)."""

from __future__ import annotations

from dataclasses import dataclass

from mosel.encoder.runner import PRECISIONS
from mosel.server.flags import ModelServiceSettings, ServiceSettings
from mosel.server.settings import redefault, setting

DEFAULT_PORT = 50061  # the first encoder's; `mosel up` numbers the others on from it


@dataclass(frozen=True, kw_only=True)
class EncoderSettings(ModelServiceSettings):
    MODULE = "services.encoder"
    DESCRIPTION = "MOSEL encoder service: one modality encoder of one model."

    port: int = redefault(ServiceSettings, "port", DEFAULT_PORT)
    model: str = setting("av-digits", "model name")
    modality: str = setting(help="modality to encode, e.g. audio")
    precision: str = setting("fp32", "compute precision", choices=sorted(PRECISIONS))
    max_batch: int = setting(32, "largest batch accepted", at_least=1)
    model_version: int = setting(0, "repository version to serve (0 = the newest)", at_least=0)
