"""`aggressive`: every job at the cheapest strategy that meets its floor (a baseline).

Options per job and the feedback hooks come from mosel.scheduling.profiled."""

from __future__ import annotations

from mosel.scheduling.job import Job
from mosel.scheduling.profiled import ProfiledPolicy


class AggressivePolicy(ProfiledPolicy):
    """Every job at the cheapest strategy that meets its floor."""

    name = "aggressive"

    def plan(self, queue: list[Job], now: float) -> None:
        self.drops = []
        if not queue or not self._ready(queue[0].model):
            self._agnostic.plan(queue, now)
            return
        for job in queue:
            self._apply(job, self.options(job)[0])
