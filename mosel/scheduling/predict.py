"""Finish-time prediction for an EDF queue, the way the dispatcher will run it.

The dispatcher (mosel.selection.dispatcher) forms rounds: queued jobs in EDF order are
taken while the round holds at most `max_round_items` requests; a job is never split and
round formation stops at the first job that does not fit (no skipping ahead). Every job
of a round is answered when the round ends. Round formation depends only on job sizes,
never on the chosen configurations.

A round's latency comes from the cost model applied to the round's combined split:
- JointCost: one micro-batch per configuration, sum_c L_c(n_c);
- LateFusionCost: per-encoder loads summed over the round's requests,
  `latency_of_loads(loads, round size)` (shared = sum, separate = max, plus the head).
A batch larger than the profiled max_batch is costed as ceil(n / B) batches
(q * L(B) + L(r)), since no table entry exists for it. Other cost models fall back to
`cost.latency(split)`.

Cost tables are in milliseconds (profile store convention); `unit_s` converts them to the
clock's seconds. A round is predicted to take `correction * profiled + overhead_s`,
both fitted to measured rounds (`round_finished`, least squares with forgetting):
`overhead_s` is the fixed cost a profile cannot see (gRPC calls, (de)serialisation,
fusion: it dominates small rounds on a live stack), `correction` the scale of the rest.
`busy_until` is when the round in flight is expected to end; the queue starts after it.

A job larger than max_round_items is predicted to run alone in one round (the live
dispatcher as written would never take such a job; see the issue notes).

Fast paths (the policy calls these every dispatcher round, see issue #5):
- `rounds(sizes)` remembers the last round formation and reuses it while the size list is
  unchanged (one C-level list comparison);
- `round_units(combined)` memoises the cost model's latency of a combined split (the cost
  tables are immutable once loaded; a new cost model gets a new Predictor);
- `finish_times(..., upto=m)` stops after the round holding job m - 1 (later entries are
  NaN), and `finish_from(..., base, first)` reuses `base` (finish times of a split list
  that agrees with `splits` before index `first`) for every round before the one holding
  job `first`. Both give bit-for-bit the values of the full recomputation: the same rounds
  are accumulated in the same order with the same float expression.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from mosel.costs import CostModel, JointCost, LateFusionCost


def _table_at(table: Sequence[float], n: int) -> float:
    """L(n), extended past the table's end as full batches of the largest size."""
    if n <= 0:
        return 0.0
    top = len(table) - 1
    if n <= top:
        return table[n]
    q, r = divmod(n, top)
    return q * table[top] + table[r]


def round_latency(cost: CostModel, counts: Sequence[int]) -> float:
    """Latency (cost units) of one round whose combined split is `counts`
    (aligned to `cost.configurations`)."""
    if isinstance(cost, JointCost):
        total = 0.0
        for c, n in zip(cost.configurations, counts):
            if n:
                total += _table_at(cost.config_latency[c], n)
        return total
    if isinstance(cost, LateFusionCost):
        loads = [0] * len(cost.modalities)
        for encoders, n in zip(cost.config_encoders, counts):
            for m in encoders:
                loads[m] += n
        if max(loads) <= cost.max_batch and sum(counts) <= cost.max_batch:
            return cost.latency_of_loads(loads, sum(counts))
        parts = [_table_at(cost.encoder_latency[m], n) for m, n in zip(cost.modalities, loads)]
        total = sum(parts) if cost.placement == "shared" else max(parts)
        if cost.head_latency is not None:
            total += _table_at(cost.head_latency, sum(counts))
        return total
    return float(cost.latency(tuple(counts)))


def form_rounds(sizes: Sequence[int], max_round_items: int) -> list[tuple[int, int]]:
    """[start, end) index ranges of the rounds the dispatcher forms from jobs of `sizes`
    (EDF order): greedy, never splitting a job, stopping at the first job that does not fit."""
    rounds = []
    i, n = 0, len(sizes)
    while i < n:
        j, items = i, 0
        while j < n and items + sizes[j] <= max_round_items:
            items += sizes[j]
            j += 1
        if j == i:  # a job larger than a round: predicted to run alone
            j = i + 1
        rounds.append((i, j))
        i = j
    return rounds


