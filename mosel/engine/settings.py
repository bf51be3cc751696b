"""Settings of the selection service (`python -m services.selection`), and the scheduling
policy they describe: built here once for the service and for the tuning replays of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mosel.scheduling.headroom import DEFAULT_HEADROOM_STEP_S, DEFAULT_MISS_TARGET
from mosel.scheduling.policy import Policy
from mosel.scheduling.predict import DEFAULT_PIPELINE_DEPTH
from mosel.scheduling.profiled import DEFAULT_REPLY_MARGIN_S
from mosel.scheduling.registry import POLICIES, make_policy
from mosel.server.flags import ModelServiceSettings, ServiceSettings
from mosel.server.settings import Rule, redefault, setting
from mosel.store.settings import DEFAULT_ADDRESS

DEFAULT_PORT = 50050


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 9)  # 0.003 s -> 3.0 ms, not 3.0000000000000004


def _pin(text: str) -> tuple[str, int] | None:
    model, _, version = text.partition("=")
    return (model, int(version)) if model and version.isdigit() and int(version) >= 1 else None


@dataclass(frozen=True, kw_only=True)
class SelectionSettings(ModelServiceSettings):
    MODULE = "services.selection"
    DESCRIPTION = "MOSEL selection service: per-request modality selection, EDF scheduling, fusion."
    RULES = (Rule("--max-job-size", "must not exceed --max-round (a job is never split across rounds)",
                  lambda s: s.max_job_size <= s.max_round),
             Rule("--model-version", "wants MODEL=VERSION with a VERSION of 1 or more",
                  lambda s: all(_pin(text) for text in s.model_versions)))

    port: int = redefault(ServiceSettings, "port", DEFAULT_PORT)
    profile_store: str = setting(DEFAULT_ADDRESS, "profile store address", metavar="HOST:PORT")
    models: tuple[str, ...] = setting((), "model to serve (repeatable; default: every model in the profile store)",
                                      flag="--model")
    encoders: tuple[str, ...] = setting((), "encoder replicas for a modality (repeatable)", flag="--encoder",
                                        metavar="[MODEL/]MODALITY=HOST:PORT[,HOST:PORT]")
    policy: str = setting("agnostic", "scheduling policy", choices=sorted(POLICIES))
    default_budget_ms: float = setting(1000.0, "deadline budget for requests that set none", above=0)
    max_job_size: int = setting(32, "largest job accepted", at_least=1)
    max_round: int = setting(32, "most requests per encoder batch", at_least=1)
    pipeline_depth: int = setting(DEFAULT_PIPELINE_DEPTH, "rounds in flight at once: the next round's encoder "
                                  "batches queue behind this round's on each encoder and overlap its fusion "
                                  "(default {default}; 1 = strict rounds)", at_least=1)
    reply_margin_ms: float = setting(_ms(DEFAULT_REPLY_MARGIN_S), "mosel policy: plan to finish this long before "
                                     "each deadline, for the answer's way back to the client", at_least=0)
    miss_target: float = setting(DEFAULT_MISS_TARGET, "mosel policy: fraction of jobs allowed to miss their "
                                 "deadline; while more miss, plans keep more time in hand and degrade earlier",
                                 above=0, below=1)
    headroom_step_ms: float = setting(_ms(DEFAULT_HEADROOM_STEP_S), "mosel policy: time in hand one missed job adds "
                                      "to the plans (default {default}; 0 turns the miss feedback off)", at_least=0)
    max_queue: int = setting(4096, "queued requests before RESOURCE_EXHAUSTED", at_least=1)
    batch_wait_ms: float = setting(0.0, "let a part-filled batch wait this long for more requests "
                                   "(default {default}: send at once)", at_least=0)
    max_inflight: int = setting(1024, "calls in flight at once; more are refused with RESOURCE_EXHAUSTED",
                                at_least=1)
    http_port: int = setting(-1, "KServe v2 HTTP/REST port on --host (0 = any free, -1 = no HTTP front)",
                             at_least=-1, at_most=65535)
    model_versions: tuple[str, ...] = setting((), "serve this repository version of a model instead of the "
                                              "newest (repeatable)", flag="--model-version", metavar="MODEL=VERSION")
    wait_s: float = setting(60.0, "how long to wait for the store and encoders, in seconds", at_least=0)

    def pinned_versions(self) -> dict[str, int]:
        """--model-version MODEL=VERSION flags as {model: version}."""
        return dict(_pin(text) for text in self.model_versions)

    def policy_options(self) -> dict[str, Any]:
        """make_policy(self.policy, **options). Predicting policies must form rounds exactly as
        the dispatcher does; only mosel has the reply margin and the miss feedback."""
        if self.policy == "agnostic":
            return {}
        options: dict[str, Any] = {"max_round_items": self.max_round}
        if self.policy == "mosel":
            options.update(reply_margin_s=self.reply_margin_ms / 1000.0, miss_target=self.miss_target,
                           headroom_step_s=self.headroom_step_ms / 1000.0)
        return options

    def build_policy(self, **overrides: Any) -> Policy:
        """The service's policy; `overrides` (e.g. tuned thresholds) win over the settings."""
        return make_policy(self.policy, **{**self.policy_options(), **overrides})
