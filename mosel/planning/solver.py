"""Offline solver: the strategy matrix (docs/architecture.md, "The offline path"), integer-exact.

For every job size b = 1..B and every accuracy target α on a grid (mosel.planning.targets),
find the split x (x_c >= 0 integers, sum x_c = b) of minimum job latency (see
mosel.planning.costs) with
    sum_c a_c x_c >= α b.
No relaxation, no rounding: the optimum is over all integer splits, read off the exact
Pareto frontiers of mosel.planning.frontiers. The accuracy constraint is checked in exact
rational arithmetic (mosel.planning.matrix.exact: a float is the decimal it prints as);
latency is plain float arithmetic, always summed in one fixed order (see
mosel.planning.costs), so the solver and `cost.latency(x)` produce the identical float
for a split.

Ties, in order: lower latency; then higher accuracy; then fewer configurations used;
then, for JointCost, the lexicographically smallest count vector (for LateFusionCost
the last tie-break is deterministic but unspecified).

The result is a mosel.planning.matrix.StrategyMatrix.
"""

from __future__ import annotations

import math
import numbers
from bisect import bisect_left
from fractions import Fraction
from typing import Any, Mapping, Sequence

from mosel.planning.costs import CostModel, JointCost, LateFusionCost
from mosel.planning.frontiers import joint_frontiers, late_frontiers, late_state_bytes
# Strategy, StrategyMatrix, exact and default_targets: the solver's public API (re-exported).
from mosel.planning.matrix import Strategy, StrategyMatrix, check_accuracies, exact
from mosel.planning.targets import default_targets, prepare_targets

__all__ = ["LATE_FUSION_MEMORY_LIMIT", "Strategy", "StrategyMatrix", "default_targets", "exact", "solve_matrix"]

# Refuse late-fusion DPs whose state arrays would need more memory than this.
LATE_FUSION_MEMORY_LIMIT = 2 * 1024**3


def solve_matrix(
    cost: CostModel,
    accuracies: Mapping[str, float],
    max_batch: int = 32,
    targets: Sequence[float] | None = None,
    step: float = 0.002,
    *,
    source: Mapping[str, Any] | None = None,
) -> StrategyMatrix:
    """Solve the strategy matrix exactly for b = 1..max_batch and every target.

    `accuracies` must name exactly the cost model's configurations. `targets` defaults to
    `default_targets(accuracies, step)`; given targets are sorted and de-duplicated, and
    one above the best configuration accuracy is a ValueError.
    """
    if not isinstance(cost, (JointCost, LateFusionCost)):
        raise ValueError(f"cost: expected a JointCost or LateFusionCost, got {type(cost).__name__}")
    configs = cost.configurations
    acc = check_accuracies(accuracies, configs)
    if isinstance(max_batch, bool) or not isinstance(max_batch, numbers.Integral) or max_batch < 1:
        raise ValueError(f"max_batch: expected an integer >= 1, got {max_batch!r}")
    B = int(max_batch)
    if B > cost.max_batch:
        raise ValueError(f"max_batch {B} exceeds the cost model's latency tables (n up to {cost.max_batch})")

    acc_exact = [exact(acc[c]) for c in configs]
    D = math.lcm(*(a.denominator for a in acc_exact))
    A = [int(a * D) for a in acc_exact]
    best = max(acc_exact)
    if targets is None:
        targets = default_targets(acc, step)
    target_floats, target_exact = prepare_targets(targets, best)

    if isinstance(cost, JointCost):
        frontiers = joint_frontiers(cost, A, B)
    else:
        need = late_state_bytes(cost, B)
        if need > LATE_FUSION_MEMORY_LIMIT:
            raise ValueError(
                f"late-fusion solve with {len(cost.modalities)} modalities at max_batch {B} needs about "
                f"{need / 1024**3:.1f} GiB of state; use a smaller max_batch"
            )
        frontiers = late_frontiers(cost, A, B)

    rows: dict[int, list[Strategy]] = {}
    for b in range(1, B + 1):
        fr = frontiers[b]
        row: list[Strategy] = []
        last = -1
        for alpha, ax in zip(target_floats, target_exact):
            # smallest accuracy sum S (scaled by D) with S / (D b) >= alpha, i.e. ceil(alpha D b)
            threshold = -((-ax.numerator * D * b) // ax.denominator)
            i = bisect_left(fr.S, threshold)
            if i == len(fr.S):  # cannot happen: all-best meets any target <= best
                raise RuntimeError(f"no split of {b} meets target {alpha}")
            if i == last:
                continue
            last = i
            counts = fr.counts(i)
            if sum(counts) != b or sum(a * x for a, x in zip(A, counts)) != fr.S[i]:
                raise RuntimeError(f"internal: split {counts} does not reproduce the frontier point")
            latency = cost.latency(counts)
            if latency != fr.L[i]:
                raise RuntimeError(f"internal: latency of {counts} is {latency}, frontier says {fr.L[i]}")
            row.append(Strategy(counts, float(Fraction(fr.S[i], D * b)), latency, alpha))
        rows[b] = row
    return StrategyMatrix(configs, acc, B, target_floats, cost.to_dict(), rows, source)
