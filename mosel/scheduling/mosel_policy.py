"""`mosel`: the paper's online scheduler (see docs/architecture.md, "The scheduler").

`MoselPolicy.plan`: predict (mosel.scheduling.predict: rounds on per-encoder lanes) with
every job at its most accurate option; if no job is predicted to finish after
now + m * (deadline - now), run everything at full accuracy (m = budget_margin, or
budget_margin * (1 - upgrade_hysteresis) while some queued job is still degraded, so plans
do not flap).
Otherwise: (1) jobs predicted to miss their deadline even with everyone at the cheapest
option are put in `self.drops` (the dispatcher should fail them with DEADLINE_EXCEEDED
without starting them; they are given their cheapest option meanwhile); (2) the jobs up to
the first predicted miss, extended to `lookahead` jobs, are reassigned with
mosel.scheduling.reassign under the additive model, option latencies scaled by the
round/additive ratio of the window at full accuracy; (3) the plan is checked with the
lane predictor; while a window job is predicted past its deadline the scale is
raised and the window re-solved (up to 3 times), then the window falls back to cheapest.
Jobs after the window run at full accuracy (re-planned next round).

`MoselPolicy.admit`: refuses (DeadlineExceeded) a job predicted to finish after its
deadline even with itself and every queued job at the cheapest option.

Both judge against `deadline - reply_margin_s` (the answer still has to travel back to the
client after the service is done with it); when `plan` decides whether and how far to
degrade, it also keeps in hand the predictor's measured lateness (`Predictor.lateness_s`)
and the headroom of its miss feedback (mosel.scheduling.headroom): every job settled
(round finished after its deadline less the reply margin, expired while queued, judged
hopeless, refused as unreachable) moves that headroom towards the point where `miss_target` of the jobs miss.
"""

from __future__ import annotations

from typing import Sequence

from mosel.errors import DeadlineExceeded
from mosel.scheduling.headroom import (DEFAULT_HEADROOM_CAP_S, DEFAULT_HEADROOM_STEP_S, DEFAULT_MISS_TARGET,
                                       MissFeedback)
from mosel.scheduling.job import Job
from mosel.scheduling.predict import RoundTicket
from mosel.scheduling.profiled import DEFAULT_REPLY_MARGIN_S, ProfiledPolicy
from mosel.scheduling.reassign import Option, reassign


