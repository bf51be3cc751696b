"""The accuracy-target grid of a strategy matrix: the default grid and checking a given one.

Default targets (`default_targets`): with lo/hi the worst/best configuration accuracy,
n = max(1, floor((hi - lo) / step)) in exact decimal arithmetic, the targets are
lo + k*step for k = 0..n-1, followed by hi itself. The spacing is `step` except the last
gap, which is in [step, 2*step); the best accuracy is the top target, so the
all-best-configuration strategy is reachable. For the paper (0.6600..0.7432, step
0.002): 0.660, 0.662, ..., 0.740, 0.7432 = 42 targets. If hi == lo the grid is [hi].

A target above the best configuration accuracy is refused (ValueError): every cell of a
matrix is feasible, since putting all b requests on the best configuration meets any
target up to the best accuracy.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Mapping, Sequence

from mosel.planning.matrix import exact


def default_targets(accuracies: Mapping[str, float] | Sequence[float], step: float = 0.002) -> list[float]:
    """The target grid from the worst to the best accuracy (see the module doc)."""
    values = list(accuracies.values()) if isinstance(accuracies, Mapping) else list(accuracies)
    if not values:
        raise ValueError("accuracies: none given")
    ex = [exact(v) for v in values]
    st = exact(step)
    if st <= 0:
        raise ValueError(f"step: must be > 0, got {step}")
    lo, hi = min(ex), max(ex)
    if hi == lo:
        return [float(hi)]
    n = max(1, math.floor((hi - lo) / st))
    return [float(lo + k * st) for k in range(n)] + [float(hi)]


def prepare_targets(targets: Sequence[float], best: Fraction) -> tuple[list[float], list[Fraction]]:
    """Given targets sorted and de-duplicated (by exact value), as floats and as exact
    rationals; one above `best` (the best configuration accuracy) is a ValueError."""
    if isinstance(targets, (str, bytes)) or not hasattr(targets, "__iter__"):
        raise ValueError(f"targets: expected a list of numbers, got {targets!r}")
    pairs: dict[Fraction, float] = {}
    for t in targets:
        try:
            et = exact(t)
        except ValueError as exc:
            raise ValueError(f"targets: {exc}") from None
        if et > best:
            raise ValueError(
                f"targets: {float(t)} is above the best configuration accuracy {float(best)}; "
                "no split can meet it"
            )
        pairs.setdefault(et, float(t))
    if not pairs:
        raise ValueError("targets: at least one target is needed")
    ordered = sorted(pairs)
    return [pairs[e] for e in ordered], ordered
