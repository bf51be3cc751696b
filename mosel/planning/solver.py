"""Offline solver: the strategy matrix (docs/architecture.md, "The offline path"), integer-exact.

For every job size b = 1..B and every accuracy target α on a grid, find the split
x (x_c >= 0 integers, sum x_c = b) of minimum job latency (see mosel.planning.costs) with
    sum_c a_c x_c >= α b.
No relaxation, no rounding: the optimum is over all integer splits.

Exact arithmetic. Accuracies and targets are floats; each is read as the decimal it
prints as (`repr`, the shortest string that round-trips), e.g. 0.7432 is exactly
7432/10000. The accuracy constraint is then checked in exact rational arithmetic, so no
tolerance is used at all: 0.72 + 0.68 >= 2 * 0.70 holds, as a person would expect, and a
strategy's float `accuracy` (the correctly rounded exact mean) is never below its target.
Latency is plain float arithmetic, always summed in one fixed order (see mosel.planning.costs),
so the solver and `cost.latency(x)` produce the identical float for a split.

Ties, in order: lower latency; then higher accuracy; then fewer configurations used;
then, for JointCost, the lexicographically smallest count vector (for LateFusionCost
the last tie-break is deterministic but unspecified).

Algorithms (both exact, both give all job sizes 1..B in one pass):
- JointCost: latency is separable, sum_c L_c(x_c). A DP over configurations keeps, for
  every number n of requests assigned so far, the Pareto frontier of (accuracy sum,
  latency) of the partial splits; a partial split dominated in both is never part of a
  better completion, so the final frontier for n = b holds the answer for every α, and
  each target is a binary search on it.
- LateFusionCost: latency depends on the split only through the encoder loads
  (load_m, m = 1..M) and b. A DP over configurations on the dense state
  (n, load_1, .., load_M) (numpy, int64 keys; Python ints when they could overflow)
  computes, for each state, the largest accuracy sum reachable (ties: fewer
  configurations). Latency is then a function of the state, so the frontier for b is
  the Pareto frontier over load vectors, and the split is recovered by backtracking.
  Size: (B+1)^(M+1) states, e.g. 1.2 M for 3 modalities at B = 32.

Default targets (`default_targets`): with lo/hi the worst/best configuration accuracy,
n = max(1, floor((hi - lo) / step)) in exact decimal arithmetic, the targets are
lo + k*step for k = 0..n-1, followed by hi itself. The spacing is `step` except the last
gap, which is in [step, 2*step); the best accuracy is the top target, so the
all-best-configuration strategy is reachable. For the paper (0.6600..0.7432, step
0.002): 0.660, 0.662, ..., 0.740, 0.7432 = 42 targets. If hi == lo the grid is [hi].
A target above the best configuration accuracy is refused (ValueError): every cell of a
matrix is feasible, since putting all b requests on the best configuration meets any
target up to the best accuracy.

Rows. Row b lists the distinct strategies chosen over the targets, sorted by accuracy
ascending; both accuracy and latency strictly increase along a row (the Pareto frontier
restricted to the grid), and `Strategy.target` is the lowest grid target it is chosen
for. Job sizes above the matrix's max_batch are refused (ValueError): the caller splits
such a job into jobs of at most max_batch requests (each with the job's target); the
matrix does not guess how the pieces are scheduled.
"""

from __future__ import annotations

import math
import numbers
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from mosel.planning.costs import CostModel, JointCost, LateFusionCost

MATRIX_FORMAT = "mosel.strategy_matrix/1"

# Refuse late-fusion DPs whose state arrays would need more memory than this.
LATE_FUSION_MEMORY_LIMIT = 2 * 1024**3