class MoselPolicy(ProfiledPolicy):
    """The paper's online scheduler (see the module doc)."""

    name = "mosel"
    tunable = (*ProfiledPolicy.tunable, "budget_margin", "lookahead", "upgrade_hysteresis", "time_cap_s",
               "reply_margin_s", "miss_target", "headroom_step_s", "headroom_cap_s")

    def __init__(self, budget_margin: float = 0.91, lookahead: int = 32, upgrade_hysteresis: float = 0.05,
                 time_cap_s: float = 0.005, max_round_items: int = 32, unit_s: float = 1e-3,
                 pipeline_depth: int = 1, reply_margin_s: float = DEFAULT_REPLY_MARGIN_S,
                 miss_target: float = DEFAULT_MISS_TARGET, headroom_step_s: float = DEFAULT_HEADROOM_STEP_S,
                 headroom_cap_s: float = DEFAULT_HEADROOM_CAP_S):
        super().__init__(max_round_items=max_round_items, unit_s=unit_s, pipeline_depth=pipeline_depth)
        # Headroom from the misses themselves (mosel.scheduling.headroom); step 0 = off.
        self.feedback = MissFeedback(miss_target, headroom_step_s, headroom_cap_s)
        self._due: dict[int, list[float]] = {}  # per round ticket in flight: its jobs' deadlines
        if not 0.0 < budget_margin <= 1.0:
            raise ValueError(f"budget_margin must be in (0, 1], got {budget_margin}")
        if not reply_margin_s >= 0.0:
            raise ValueError(f"reply_margin_s must be >= 0, got {reply_margin_s}")
        # An answer finished at the deadline still has to reach the client: plans aim this
        # much earlier (a fixed cost, unlike budget_margin, which shrinks with the budget).
        self.reply_margin_s = float(reply_margin_s)
        if not 0.0 <= upgrade_hysteresis < 1.0:
            raise ValueError(f"upgrade_hysteresis must be in [0, 1), got {upgrade_hysteresis}")
        self.budget_margin = float(budget_margin)
        self.lookahead = max(1, int(lookahead))
        self.upgrade_hysteresis = float(upgrade_hysteresis)
        self.time_cap_s = time_cap_s
        self._degraded: set[int] = set()
        self.last_exact = True

    # the feedback's settings, configurable like the other thresholds
    miss_target = property(lambda self: self.feedback.target, lambda self, v: self.feedback.set(target=v))
    headroom_step_s = property(lambda self: self.feedback.step_s, lambda self, v: self.feedback.set(step_s=v))
    headroom_cap_s = property(lambda self: self.feedback.cap_s, lambda self, v: self.feedback.set(cap_s=v))

    def round_started(self, jobs: Sequence[Job], now: float) -> RoundTicket | None:
        ticket = super().round_started(jobs, now)
        if ticket is not None:
            self._due[id(ticket)] = [job.deadline - self.reply_margin_s for job in jobs]
        return ticket

    def round_finished(self, ticket: RoundTicket | None, now: float, finishing_s: float | None) -> None:
        super().round_finished(ticket, now, finishing_s)
        due = self._due.pop(id(ticket), None) if ticket is not None else None
        if due:
            late = sum(1 for d in due if now > d)
            self.feedback.observe(now, late, len(due) - late)

    def planning_headroom_s(self, now: float) -> float:
        return self.feedback.peek(now)

    def job_expired(self, job: Job, now: float) -> None:
        """The dispatcher failed a queued job whose deadline passed: a miss."""
        self.forget(job)
        self.feedback.observe(now, 1)

    def admit(self, job: Job, queue: list[Job], now: float) -> None:
        if not self._ready(job.model):
            return
        if job.deadline <= now:
            raise DeadlineExceeded("deadline already passed at admission")
        jobs = sorted([*queue, job], key=Job.edf_key)
        p = self.predictor
        sizes = [j.size for j in jobs]
        splits = [p.split_of(self.options(j)[0].payload) for j in jobs]
        k = jobs.index(job)
        # only jobs up to this one (and its round) matter for its finish time
        finish = p.finish_times(sizes[:k + 1 + self.max_round_items], splits[:k + 1 + self.max_round_items], now)
        if finish[k] > job.deadline - self.reply_margin_s:
            self.forget(job)
            self.feedback.observe(now, 1)
            raise DeadlineExceeded(
                f"deadline unreachable: predicted finish {1000 * (finish[k] - now):.1f} ms from now with the cheapest "
                f"configurations, budget {1000 * (job.deadline - now):.1f} ms")

    def _all_at_best(self, jobs: Sequence[Job], opts) -> None:
        """No predicted miss: every job at its most accurate option (also the upgrade path)."""
        for job, o in zip(jobs, opts):
            self._apply(job, o[-1])
        self._degraded = set()

    def plan(self, queue: list[Job], now: float) -> None:
        self.drops = []
        if not queue or not self._ready(queue[0].model):
            self._agnostic.plan(queue, now)
            return
        p = self.predictor
        opts, all_splits = self._cached(queue)
        sizes = [job.size for job in queue]
        # Plans aim early by the answer's way back, by how late rounds have been running
        # (the predictor's lateness) and by the headroom recent misses asked for; a job
        # counts as hopeless only against its deadline less the way back.
        due = [job.deadline - self.reply_margin_s for job in queue]
        keep = p.lateness_s + self.feedback.current(now)
        deadlines = [d - keep for d in due]
        best_splits = [s[-1] for s in all_splits]
        margin = self.budget_margin
        if any(job.seq in self._degraded for job in queue):
            margin *= 1.0 - self.upgrade_hysteresis
        miss, finish = p.first_miss(sizes, best_splits, deadlines, now, margin)
        if miss is None:
            self._all_at_best(queue, opts)
            return

        # (1) jobs hopeless even at all-cheapest (lane prediction)
        cheap_splits = [s[0] for s in all_splits]
        hopeless = set(p.hopeless(sizes, cheap_splits, due, now))
        jobs = queue
        if hopeless:
            self.feedback.observe(now, len(hopeless))
            for k in sorted(hopeless):
                self._apply(queue[k], opts[k][0])
                self.drops.append(queue[k])
            live = [k for k in range(len(queue)) if k not in hopeless]
            if not live:
                self._degraded = set()
                return
            jobs = [queue[k] for k in live]
            opts = [opts[k] for k in live]
            all_splits = [all_splits[k] for k in live]
            sizes = [sizes[k] for k in live]
            deadlines = [deadlines[k] for k in live]
            best_splits = [best_splits[k] for k in live]
            miss, finish = p.first_miss(sizes, best_splits, deadlines, now, margin)
            if miss is None:
                self._all_at_best(jobs, opts)
                return

        # (2) reassign the window under the additive model, scaled to the rounds
        n_win = min(len(jobs), max(miss + 1, self.lookahead))
        start = p.start_time(now)
        additive = sum(o[-1].latency for o in opts[:n_win])
        rounds = finish[n_win - 1] - start
        per_unit = p.unit_s  # seconds per cost unit
        scale = rounds / (additive * per_unit) if additive > 0 else 1.0
        scale = max(scale, 1e-3)
        win_opts = opts[:n_win]
        chosen = None
        for _ in range(4):
            unit = per_unit * scale
            budgets = [(now + margin * (d - now) - start) / unit for d in deadlines[:n_win]]
            hard = [(d - start) / unit for d in deadlines[:n_win]]
            res = reassign(win_opts, budgets, hard, time_cap_s=self.time_cap_s, presorted=True)
            self.last_exact = res.exact
            pick = [c if c is not None else o[0] for c, o in zip(res.choice, win_opts)]
            splits = best_splits.copy()
            first = n_win
            for k in range(n_win):
                o, ok = pick[k], win_opts[k]
                if o is not ok[-1]:
                    splits[k] = all_splits[k][_index_of(ok, o)]
                    if first == n_win:
                        first = k
            # only the window's finish times matter; rounds before the first changed job
            # are those of the all-full prediction `finish`
            check = p.finish_from(sizes, splits, now, finish, first, upto=n_win)
            late = [k for k in range(n_win) if res.choice[k] is not None and check[k] > deadlines[k]]
            if not late:
                chosen = pick
                break
            scale *= 1.25
        if chosen is None:
            chosen = [o[0] for o in win_opts]
        degraded = set()
        for job, o, full in zip(jobs, chosen, win_opts):
            self._apply(job, o)
            if o is not full[-1]:
                degraded.add(job.seq)
        for job, o in zip(jobs[n_win:], opts[n_win:]):
            self._apply(job, o[-1])
        self._degraded = degraded


def _index_of(options: Sequence[Option], option: Option) -> int:
    for i, o in enumerate(options):
        if o is option:
            return i
    raise ValueError("option is not one of the job's options")
