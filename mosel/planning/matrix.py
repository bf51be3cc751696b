"""The strategy matrix (docs/architecture.md, "The offline path"): what the solver produces
and the serving side looks strategies up in, with its JSON form.

Exact arithmetic. Accuracies and targets are floats; each is read as the decimal it
prints as (`exact`: `repr`, the shortest string that round-trips), e.g. 0.7432 is exactly
7432/10000. Accuracy constraints are checked in exact rational arithmetic, so no
tolerance is used at all: 0.72 + 0.68 >= 2 * 0.70 holds, as a person would expect, and a
strategy's float `accuracy` (the correctly rounded exact mean) is never below its target.

Rows. Row b lists the distinct strategies chosen over the targets, sorted by accuracy
ascending; both accuracy and latency strictly increase along a row (the Pareto frontier
restricted to the grid), and `Strategy.target` is the lowest grid target it is chosen
for. The constructor checks all of this, so a matrix read back from JSON is as sound as
a solved one. Job sizes above the matrix's max_batch are refused (ValueError): the caller
splits such a job into jobs of at most max_batch requests (each with the job's target);
the matrix does not guess how the pieces are scheduled.
"""

from __future__ import annotations

import math
import numbers
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator, Mapping, Sequence

from mosel.planning.cost_inputs import check_keys
from mosel.planning.costs import CostModel

MATRIX_FORMAT = "mosel.strategy_matrix/1"


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
        self.accuracies: dict[str, float] = check_accuracies(accuracies, self.configurations)
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


def check_accuracies(accuracies: Mapping[str, float], configurations: Sequence[str]) -> dict[str, float]:
    """The accuracies of exactly `configurations`, as floats in [0, 1] (ValueError otherwise)."""
    if not isinstance(accuracies, Mapping):
        raise ValueError("accuracies: expected a dict configuration -> accuracy")
    check_keys(accuracies, configurations, "accuracies", value="accuracy", keys="configurations",
               owner="cost model")
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