def exact(value: Any) -> Fraction:
    """The exact rational a number stands for; floats are read as the decimal they print as."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, numbers.Integral):
        return Fraction(int(value))
    if not isinstance(value, numbers.Real):
        raise ValueError(f"expected a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"expected a finite number, got {v!r}")
    return Fraction(repr(v))


@dataclass(frozen=True)
class Strategy:
    """How to split one job: `counts[i]` requests run with configuration i of the matrix.

    `accuracy` is the expected job accuracy sum_c a_c x_c / b (correctly rounded),
    `latency` the job latency from the cost model, `target` the lowest grid target this
    strategy is chosen for.
    """

    counts: tuple[int, ...]
    accuracy: float
    latency: float
    target: float

    @property
    def size(self) -> int:
        return sum(self.counts)

    @property
    def num_configurations(self) -> int:
        return sum(1 for x in self.counts if x)

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": list(self.counts),
            "accuracy": self.accuracy,
            "latency": self.latency,
            "target": self.target,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Strategy":
        try:
            counts = d["counts"]
            fields = (d["accuracy"], d["latency"], d["target"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"strategy: missing field {exc}") from None
        if isinstance(counts, (str, bytes)) or not isinstance(counts, Sequence):
            raise ValueError(f"strategy.counts: expected a list of integers, got {counts!r}")
        for x in counts:
            if isinstance(x, bool) or not isinstance(x, numbers.Integral) or x < 0:
                raise ValueError(f"strategy.counts: expected non-negative integers, got {list(counts)}")
        for name, v in zip(("accuracy", "latency", "target"), fields):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError(f"strategy.{name}: expected a finite number, got {v!r}")
        return cls(tuple(int(x) for x in counts), float(fields[0]), float(fields[1]), float(fields[2]))


class StrategyMatrix:
    """Per job size b = 1..max_batch, the Pareto row of strategies over the target grid.

    Built by `solve_matrix` or `StrategyMatrix.from_dict`; the constructor checks every
    row (sizes, exact accuracy >= target, rows sorted and Pareto). `source` is free-form
    JSON-able metadata set by the caller (e.g. the profile versions it came from).
    """

    def __init__(
        self,
        configurations: Sequence[str],
        accuracies: Mapping[str, float],
        max_batch: int,
        targets: Sequence[float],
        cost: Mapping[str, Any],
        rows: Mapping[int, Sequence[Strategy]],
        source: Mapping[str, Any] | None = None,
    ):
        self.configurations: tuple[str, ...] = tuple(configurations)
        if not self.configurations or len(set(self.configurations)) != len(self.configurations):
            raise ValueError(f"configurations: expected distinct names, got {list(configurations)}")
        self.accuracies: dict[str, float] = _check_accuracies(accuracies, self.configurations)
        if isinstance(max_batch, bool) or not isinstance(max_batch, numbers.Integral) or max_batch < 1:
            raise ValueError(f"max_batch: expected an integer >= 1, got {max_batch!r}")
        self.max_batch: int = int(max_batch)
        self.targets: tuple[float, ...] = tuple(float(t) for t in targets)
        if not self.targets:
            raise ValueError("targets: at least one target is needed")
        exact_targets = [exact(t) for t in self.targets]
        if any(a >= b for a, b in zip(exact_targets, exact_targets[1:])):
            raise ValueError("targets: must be strictly increasing")
        if not isinstance(cost, Mapping):
            raise ValueError("cost: expected the cost model's dict (CostModel.to_dict())")
        self.cost: dict[str, Any] = dict(cost)
        self.source: dict[str, Any] = dict(source or {})

        acc_exact = [exact(self.accuracies[c]) for c in self.configurations]
        scale = math.lcm(*(a.denominator for a in acc_exact))
        acc_scaled = [int(a * scale) for a in acc_exact]
        target_exact = dict(zip(self.targets, exact_targets))
        self._rows: dict[int, tuple[Strategy, ...]] = {}
        self._accuracies: dict[int, list[float]] = {}
        self._latencies: dict[int, list[float]] = {}
        for b in range(1, self.max_batch + 1):
            row = rows.get(b) if isinstance(rows, Mapping) else None
            if not row:
                raise ValueError(f"rows: missing row for job size {b}")
            exact_row: list[Fraction] = []
            for s in row:
                where = f"rows[{b}]"
                if not isinstance(s, Strategy):
                    raise ValueError(f"{where}: expected Strategy objects, got {type(s).__name__}")
                if len(s.counts) != len(self.configurations):
                    raise ValueError(f"{where}: counts {s.counts} do not match {len(self.configurations)} configurations")
                if sum(s.counts) != b or any(x < 0 for x in s.counts):
                    raise ValueError(f"{where}: counts {s.counts} are not a split of {b} requests")
                acc = Fraction(sum(a * x for a, x in zip(acc_scaled, s.counts)), scale * b)
                if float(acc) != s.accuracy:
                    raise ValueError(f"{where}: accuracy {s.accuracy} does not match counts {s.counts} ({float(acc)})")
                if s.target not in target_exact:
                    raise ValueError(f"{where}: target {s.target} is not on the target grid")
                if acc < target_exact[s.target]:
                    raise ValueError(f"{where}: counts {s.counts} miss target {s.target} (accuracy {float(acc)})")
                if exact_row and not (acc > exact_row[-1]):
                    raise ValueError(f"{where}: accuracies must strictly increase along a row")
                exact_row.append(acc)
            lats = [s.latency for s in row]
            tgts = [s.target for s in row]
            if any(x > y for x, y in zip(lats, lats[1:])):
                raise ValueError(f"rows[{b}]: latency must not fall as accuracy rises")
            if any(x >= y for x, y in zip(tgts, tgts[1:])):
                raise ValueError(f"rows[{b}]: strategy targets must strictly increase")
            if tgts[0] != self.targets[0]:
                raise ValueError(f"rows[{b}]: the first strategy must serve the lowest target {self.targets[0]}")
            self._rows[b] = tuple(row)
            self._accuracies[b] = [s.accuracy for s in row]
            self._latencies[b] = lats
        if isinstance(rows, Mapping):
            extra = [b for b in rows if b not in self._rows]
            if extra:
                raise ValueError(f"rows: job sizes {extra} outside 1..{self.max_batch}")

    # ------------------------------------------------------------------ lookups

    def _check_b(self, b: Any) -> int:
        if isinstance(b, bool) or not isinstance(b, numbers.Integral):
            raise ValueError(f"job size: expected an integer, got {b!r}")
        if b < 1:
            raise ValueError(f"job size: must be >= 1, got {b}")
        if b > self.max_batch:
            raise ValueError(
                f"job size {b} exceeds the matrix's max_batch {self.max_batch}; "
                f"split the job into jobs of at most {self.max_batch} requests"
            )
        return int(b)

    def row(self, b: int) -> tuple[Strategy, ...]:
        """Strategies for job size b, accuracy (and latency) strictly increasing."""
        return self._rows[self._check_b(b)]

    def best_accuracy(self, b: int) -> float:
        return self.row(b)[-1].accuracy

    def cheapest(self, b: int, alpha: float) -> Strategy:
        """The lowest-latency stored strategy with `accuracy >= alpha` (O(log n)).

        Compared as floats, as the strategies show their accuracy: since `accuracy` is the
        correctly rounded exact mean, this agrees with the solver's exact rule except when
        the exact mean lies within half an ulp below alpha (then the strategy counts as
        meeting alpha). On a grid target this is the cell's optimum (`cells()`); between
        grid targets it is the optimum of the next target up. Raises ValueError if alpha
        exceeds the best accuracy reachable for b.
        """
        row = self.row(b)
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or math.isnan(alpha):
            raise ValueError(f"accuracy target: expected a number, got {alpha!r}")
        i = bisect_left(self._accuracies[b], float(alpha))
        if i == len(row):
            raise ValueError(
                f"accuracy target {alpha} exceeds the best achievable {row[-1].accuracy} for job size {b}"
            )
        return row[i]

    def most_accurate_within(self, b: int, t: float) -> Strategy | None:
        """The most accurate stored strategy with latency <= t, or None (O(log n))."""
        row = self.row(b)
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or math.isnan(t):
            raise ValueError(f"latency budget: expected a number, got {t!r}")
        i = bisect_right(self._latencies[b], float(t))
        return row[i - 1] if i else None

    def cells(self) -> Iterator[tuple[int, float, Strategy]]:
        """(b, alpha, strategy) for every job size and every grid target, b-major."""
        for b in range(1, self.max_batch + 1):
            row = self._rows[b]
            j = 0
            for alpha in self.targets:
                while j + 1 < len(row) and row[j + 1].target <= alpha:
                    j += 1
                yield b, alpha, row[j]

    def as_split(self, strategy: Strategy) -> dict[str, int]:
        """The strategy as {configuration: count}, configurations with count 0 left out."""
        if len(strategy.counts) != len(self.configurations):
            raise ValueError("strategy does not belong to this matrix (count vector length)")
        return {c: x for c, x in zip(self.configurations, strategy.counts) if x}

    def cost_model(self) -> CostModel:
        return CostModel.from_dict(self.cost)

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MATRIX_FORMAT,
            "configurations": list(self.configurations),
            "accuracies": dict(self.accuracies),
            "max_batch": self.max_batch,
            "targets": list(self.targets),
            "cost": self.cost,
            "source": self.source,
            "rows": [[s.to_dict() for s in self._rows[b]] for b in range(1, self.max_batch + 1)],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StrategyMatrix":
        if not isinstance(d, Mapping):
            raise ValueError(f"strategy matrix: expected a dict, got {type(d).__name__}")
        if d.get("format") != MATRIX_FORMAT:
            raise ValueError(f"strategy matrix: format {d.get('format')!r}, expected {MATRIX_FORMAT!r}")
        for key in ("configurations", "accuracies", "max_batch", "targets", "cost", "rows"):
            if key not in d:
                raise ValueError(f"strategy matrix: missing field {key!r}")
        rows_in = d["rows"]
        if not isinstance(rows_in, Sequence) or len(rows_in) != d["max_batch"]:
            raise ValueError(f"strategy matrix: rows must be a list of {d['max_batch']} rows")
        rows = {b: [Strategy.from_dict(s) for s in row] for b, row in enumerate(rows_in, start=1)}
        return cls(
            d["configurations"], d["accuracies"], d["max_batch"], d["targets"], d["cost"], rows,
            d.get("source") or {},
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StrategyMatrix) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return (
            f"StrategyMatrix(configurations={list(self.configurations)}, max_batch={self.max_batch}, "
            f"targets={len(self.targets)}, strategies={sum(len(r) for r in self._rows.values())})"
        )


# ---------------------------------------------------------------------- inputs


def _check_accuracies(accuracies: Mapping[str, float], configurations: Sequence[str]) -> dict[str, float]:
    if not isinstance(accuracies, Mapping):
        raise ValueError("accuracies: expected a dict configuration -> accuracy")
    missing = [c for c in configurations if c not in accuracies]
    if missing:
        raise ValueError(f"accuracies: no accuracy for configurations {missing}")
    extra = [c for c in accuracies if c not in configurations]
    if extra:
        raise ValueError(f"accuracies: unknown configurations {extra}; cost model has {list(configurations)}")
    out: dict[str, float] = {}
    for c in configurations:
        a = accuracies[c]
        if isinstance(a, bool) or not isinstance(a, numbers.Real):
            raise ValueError(f"accuracies[{c!r}]: expected a number, got {a!r}")
        a = float(a)
        if not (0.0 <= a <= 1.0):  # also refuses NaN
            raise ValueError(f"accuracies[{c!r}]: expected a value in [0, 1], got {a}")
        out[c] = a
    return out


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


def _prepare_targets(targets: Sequence[float], best: Fraction) -> tuple[list[float], list[Fraction]]:
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


# ---------------------------------------------------------------------- frontiers


class _Frontier:
    """Pareto frontier of one job size: accuracy sums S (scaled ints) ascending, latencies
    ascending, and a way to get the split of each point."""

    __slots__ = ("S", "L", "_counts", "_resolve")

    def __init__(self, S: list[int], L: list[float], counts: list[Any], resolve=None):
        self.S, self.L, self._counts, self._resolve = S, L, counts, resolve

    def counts(self, i: int) -> tuple[int, ...]:
        c = self._counts[i]
        return tuple(c) if self._resolve is None else self._resolve(c)


def _prune(cands: list[tuple]) -> list[tuple]:
    """Keep the Pareto-optimal entries (negS, L, nconf, counts): sorted by accuracy sum
    descending, then latency, nconf, counts; an entry survives only if it is strictly
    faster than every entry with at least its accuracy."""
    cands.sort()
    out = []
    best = math.inf
    for e in cands:
        if e[1] < best:
            out.append(e)
            best = e[1]
    return out


def _joint_frontiers(cost: JointCost, A: list[int], B: int) -> list[_Frontier | None]:
    F: list[list[tuple]] = [[(0, 0.0, 0, ())]] + [[] for _ in range(B)]
    for c, a in zip(cost.configurations, A):
        table = cost.config_latency[c]
        new: list[list[tuple]] = []
        for n in range(B + 1):
            cands: list[tuple] = [(s, l, k, cnt + (0,)) for s, l, k, cnt in F[n]]
            for x in range(1, n + 1):
                src = F[n - x]
                if src:
                    da, dl = a * x, table[x]
                    cands.extend((s - da, l + dl, k + 1, cnt + (x,)) for s, l, k, cnt in src)
            new.append(_prune(cands))
        F = new
    out: list[_Frontier | None] = [None]
    for b in range(1, B + 1):
        entries = F[b][::-1]  # accuracy ascending
        out.append(_Frontier([-e[0] for e in entries], [e[1] for e in entries], [e[3] for e in entries]))
    return out


def _late_frontiers(cost: LateFusionCost, A: list[int], B: int) -> list[_Frontier | None]:
    M = len(cost.modalities)
    C = len(cost.configurations)
    W = C + 1  # key = S * W - (configurations used): max S first, then fewest configurations
    states = (B + 1) ** (M + 1)
    need = states * (3 * 8 + 2 * C)
    if need > LATE_FUSION_MEMORY_LIMIT:
        raise ValueError(
            f"late-fusion solve with {M} modalities at max_batch {B} needs about "
            f"{need / 1024**3:.1f} GiB of state; use a smaller max_batch"
        )
    max_key = max(A) * W * B
    bound = 4 * (max_key + C + 1)
    dtype: Any = np.int64 if bound < 2**62 else object
    NEG = -bound
    infeasible_below = NEG // 2
    shape = (B + 1,) * (M + 1)

    V = np.full(shape, NEG, dtype=dtype)
    V[(0,) * (M + 1)] = 0
    choices: list[tuple[np.ndarray, np.ndarray]] = []
    for ci in range(C):
        enc = set(cost.config_encoders[ci])
        first, more = A[ci] * W - 1, A[ci] * W
        dst = tuple(slice(1, None) if m in enc else slice(None) for m in range(M))
        src = tuple(slice(None, -1) if m in enc else slice(None) for m in range(M))
        U = np.full(shape, NEG, dtype=dtype)  # best with x_c >= 1
        from_u = np.zeros(shape, dtype=bool)  # U[n, l] extends U[n-1, l - e_c] (else starts from V)
        for n in range(1, B + 1):
            start = V[(n - 1,) + src] + first
            cont = U[(n - 1,) + src] + more
            take = cont > start
            U[(n,) + dst] = np.where(take, cont, start)
            from_u[(n,) + dst] = take
        use_u = U > V  # ties keep x_c = 0
        V = np.where(use_u, U, V)
        choices.append((use_u, from_u))
        del U

    encoders = cost.config_encoders

    def backtrack(state: tuple[int, ...]) -> tuple[int, ...]:
        n, loads = state[0], list(state[1:])
        counts = [0] * C
        for ci in range(C - 1, -1, -1):
            use_u, from_u = choices[ci]
            x = 0
            if use_u[(n, *loads)]:
                while True:
                    cont = bool(from_u[(n, *loads)])
                    x += 1
                    n -= 1
                    for m in encoders[ci]:
                        loads[m] -= 1
                    if not cont:
                        break
            counts[ci] = x
        if n != 0 or any(loads):
            raise RuntimeError(f"late-fusion backtrack did not reach the empty state from {state}")
        return tuple(counts)

    # Latency of every load vector, summed exactly as LateFusionCost.latency_of_loads does.
    grid = None
    for m in range(M):
        table = np.asarray(cost.encoder_latency[cost.modalities[m]], dtype=np.float64)
        table = table.reshape(tuple(B + 1 if i == m else 1 for i in range(M)))
        if grid is None:
            grid = table
        elif cost.placement == "shared":
            grid = grid + table
        else:
            grid = np.maximum(grid, table)
    grid = np.broadcast_to(grid, (B + 1,) * M)

    out: list[_Frontier | None] = [None]
    for b in range(1, B + 1):
        box = (slice(0, b + 1),) * M
        keys = V[(b,) + box].ravel()
        lat = grid[box].ravel()
        if cost.head_latency is not None:
            lat = lat + cost.head_latency[b]
        idx = np.flatnonzero(keys > infeasible_below)
        k = keys[idx]
        L = lat[idx]
        S = (k + C) // W
        nconf = S * W - k
        s_rank = S if dtype is np.int64 else np.unique(S, return_inverse=True)[1].reshape(-1)
        order = np.lexsort((nconf.astype(np.int64), L, -np.asarray(s_rank, dtype=np.int64)))
        Ls = L[order]
        keep = np.empty(len(order), dtype=bool)
        keep[0] = True
        keep[1:] = Ls[1:] < np.minimum.accumulate(Ls)[:-1]
        sel = order[keep][::-1]  # accuracy ascending
        flat = idx[sel]
        loads = np.unravel_index(flat, (b + 1,) * M)
        states_sel = [(b,) + tuple(int(v[i]) for v in loads) for i in range(len(flat))]
        out.append(
            _Frontier([int(s) for s in S[sel]], [float(x) for x in L[sel]], states_sel, backtrack)
        )
    return out


# ---------------------------------------------------------------------- solve


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
    acc = _check_accuracies(accuracies, configs)
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
    target_floats, target_exact = _prepare_targets(targets, best)

    if isinstance(cost, JointCost):
        frontiers = _joint_frontiers(cost, A, B)
    else:
        frontiers = _late_frontiers(cost, A, B)

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
