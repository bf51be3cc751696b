"""Finish-time prediction for an EDF queue from per-encoder backlogs (docs/architecture.md, "The scheduler").

Jobs are grouped into rounds and rounds run on lanes as mosel.scheduling.rounds describes.
A lane batch costs the profiled latency of its per-encoder loads; when every lane of a
round is done, the finishing step runs the fusion head (the head profile, if any) and
answers every request (NOMINAL_ANSWER_S each, before correction).
Up to `depth` rounds are in flight at once (the dispatcher's pipeline depth): the next
round is committed when one finishes. Depth 1 with one lane is the paper's strict
round-after-round schedule.

Each lane's batch time is predicted as `overhead_s + scale * profiled` by a `LinearFit`
(mosel.scheduling.fit) learned from the batches that lane has run; the round's finishing
step (head, answers) has a fit of its own and runs one round at a time, like a lane of its
own. The live state is the time each lane is predicted to clear its committed batches
(`lane_free`, the finishing step last) and the predicted finish of every round in flight;
both are corrected as batches and rounds report back. For queued rounds the finishing step
is taken in commit order (a later round that uses only a fast encoder may in fact finish
first: the prediction is then slightly pessimistic for it).

Fast paths (the policy calls these every dispatcher round, see issue #5):
- `rounds(sizes)` remembers the last round formation and reuses it while the size list is
  unchanged (one C-level list comparison);
- `lane_work(combined)` memoises a round's per-lane profiled work (the cost tables are
  immutable once loaded; a new cost model gets a new Predictor);
- `finish_times(..., upto=m)` stops after the round holding job m - 1 (later entries are
  NaN); its result remembers the predictor state before each round, so `finish_from(...,
  base, first)` restarts at the round holding job `first`. Both give bit-for-bit the values
  of the full recomputation: the same rounds are stepped in the same order with the same
  float expressions.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

from mosel.planning.costs import CostModel, LateFusionCost
from mosel.scheduling.fit import LinearFit
# lane_groups and round_latency are part of this module's public API (the dispatcher and the
# policies import them from here).
from mosel.scheduling.rounds import form_rounds, lane_groups, round_latency, table_at


# Rounds in flight at once in a serving dispatcher unless told otherwise (--pipeline-depth);
# tuning replays use it too, so tuned thresholds fit the pipeline they will run in.
DEFAULT_PIPELINE_DEPTH = 2
# Nominal cost of answering one request (building and handing over its response), the
# finishing step's per-request term; the finishing fit learns the real scale.
NOMINAL_ANSWER_S = 1e-4
# Lateness of rounds against their prediction: the quantile plans keep in hand, over the
# last LATENESS_WINDOW rounds.
LATENESS_QUANTILE = 0.9
LATENESS_WINDOW = 200


@dataclass
class RoundTicket:
    """A committed round as the predictor saw it: what the dispatcher reports back against."""

    committed: float
    lane_work_s: tuple[float, ...]  # uncorrected profiled seconds per lane (0: lane unused)
    head_s: float  # uncorrected profiled seconds of the finishing step
    lane_end: dict[int, float] = field(default_factory=dict)  # predicted end per used lane
    finish: float = 0.0  # predicted finish (kept up to date as batches report)
    promised: float = 0.0  # the finish predicted when it was committed
    predictor: object = field(default=None, repr=False)  # whose lanes it was committed to

    @property
    def lanes(self) -> list[int]:
        return [k for k, w in enumerate(self.lane_work_s) if w > 0]


def _ready_key(ticket: RoundTicket) -> tuple[float, float]:
    """(when its last encoder batch is predicted to end, when it was committed)."""
    return max(ticket.committed, *ticket.lane_end.values()), ticket.committed


class FinishTimes(list):
    """Predicted finish times, plus the predictor state before each stepped round (for
    `Predictor.finish_from`)."""

    states: list


class Predictor:
    """Per-lane finish-time predictor corrected by measured batches.

    `splits[k]` is job k's split: counts aligned to `cost.configurations`.
    """

    def __init__(self, cost: CostModel, max_round_items: int = 32, *, unit_s: float = 1e-3, depth: int = 1,
                 ewma: float = 0.2, correction_bounds: tuple[float, float] = (0.5, 4.0)):
        if max_round_items < 1:
            raise ValueError(f"max_round_items must be >= 1, got {max_round_items}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.cost = cost
        self.max_round_items = int(max_round_items)
        self.unit_s = float(unit_s)
        self.depth = int(depth)
        self.lanes = lane_groups(cost, cost.modalities if isinstance(cost, LateFusionCost) else ["model"])
        # per lane: the encoder indices (cost.modalities order) whose work it runs
        if isinstance(cost, LateFusionCost):
            pos = {m: i for i, m in enumerate(cost.modalities)}
            self._lane_encoders = [tuple(pos[m] for m in lane if m in pos) for lane in self.lanes]
        else:
            self._lane_encoders = [()]
        self.lane_fits = [LinearFit(ewma, correction_bounds) for _ in self.lanes]
        self.head_fit = LinearFit(ewma, correction_bounds)
        # when each lane clears its committed batches; the last entry is the finishing step
        # (fusion head and answers), which runs one round at a time
        self.lane_free = [-math.inf] * (len(self.lanes) + 1)
        self._finisher_idle = -math.inf  # when the last finishing step ended
        # How late rounds end against what was predicted at their commit (noise the fits
        # cannot remove); plans keep `lateness_s`, a high quantile of it, in hand.
        self._errors: deque[float] = deque(maxlen=LATENESS_WINDOW)
        self.lateness_s = 0.0
        self.in_flight: list[RoundTicket] = []
        self._index = {c: i for i, c in enumerate(cost.configurations)}
        self._rounds_sizes: list[int] | None = None
        self._rounds: list[tuple[int, int]] = []
        self._work: dict[tuple[int, ...], tuple[float, ...]] = {}

    # ---- splits and work ---------------------------------------------------------
    def split_of(self, configurations: Sequence[str]) -> tuple[int, ...]:
        """Counts (aligned to the cost model) of a list of per-item configurations."""
        counts = [0] * len(self._index)
        for c in configurations:
            try:
                counts[self._index[c]] += 1
            except KeyError:
                raise ValueError(f"configuration {c!r} is not in the cost model {list(self._index)}") from None
        return tuple(counts)

    def lane_work(self, combined: tuple[int, ...]) -> tuple[float, ...]:
        """Profiled seconds per lane, then of the finishing step (head profile plus the
        nominal answer cost per request), of a round whose combined split is `combined`
        (memoised)."""
        work = self._work.get(combined)
        if work is not None:
            return work
        cost, unit = self.cost, self.unit_s
        items = sum(combined)
        if isinstance(cost, LateFusionCost):
            loads = cost.loads(combined)
            lanes = [sum(table_at(cost.encoder_latency[cost.modalities[m]], loads[m]) for m in encoders) * unit
                     for encoders in self._lane_encoders]
            head = table_at(cost.head_latency, items) * unit if cost.head_latency is not None else 0.0
        else:
            lanes, head = [round_latency(cost, combined) * unit], 0.0
        # the finishing step also builds and sends an answer per request, which no profile
        # times: a nominal per-request cost the finishing fit scales
        work = (*lanes, head + items * NOMINAL_ANSWER_S)
        if len(self._work) >= 65536:
            self._work.clear()
        self._work[combined] = work
        return work

    def rounds(self, sizes: Sequence[int]) -> list[tuple[int, int]]:
        """form_rounds(sizes, max_round_items), reusing the last answer while sizes repeat.
        The returned list is shared: do not modify it."""
        if not isinstance(sizes, list):
            sizes = list(sizes)
        if self._rounds_sizes is not None and self._rounds_sizes == sizes:
            return self._rounds
        rounds = form_rounds(sizes, self.max_round_items)
        self._rounds_sizes = sizes.copy()
        self._rounds = rounds
        return rounds

    # ---- the clock ------------------------------------------------------------------
    def _state(self, now: float) -> list:
        """[lane_free, heap of in-flight round finishes, last commit time, last ready time]
        as of `now` (what `_step` advances)."""
        finishes = [t.finish for t in self.in_flight]
        heapq.heapify(finishes)
        ready = max((_ready_key(t)[0] for t in self.in_flight), default=-math.inf)
        return [list(self.lane_free), finishes, now, ready]

    def _step(self, state, work: tuple[float, ...]) -> float:
        """Commit one round with per-lane `work` on `state` (mutated); its finish time."""
        free, heap, commit = state[0], state[1], state[2]
        if len(heap) >= self.depth:
            commit = max(commit, heapq.heappop(heap))
        end = commit
        fits = self.lane_fits
        for k in range(len(free) - 1):
            w = work[k]
            if w > 0.0:
                start = free[k] if free[k] > commit else commit
                e = start + fits[k](w)
                free[k] = e
                if e > end:
                    end = e
        # The finishing step takes rounds as their batches complete. A round ready before
        # the one stepped last overtakes it (its wait behind a finishing step is ignored).
        start = end if end < state[3] or free[-1] < end else free[-1]
        finish = start + self.head_fit(work[-1])
        if finish > free[-1]:
            free[-1] = finish
        if end > state[3]:
            state[3] = end
        heapq.heappush(heap, finish)
        state[2] = commit
        return finish

    def start_time(self, now: float) -> float:
        """Earliest time queued work can start on some lane."""
        return max(now, min(self.lane_free[:-1]))

    # ---- prediction -------------------------------------------------------------
    def finish_times(self, sizes: Sequence[int], splits: Sequence[Sequence[int]], now: float, *,
                     upto: int | None = None) -> FinishTimes:
        """Predicted finish time of every job (same order as given, which must be EDF).
        With `upto`, only the rounds up to the one holding job upto - 1 are predicted; the
        entries after that round are NaN."""
        if len(sizes) != len(splits):
            raise ValueError("sizes and splits differ in length")
        out = FinishTimes([math.nan] * len(sizes))
        out.states = []
        self._accumulate(self.rounds(sizes), 0, self._state(now), splits, out, upto)
        return out

    def finish_from(self, sizes: Sequence[int], splits: Sequence[Sequence[int]], now: float,
                    base: Sequence[float], first: int, *, upto: int | None = None) -> FinishTimes:
        """Incremental finish_times: `base` is a finish_times result (same sizes and now)
        for a split list equal to `splits` at every index below `first`; only the rounds
        from the one holding job `first` are recomputed."""
        if len(sizes) != len(splits) or len(base) != len(sizes):
            raise ValueError("sizes, splits and base differ in length")
        states = getattr(base, "states", None)
        rounds = self.rounds(sizes)
        r = 0
        if first > 0 and rounds:
            lo, hi = 0, len(rounds) - 1  # the round holding job `first`
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if rounds[mid][0] <= first:
                    lo = mid
                else:
                    hi = mid - 1
            r = lo
        if states is None or r >= len(states):
            return self.finish_times(sizes, splits, now, upto=upto)
        out = FinishTimes(base)
        out.states = list(states[:r])
        for k in range(rounds[r][0] if rounds else 0, len(out)):
            out[k] = math.nan
        free, heap, commit, ready = states[r]
        self._accumulate(rounds, r, [list(free), list(heap), commit, ready], splits, out, upto)
        return out

    def _accumulate(self, rounds, r, state, splits, out: FinishTimes, upto) -> None:
        work_of, cache = self.lane_work, self._work
        states = out.states
        last = (len(out) if upto is None else min(upto, len(out))) - 1
        for i, j in rounds[r:] if r else rounds:
            if i > last:
                break
            combined = tuple(splits[i]) if j - i == 1 else tuple(map(sum, zip(*splits[i:j])))
            work = cache.get(combined)
            if work is None:
                work = work_of(combined)
            states.append((tuple(state[0]), tuple(state[1]), state[2], state[3]))
            t = self._step(state, work)
            for k in range(i, j):
                out[k] = t

    def first_miss(self, sizes, splits, deadlines: Sequence[float], now: float,
                   margin: float = 1.0) -> tuple[int | None, FinishTimes]:
        """Index of the first job predicted to finish after `now + margin * (deadline - now)`
        (None if none) and the predicted finish times."""
        finish = self.finish_times(sizes, splits, now)
        for k, (f, d) in enumerate(zip(finish, deadlines)):
            if f > now + margin * (d - now):
                return k, finish
        return None, finish

    def hopeless(self, sizes, splits, deadlines, now: float) -> list[int]:
        """Jobs that miss their deadline even with the given (cheapest) splits, found in EDF
        order: the earliest-deadline job of the first round predicted to end too late is
        removed and the rounds from there are formed again."""
        # fast path: nobody late with the plain rounds -> nobody is hopeless (the loop below
        # would form exactly these rounds and drop no one)
        finish = self.finish_times(sizes, splits, now)
        if all(f <= d for f, d in zip(finish, deadlines)):
            return []
        alive = list(range(len(sizes)))
        dropped: list[int] = []
        state = self._state(now)
        pos = 0
        while pos < len(alive):
            items, end = 0, pos
            while end < len(alive) and items + sizes[alive[end]] <= self.max_round_items:
                items += sizes[alive[end]]
                end += 1
            end = max(end, pos + 1)
            members = alive[pos:end]
            combined = tuple(map(sum, zip(*[splits[k] for k in members])))
            trial = [list(state[0]), list(state[1]), state[2], state[3]]
            finish = self._step(trial, self.lane_work(combined))
            late = [k for k in members if deadlines[k] < finish]
            if late:
                victim = min(late, key=lambda k: deadlines[k])
                dropped.append(victim)
                alive.remove(victim)
                continue
            state = trial
            pos = end
        return sorted(dropped)

    # ---- feedback from the dispatcher ----------------------------------------------
    def round_started(self, now: float, splits: Sequence[Sequence[int]]) -> RoundTicket:
        """The dispatcher commits a round of jobs with these splits: its batches join the
        lanes' queues. Returns the ticket to report its batches and its end against."""
        combined = tuple(map(sum, zip(*splits))) if splits else tuple([0] * len(self._index))
        work = self.lane_work(combined)
        ticket = RoundTicket(committed=now, lane_work_s=work[:-1], head_s=work[-1], predictor=self)
        for k in ticket.lanes:
            start = max(self.lane_free[k], now)
            ticket.lane_end[k] = start + self.lane_fits[k](work[k])
            self.lane_free[k] = ticket.lane_end[k]
        self.in_flight.append(ticket)
        self._refresh()
        ticket.promised = ticket.finish
        return ticket

    def lane_finished(self, ticket: RoundTicket, lane: int, now: float, measured_s: float | None) -> None:
        """A lane is done with the ticket's batch at `now`, having run it in `measured_s`
        (its own service time, not the wait behind earlier batches; None when the batch
        failed or was not started): refit the lane and move its remaining backlog by the
        error."""
        if measured_s is not None:
            self.lane_fits[lane].update(ticket.lane_work_s[lane], measured_s)
        delta = now - ticket.lane_end.get(lane, now)
        ticket.lane_end[lane] = now
        self.lane_free[lane] = max(now, self.lane_free[lane] + delta)
        for t in self.in_flight:  # later batches on this lane move with it
            if t is not ticket and t.committed >= ticket.committed and lane in t.lane_end:
                t.lane_end[lane] = max(now, t.lane_end[lane] + delta)
        self._refresh()

    def round_finished(self, ticket: RoundTicket, now: float, finishing_s: float | None) -> None:
        """The round is settled at `now`; its finishing step (head, answers) took
        `finishing_s` (None when the round failed). Every committed round must be reported
        here once, or its ticket would hold the backlog up forever."""
        if finishing_s is not None:
            self.head_fit.update(ticket.head_s, finishing_s)
            self._errors.append(now - ticket.promised)
            ranked = sorted(self._errors)
            self.lateness_s = max(0.0, ranked[int(LATENESS_QUANTILE * (len(ranked) - 1))])
        try:
            self.in_flight.remove(ticket)
        except ValueError:
            pass
        self._finisher_idle = now
        self._refresh()

    def _refresh(self) -> None:
        """Predicted finish of every round in flight: the finishing step takes rounds in the
        order their encoder batches complete, one at a time."""
        free = self._finisher_idle
        head = self.head_fit
        for t in sorted(self.in_flight, key=_ready_key):
            ready = _ready_key(t)[0]
            t.finish = (ready if ready > free else free) + head(t.head_s)
            free = t.finish
        self.lane_free[-1] = free

    def carry_feedback(self, old: "Predictor") -> None:
        """Keep what an earlier predictor learned (backlog, fits) across a new profile with
        the same lanes."""
        if old.lanes != self.lanes:
            return
        self.lane_free = list(old.lane_free)
        self._finisher_idle = old._finisher_idle
        self._errors, self.lateness_s = deque(old._errors, maxlen=LATENESS_WINDOW), old.lateness_s
        self.in_flight = list(old.in_flight)
        for ticket in self.in_flight:  # their feedback now lands here
            ticket.predictor = self
        for mine, theirs in zip(self.lane_fits, old.lane_fits):
            mine.copy_from(theirs)
        self.head_fit.copy_from(old.head_fit)

    def fits(self) -> dict:
        """The learned corrections, for statistics and calibration."""
        return {"lanes": {"+".join(lane): fit.to_dict() for lane, fit in zip(self.lanes, self.lane_fits)},
                "finish": self.head_fit.to_dict(), "depth": self.depth, "lateness_ms": self.lateness_s * 1e3}