class Predictor:
    """Round-based finish-time predictor with a measured/predicted correction.

    `splits[k]` is job k's split: counts aligned to `cost.configurations`.
    """

    def __init__(self, cost: CostModel, max_round_items: int = 32, *, unit_s: float = 1e-3,
                 correction: float = 1.0, ewma: float = 0.2, correction_bounds: tuple[float, float] = (0.5, 4.0)):
        if max_round_items < 1:
            raise ValueError(f"max_round_items must be >= 1, got {max_round_items}")
        if not 0.0 < ewma <= 1.0:
            raise ValueError(f"ewma must be in (0, 1], got {ewma}")
        self.cost = cost
        self.max_round_items = int(max_round_items)
        self.unit_s = float(unit_s)
        self.correction = float(correction)
        self.ewma = float(ewma)
        self.correction_bounds = correction_bounds
        self.overhead_s = 0.0  # learned fixed cost per round (see module doc)
        self._fit = [0.0] * 5  # forgetting sums: weight, predicted, measured, predicted^2, predicted*measured
        self.busy_until = -math.inf
        self._index = {c: i for i, c in enumerate(cost.configurations)}
        self._rounds_sizes: list[int] | None = None
        self._rounds: list[tuple[int, int]] = []
        self._units: dict[tuple[int, ...], float] = {}

    # ---- splits -----------------------------------------------------------------
    def split_of(self, configurations: Sequence[str]) -> tuple[int, ...]:
        """Counts (aligned to the cost model) of a list of per-item configurations."""
        counts = [0] * len(self._index)
        for c in configurations:
            try:
                counts[self._index[c]] += 1
            except KeyError:
                raise ValueError(f"configuration {c!r} is not in the cost model {list(self._index)}") from None
        return tuple(counts)

    def round_seconds(self, splits: Sequence[Sequence[int]]) -> float:
        """Uncorrected latency in seconds of one round made of jobs with these splits."""
        if not splits:
            return round_latency(self.cost, [0] * len(self._index)) * self.unit_s
        return self.round_units(tuple(map(sum, zip(*splits)))) * self.unit_s

    def round_units(self, combined: tuple[int, ...]) -> float:
        """round_latency(cost, combined), memoised."""
        units = self._units.get(combined)
        if units is None:
            units = round_latency(self.cost, combined)
            if len(self._units) >= 65536:
                self._units.clear()
            self._units[combined] = units
        return units

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

    # ---- prediction -------------------------------------------------------------
    def start_time(self, now: float) -> float:
        return max(now, self.busy_until)

    def finish_times(self, sizes: Sequence[int], splits: Sequence[Sequence[int]], now: float, *,
                     upto: int | None = None) -> list[float]:
        """Predicted finish time of every job (same order as given, which must be EDF).
        With `upto`, only the rounds up to the one holding job upto - 1 are predicted; the
        entries after that round are NaN."""
        if len(sizes) != len(splits):
            raise ValueError("sizes and splits differ in length")
        out = [math.nan] * len(sizes)
        self._accumulate(self.rounds(sizes), 0, self.start_time(now), splits, out, upto)
        return out

    def finish_from(self, sizes: Sequence[int], splits: Sequence[Sequence[int]], now: float,
                    base: Sequence[float], first: int, *, upto: int | None = None) -> list[float]:
        """Incremental finish_times: `base` holds the finish times (at least up to the round
        before the one holding job `first`) of a split list equal to `splits` at every index
        below `first`; only the rounds from the one holding job `first` are recomputed."""
        if len(sizes) != len(splits) or len(base) != len(sizes):
            raise ValueError("sizes, splits and base differ in length")
        rounds = self.rounds(sizes)
        out = list(base)
        r, t = 0, self.start_time(now)
        if first > 0:
            # the round holding job `first` (rounds are contiguous and ordered)
            lo, hi = 0, len(rounds) - 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if rounds[mid][0] <= first:
                    lo = mid
                else:
                    hi = mid - 1
            r = lo
            if r > 0:
                t = base[rounds[r - 1][0]]
        for k in range(rounds[r][0] if rounds else 0, len(out)):
            out[k] = math.nan
        self._accumulate(rounds, r, t, splits, out, upto)
        return out

    def _accumulate(self, rounds, r, t, splits, out, upto) -> None:
        corr, unit, overhead = self.correction, self.unit_s, self.overhead_s
        units = self._units
        last = (len(out) if upto is None else min(upto, len(out))) - 1
        for i, j in rounds[r:] if r else rounds:
            if i > last:
                break
            if j - i == 1:
                combined = tuple(splits[i])
            else:
                combined = tuple(map(sum, zip(*splits[i:j])))
            u = units.get(combined)
            if u is None:
                u = self.round_units(combined)
            t += corr * (u * unit) + overhead
            for k in range(i, j):
                out[k] = t

    def first_miss(self, sizes, splits, deadlines: Sequence[float], now: float,
                   margin: float = 1.0) -> tuple[int | None, list[float]]:
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
        t = self.start_time(now)
        pos = 0
        while pos < len(alive):
            items, end = 0, pos
            while end < len(alive) and items + sizes[alive[end]] <= self.max_round_items:
                items += sizes[alive[end]]
                end += 1
            end = max(end, pos + 1)
            members = alive[pos:end]
            finish = t + self.correction * self.round_seconds([splits[k] for k in members]) + self.overhead_s
            late = [k for k in members if deadlines[k] < finish]
            if late:
                victim = min(late, key=lambda k: deadlines[k])
                dropped.append(victim)
                alive.remove(victim)
                continue
            t = finish
            pos = end
        return sorted(dropped)

    # ---- feedback from the dispatcher ----------------------------------------------
    def round_started(self, now: float, splits: Sequence[Sequence[int]]) -> float:
        """The dispatcher starts a round: returns its uncorrected predicted latency (s)
        and sets busy_until to the corrected predicted end."""
        predicted = self.round_seconds(splits)
        self.busy_until = now + self.correction * predicted + self.overhead_s
        return predicted

    def carry_feedback(self, old: "Predictor") -> None:
        """Keep what an earlier predictor learned (round in flight, fit) across a new profile."""
        self.busy_until = old.busy_until
        self.correction, self.overhead_s, self._fit = old.correction, old.overhead_s, list(old._fit)

    def round_finished(self, now: float, measured_s: float, predicted_s: float) -> None:
        """The round ended: refit measured ~ overhead + correction * predicted.

        Least squares over past rounds with exponential forgetting (weight 1 - ewma per
        round), so the fixed part and the scale separate as soon as rounds of different
        sizes have been seen; with a single round size the scale alone is fitted."""
        self.busy_until = now
        if not (predicted_s > 0 and measured_s > 0 and math.isfinite(measured_s)):
            return
        keep = 1.0 - self.ewma
        f = self._fit
        f[0] = keep * f[0] + 1.0
        f[1] = keep * f[1] + predicted_s
        f[2] = keep * f[2] + measured_s
        f[3] = keep * f[3] + predicted_s * predicted_s
        f[4] = keep * f[4] + predicted_s * measured_s
        w, sp, sm, spp, spm = f
        spread = w * spp - sp * sp
        lo, hi = self.correction_bounds
        if spread > 1e-6 * w * spp:
            scale = (w * spm - sp * sm) / spread
        else:
            scale = sm / sp
        self.correction = min(hi, max(lo, scale))
        self.overhead_s = max(0.0, (sm - self.correction * sp) / w) if spread > 1e-6 * w * spp else 0.0