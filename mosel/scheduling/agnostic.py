"""`agnostic`: the paper's baseline. Every request computes every modality it may use; late
jobs are dropped by the dispatcher."""

from __future__ import annotations

from mosel.scheduling.job import Job
from mosel.scheduling.policy import Policy, full_configuration


class AgnosticPolicy(Policy):
    name = "agnostic"

    def plan(self, queue: list[Job], now: float) -> None:
        for job in queue:
            for item in job.items:
                item.configuration = full_configuration(item.candidates)
