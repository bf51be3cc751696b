"""Reading a study's result: which trials are feasible, the Pareto front among them, and the
pick rule that chooses one point of the front (`--pick`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import optuna

from tuning import space
from tuning.config import CONSTRAINT, OBJECTIVES

DEFAULT_PICK = "goodput|accuracy>=best-0.005"


def constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
    """constraints_func view: [floor violations] (> 0 = infeasible)."""
    values = trial.constraints
    if values:
        return [float(values.get(CONSTRAINT, max(values.values())))]
    return [float(trial.user_attrs.get(CONSTRAINT, 0))]


def feasible(trial: optuna.trial.FrozenTrial) -> bool:
    return (trial.state == optuna.trial.TrialState.COMPLETE and all(v <= 0 for v in trial.constraints.values())
            and trial.user_attrs.get(CONSTRAINT, 0) <= 0)


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    better = False
    for x, y, d in zip(a, b, directions):
        if d == "minimize":
            x, y = -x, -y
        if x < y:
            return False
        if x > y:
            better = True
    return better


def pareto_front(trials: Sequence[optuna.trial.FrozenTrial], directions: Sequence[str]) -> list[optuna.trial.FrozenTrial]:
    """Feasible completed trials no other feasible trial dominates (duplicates of a point: the
    lowest trial number), by trial number."""
    ok = [t for t in trials if feasible(t)]
    front = [t for t in ok if not any(dominates(o.values, t.values, directions) for o in ok if o is not t)]
    seen: set[tuple] = set()
    out = []
    for t in sorted(front, key=lambda t: t.number):
        key = tuple(t.values)
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out


class PickError(ValueError):
    pass


@dataclass
class PickRule:
    """`TARGET[|COND[,COND...]]` — among the Pareto points meeting every COND, the best TARGET.

    TARGET: an objective name (goodput, accuracy: maximised; p99: minimised).
    COND:   NAME>=VALUE or NAME<=VALUE; VALUE is a number, `best`, or `best-D` / `best+D`
            where best is the best value of NAME among the Pareto points.
    Default: `goodput|accuracy>=best-0.005` (highest goodput among the points whose accuracy is
    within 0.005 of the most accurate Pareto point). Examples: `goodput|accuracy>=0.74`,
    `accuracy`, `goodput|accuracy>=best-0.01,p99<=150`. Ties: the other objectives, then the
    lowest trial number."""

    target: str
    conditions: list[tuple[str, str, str, float]] = field(default_factory=list)  # (name, op, base, offset)
    text: str = ""

    _COND = re.compile(r"^\s*([a-z0-9_]+)\s*(>=|<=)\s*(best\s*([+-])\s*([0-9.eE+-]+)|best|[-+]?[0-9.eE+-]+)\s*$")

    @classmethod
    def parse(cls, text: str) -> "PickRule":
        target, _, rest = text.partition("|")
        target = target.strip()
        if target not in OBJECTIVES:
            raise PickError(f"pick rule {text!r}: target {target!r} is not an objective ({', '.join(OBJECTIVES)})")
        conds = []
        for part in filter(None, (p.strip() for p in rest.split(","))) if rest.strip() else []:
            m = cls._COND.match(part)
            if not m:
                raise PickError(f"pick rule {text!r}: cannot read condition {part!r} (NAME>=VALUE or NAME<=VALUE)")
            name, op, value = m.group(1), m.group(2), m.group(3).replace(" ", "")
            if name not in OBJECTIVES:
                raise PickError(f"pick rule {text!r}: {name!r} is not an objective ({', '.join(OBJECTIVES)})")
            if value == "best":
                conds.append((name, op, "best", 0.0))
            elif value.startswith("best"):
                try:
                    offset = float(m.group(5))
                except ValueError:
                    raise PickError(f"pick rule {text!r}: bad offset in {part!r}") from None
                conds.append((name, op, "best", offset if m.group(4) == "+" else -offset))
            else:
                try:
                    conds.append((name, op, "", float(value)))
                except ValueError:
                    raise PickError(f"pick rule {text!r}: {value!r} is not a number") from None
        return cls(target, conds, text)

    def choose(self, front: Sequence[optuna.trial.FrozenTrial], objectives: Sequence[str]) -> optuna.trial.FrozenTrial:
        names = list(objectives)
        for name in [self.target] + [c[0] for c in self.conditions]:
            if name not in names:
                raise PickError(f"pick rule {self.text!r} uses {name!r}, which this study does not optimise "
                                f"(objectives: {', '.join(names)})")
        front = [t for t in front if feasible(t)]
        if not front:
            raise PickError("no feasible trial to pick from (every trial violated a floor, or none finished)")

        def value(t, name):
            return t.values[names.index(name)]

        def sign(name):
            return 1.0 if OBJECTIVES[name][1] == "maximize" else -1.0

        candidates = list(front)
        for name, op, base, offset in self.conditions:
            bound = offset
            if base == "best":
                bound = max(value(t, name) * sign(name) for t in front) * sign(name) + offset
            if op == ">=":
                candidates = [t for t in candidates if value(t, name) >= bound - 1e-12]
            else:
                candidates = [t for t in candidates if value(t, name) <= bound + 1e-12]
        if not candidates:
            raise PickError(f"no Pareto point satisfies the pick rule {self.text!r}")
        order = [self.target] + [n for n in names if n != self.target]
        return min(candidates, key=lambda t: (tuple(-sign(n) * value(t, n) for n in order), t.number))


def thresholds_of(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return space.from_record({k: float(v) for k, v in trial.params.items()})
