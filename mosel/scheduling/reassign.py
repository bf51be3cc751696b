"""Reassignment: one strategy per queued job, maximising request-weighted mean accuracy
subject to every job's predicted finish meeting its budget.

Latency model (the *additive approximation*): jobs run one after another in EDF order, job
k taking `option.latency`, so job k finishes after the prefix sum of the latencies of jobs
0..k. Constraint: prefix_k <= budget_k for every job. The live system batches several jobs
into one round (mosel.scheduling.rounds), where jobs interact through shared batches; the
policy therefore scales the options' latencies by the round/additive ratio of the current
queue and checks the result with the lane predictor (see MoselPolicy). Under the
additive model the optimisation below is exact.

Objective: maximise sum_k size_k * accuracy_k, i.e. the request-weighted mean accuracy.
Each job's options are already restricted to those meeting its floor.

Jobs that cannot meet `hard_budgets` (their deadline) even when they and every earlier kept
job use their cheapest option are reported in `infeasible` and left out of the sequence
(the dispatcher drops them, admission refuses them). For a kept job whose cheapest prefix
fits its hard budget but not its (margin) budget, the budget is relaxed to that cheapest
prefix, so all-cheapest is always a feasible answer.

Algorithm: dynamic programming over jobs in EDF order on the Pareto frontier of partial
assignments (elapsed time, accuracy sum): a partial assignment that is both slower and no
more accurate than another can never be part of a better completion, since constraints
only bound prefix sums. Times are kept exact (no discretisation), so the result is optimal
under the additive model. If the DP exceeds `time_cap_s`, a greedy fallback is used: start
from all-cheapest and repeatedly apply the single upgrade with the best accuracy gain per
unit of added latency that keeps every later job within budget (`exact` is then False).

Implementation notes (issue #5): the frontier is kept as parallel lists of floats (times,
values) plus, per stage, lists of parent indices and option indices, so a stage allocates
a handful of lists instead of one tuple per candidate (less work, less GC pressure). A job
with a single option shifts the frontier without sorting. For a fixed option the shifted
frontier is already sorted by time, so the stage's sort only merges sorted runs. The cap
is measured in CPU time of the calling thread (`time.thread_time`), not wall time: it
bounds the work of the DP, and a preemption by another process no longer turns an exact
answer into the greedy one (the wall time already lost would not be won back by switching).
Callers whose option lists are already Pareto-sorted (latency ascending, accuracy strictly
rising, as MoselPolicy.options returns them) may pass `presorted=True` to skip `pareto`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

EPS = 1e-12


@dataclass(frozen=True)
class Option:
    latency: float  # additive latency, same unit as the budgets
    accuracy: float  # the job's mean expected accuracy with this option
    size: int  # requests in the job
    payload: Any = field(default=None, compare=False)  # e.g. a Strategy or per-item configurations

    @property
    def value(self) -> float:
        return self.accuracy * self.size


@dataclass
class ReassignResult:
    choice: list  # per job: the chosen Option, or None for an infeasible job
    infeasible: list[int]  # indices of jobs that cannot make their hard budget
    value: float  # sum of size * accuracy over the kept jobs
    exact: bool  # False when the greedy fallback was used
    budgets: list[float]  # effective budgets used (after relaxation); inf for infeasible jobs


def pareto(options: Sequence[Option]) -> list[Option]:
    """Options sorted by latency, strictly rising accuracy (dominated ones removed)."""
    out: list[Option] = []
    for o in sorted(options, key=lambda o: (o.latency, -o.accuracy)):
        if not out or o.accuracy > out[-1].accuracy:
            out.append(o)
    return out


def reassign(options: Sequence[Sequence[Option]], budgets: Sequence[float],
             hard_budgets: Sequence[float] | None = None, *, time_cap_s: float | None = 0.005,
             force_greedy: bool = False, presorted: bool = False) -> ReassignResult:
    n = len(options)
    if len(budgets) != n or (hard_budgets is not None and len(hard_budgets) != n):
        raise ValueError("options and budgets differ in length")
    if any(not opts for opts in options):
        raise ValueError("every job needs at least one option")
    hard = list(budgets) if hard_budgets is None else list(hard_budgets)
    opts = list(options) if presorted else [pareto(o) for o in options]

    # Feasibility with all-cheapest, EDF order; infeasible jobs are left out.
    infeasible: list[int] = []
    eff = [float("inf")] * n
    prefix = 0.0
    for k in range(n):
        t = prefix + opts[k][0].latency
        if t > hard[k] + EPS:
            infeasible.append(k)
            continue
        prefix = t
        eff[k] = max(float(budgets[k]), t)
    dropped = set(infeasible)
    kept = [k for k in range(n) if k not in dropped]

    chosen: dict[int, Option] | None = None
    exact = False
    if not force_greedy:
        chosen = _dp(opts, eff, kept, None if time_cap_s is None else time.thread_time() + time_cap_s)
        exact = chosen is not None
    if chosen is None:
        chosen = _greedy(opts, eff, kept)
    choice = [chosen.get(k) for k in range(n)]
    value = sum(o.value for o in choice if o is not None)
    return ReassignResult(choice, infeasible, value, exact, eff)


def _dp(opts, eff, kept, stop_at) -> dict[int, Option] | None:
    # The frontier: parallel lists ft (elapsed, ascending) and fv (value sum, strictly
    # rising by more than EPS); stage s stores, per frontier point, the index of its parent
    # point in the previous stage's frontier (par[s]) and the option it took (pick[s]).
    ft = [0.0]
    fv = [0.0]
    par: list[list[int]] = []
    pick: list[list[int]] = []
    thread_time = time.thread_time
    for k in kept:
        limit = eff[k] + EPS
        ok = opts[k]
        if len(ok) == 1:
            # one option: every point shifts by the same latency; order and dominance hold
            lat = ok[0].latency
            val = ok[0].value
            m = len(ft)
            while m and ft[m - 1] + lat > limit:
                m -= 1
            if not m:  # cannot happen: all-cheapest fits by construction
                raise RuntimeError("reassign: no feasible partial assignment")
            ft = [t + lat for t in ft[:m]] if m < len(ft) else [t + lat for t in ft]
            fv = [v + val for v in fv[:m]] if m < len(fv) else [v + val for v in fv]
            par.append(list(range(m)))
            pick.append([0] * m)
        else:
            ct: list[float] = []
            cv: list[float] = []
            cp: list[int] = []
            ci: list[int] = []
            size = len(ft)
            for i, o in enumerate(ok):
                lat = o.latency
                val = o.value
                m = 0
                while m < size and ft[m] + lat <= limit:
                    m += 1
                if not m:
                    break  # options are sorted by latency: later ones do not fit either
                ct.extend([t + lat for t in ft[:m]])
                cv.extend([v + val for v in fv[:m]])
                cp.extend(range(m))
                ci.extend([i] * m)
            if not ct:  # cannot happen: all-cheapest fits by construction
                raise RuntimeError("reassign: no feasible partial assignment")
            # ties in time: the most valuable first (as a (time, -value) sort would)
            order = sorted(range(len(ct)), key=cv.__getitem__, reverse=True)
            order.sort(key=ct.__getitem__)
            nt: list[float] = []
            nv: list[float] = []
            np_: list[int] = []
            ni: list[int] = []
            best = -float("inf")
            for c in order:
                v = cv[c]
                if v > best + EPS:
                    nt.append(ct[c])
                    nv.append(v)
                    np_.append(cp[c])
                    ni.append(ci[c])
                    best = v
            ft, fv = nt, nv
            par.append(np_)
            pick.append(ni)
        if stop_at is not None and thread_time() > stop_at:
            return None
    # the most accurate point is the last one (values rise along the frontier)
    point = len(ft) - 1
    chosen: dict[int, Option] = {}
    for s in range(len(kept) - 1, -1, -1):
        k = kept[s]
        chosen[k] = opts[k][pick[s][point]]
        point = par[s][point]
    return chosen


def _greedy(opts, eff, kept) -> dict[int, Option]:
    level = {k: 0 for k in kept}
    lat = [opts[k][0].latency for k in kept]
    while True:
        # slack of each kept job; an upgrade at position p must fit the minimum slack from p on
        slack, prefix = [], 0.0
        for p, k in enumerate(kept):
            prefix += lat[p]
            slack.append(eff[k] - prefix)
        suffix_min = [0.0] * len(kept)
        m = float("inf")
        for p in range(len(kept) - 1, -1, -1):
            m = min(m, slack[p])
            suffix_min[p] = m
        best = None
        for p, k in enumerate(kept):
            cur = opts[k][level[k]]
            for i in range(level[k] + 1, len(opts[k])):
                o = opts[k][i]
                dt = o.latency - cur.latency
                if dt > suffix_min[p] + EPS:
                    break
                gain = o.value - cur.value
                ratio = gain / dt if dt > 0 else float("inf")
                if best is None or ratio > best[0]:
                    best = (ratio, p, k, i)
        if best is None:
            break
        _, p, k, i = best
        level[k] = i
        lat[p] = opts[k][i].latency
    return {k: opts[k][level[k]] for k in kept}
