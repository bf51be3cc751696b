"""Job cost models (docs/architecture.md, "Cost models"): what a split of a job across configurations costs.

A *split* of a job of `b` requests gives `x_c >= 0` requests to each configuration `c`
(`sum x_c = b`). It is passed either as a mapping configuration -> count (missing
configurations count 0) or as a sequence of counts aligned to `cost.configurations`.

Two models, both built from profiled latency tables indexed by batch size n = 0..B
(`table[0]` must be 0: an empty batch costs nothing). Units are whatever the profile
uses (mosel.models.tvlt.paper_facts uses milliseconds); the models only add and compare.

- `JointCost` (joint / early fusion, the paper's TVLT): one latency table per
  configuration, `L_c(n)`. The micro-batches of the configurations run one after
  another, so a split costs `sum_c L_c(x_c)`.
- `LateFusionCost`: one latency table per modality encoder, `E_m(n)`. An encoder
  batches the requests of every configuration that uses it, so a split induces loads
  `load_m = sum_{c contains m} x_c`. Encoders on one device (`placement="shared"`) run
  one after another: `sum_m E_m(load_m)`; encoders on separate devices run in
  parallel: `max_m E_m(load_m)`. An optional fusion-head table `H(b)` is added.

Tables need not be monotone or convex (measurements are noisy); nothing here or in the
solver assumes they are. Sums are always taken in a fixed order (configuration order,
resp. modality order, head last) so the same split always gives the same float.

Both models serialise to plain JSON-able dicts (`to_dict`) and back
(`CostModel.from_dict` picks the class from the dict's "kind").
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, Sequence, Union

from mosel.modalities import all_configurations, config_modalities, config_name

Split = Union[Mapping[str, int], Sequence[int]]

PLACEMENTS = ("shared", "separate")


# --------------------------------------------------------------------------- helpers


def _check_modalities(modalities: Sequence[str], what: str) -> tuple[str, ...]:
    if isinstance(modalities, str) or not isinstance(modalities, Sequence):
        raise ValueError(f"{what}: expected a list of modality names, got {modalities!r}")
    out = tuple(modalities)
    if not out:
        raise ValueError(f"{what}: at least one modality is needed")
    for m in out:
        if not isinstance(m, str) or not m or "+" in m:
            raise ValueError(f"{what}: invalid modality name {m!r}")
    if len(set(out)) != len(out):
        dup = sorted({m for m in out if out.count(m) > 1})
        raise ValueError(f"{what}: duplicate modalities {dup}")
    return out


def _infer_order(names: Sequence[str]) -> tuple[str, ...]:
    """A modality order in which every configuration name is canonical.

    Each name "a+b+c" says a comes before b before c. The order is a topological sort of
    these constraints, ties broken by first appearance; contradictory names are refused.
    """
    first_seen: dict[str, int] = {}
    after: dict[str, set[str]] = {}
    for name in names:
        parts = _split_name(name)
        for m in parts:
            first_seen.setdefault(m, len(first_seen))
            after.setdefault(m, set())
        for left, right in zip(parts, parts[1:]):
            after[left].add(right)
    indegree = {m: 0 for m in first_seen}
    for m, succ in after.items():
        for s in succ:
            indegree[s] += 1
    order: list[str] = []
    ready = sorted((m for m, d in indegree.items() if d == 0), key=first_seen.get)
    while ready:
        m = ready.pop(0)
        order.append(m)
        for s in after[m]:
            indegree[s] -= 1
            if indegree[s] == 0:
                ready.append(s)
        ready.sort(key=first_seen.get)
    if len(order) != len(first_seen):
        raise ValueError(
            f"configuration names {list(names)} list modalities in contradictory orders; "
            "pass modalities=[...] explicitly"
        )
    return tuple(order)


def _split_name(name: Any) -> tuple[str, ...]:
    if not isinstance(name, str) or not name:
        raise ValueError(f"invalid configuration name {name!r}")
    parts = config_modalities(name)
    if any(not p for p in parts):
        raise ValueError(f"invalid configuration name {name!r}: empty modality name")
    if len(set(parts)) != len(parts):
        raise ValueError(f"invalid configuration name {name!r}: repeated modality")
    return parts


def _check_configuration(name: Any, modalities: Sequence[str]) -> str:
    parts = _split_name(name)
    unknown = [p for p in parts if p not in modalities]
    if unknown:
        raise ValueError(
            f"configuration {name!r}: unknown modalities {unknown}; model has {list(modalities)}"
        )
    canonical = config_name(parts, modalities)
    if canonical != name:
        raise ValueError(
            f"configuration {name!r} is not canonical for modality order {list(modalities)} "
            f"(expected {canonical!r})"
        )
    return name


def _canonical_order(configs: Sequence[str], modalities: Sequence[str]) -> tuple[str, ...]:
    rank = {c: i for i, c in enumerate(all_configurations(modalities))}
    return tuple(sorted(configs, key=rank.__getitem__))


def _check_table(table: Any, what: str) -> tuple[float, ...]:
    """A latency table for n = 0..len-1: finite, non-negative numbers, table[0] == 0."""
    if isinstance(table, (str, bytes, Mapping)) or not isinstance(table, Sequence):
        if hasattr(table, "tolist"):  # numpy arrays
            table = table.tolist()
        else:
            raise ValueError(f"{what}: expected a list of latencies for n = 0..B, got {type(table).__name__}")
    if len(table) < 2:
        raise ValueError(f"{what}: latency table needs entries for n = 0..B with B >= 1, got {len(table)}")
    out: list[float] = []
    for n, value in enumerate(table):
        if value is None:
            raise ValueError(f"{what}: missing latency for batch size {n}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{what}: latency for batch size {n} is not a number: {value!r}")
        v = float(value)
        if math.isnan(v):
            raise ValueError(f"{what}: latency for batch size {n} is NaN")
        if math.isinf(v):
            raise ValueError(f"{what}: latency for batch size {n} is infinite")
        if v < 0:
            raise ValueError(f"{what}: latency for batch size {n} is negative ({v})")
        out.append(v)
    if out[0] != 0.0:
        raise ValueError(f"{what}: latency for batch size 0 must be 0, got {out[0]}")
    return tuple(out)


def _common_max_batch(tables: Mapping[str, tuple[float, ...]], what: str) -> int:
    longest = max(len(t) for t in tables.values())
    for key, t in tables.items():
        if len(t) != longest:
            missing = (
                f"batch size {len(t)}" if len(t) == longest - 1 else f"batch sizes {len(t)}..{longest - 1}"
            )
            raise ValueError(
                f"{what} {key!r}: latency table covers n = 0..{len(t) - 1} but others go to "
                f"{longest - 1}; missing {missing}"
            )
    return longest - 1


def _check_count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{what}: count must be an integer, got {value!r}")
    v = int(value)
    if v < 0:
        raise ValueError(f"{what}: count must be >= 0, got {v}")
    return v


# --------------------------------------------------------------------------- models


class CostModel:
    """Common face of the cost models. Use a subclass; `CostModel.from_dict` dispatches."""

    kind: str = ""
    modalities: tuple[str, ...]
    configurations: tuple[str, ...]
    max_batch: int

    def counts(self, x: Split) -> tuple[int, ...]:
        """The split as counts aligned to `self.configurations` (validated)."""
        if isinstance(x, Mapping):
            index = {c: i for i, c in enumerate(self.configurations)}
            out = [0] * len(self.configurations)
            for c, v in x.items():
                if c not in index:
                    raise ValueError(
                        f"split: unknown configuration {c!r}; cost model has {list(self.configurations)}"
                    )
                out[index[c]] = _check_count(v, f"split[{c!r}]")
            return tuple(out)
        if isinstance(x, (str, bytes)) or not hasattr(x, "__len__"):
            raise ValueError(f"split: expected a mapping or a sequence of counts, got {x!r}")
        if hasattr(x, "tolist"):
            x = x.tolist()
        if len(x) != len(self.configurations):
            raise ValueError(
                f"split: {len(x)} counts given for {len(self.configurations)} configurations "
                f"{list(self.configurations)}"
            )
        return tuple(_check_count(v, f"split[{c!r}]") for c, v in zip(self.configurations, x))

    def latency(self, x: Split) -> float:
        raise NotImplementedError

    def encoder_loads(self, x: Split) -> dict[str, int]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CostModel":
        if not isinstance(d, Mapping):
            raise ValueError(f"cost model: expected a dict, got {type(d).__name__}")
        kind = d.get("kind")
        classes = {JointCost.kind: JointCost, LateFusionCost.kind: LateFusionCost}
        if kind not in classes:
            raise ValueError(f"cost model: unknown kind {kind!r}; expected one of {sorted(classes)}")
        target = classes[kind]
        if cls is not CostModel and cls is not target:
            raise ValueError(f"cost model: kind {kind!r} cannot be read as {cls.__name__}")
        return target._from_dict(d)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CostModel) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.kind, self.configurations, self.max_batch))

    def _check_size(self, n: int, what: str) -> None:
        if n > self.max_batch:
            raise ValueError(f"{what}: batch of {n} exceeds the profiled max_batch {self.max_batch}")


class JointCost(CostModel):
    """Joint-fusion cost: one latency table per configuration, micro-batches in sequence.

    `config_latency[c][n]` is the latency of a batch of n requests under configuration c,
    n = 0..B, all tables the same length. `modalities` gives the model's modality order;
    without it the order is inferred from the configuration names. Configurations are kept
    in canonical order (`mosel.modalities.all_configurations`); a model may profile only
    some of its configurations.
    """

    kind = "joint"

    def __init__(
        self,
        config_latency: Mapping[str, Sequence[float]],
        *,
        modalities: Sequence[str] | None = None,
    ):
        if not isinstance(config_latency, Mapping) or not config_latency:
            raise ValueError("config_latency: expected a non-empty dict configuration -> latency table")
        names = list(config_latency)
        if modalities is None:
            order = _infer_order(names)
        else:
            order = _check_modalities(modalities, "modalities")
        for name in names:
            _check_configuration(name, order)
        tables = {c: _check_table(config_latency[c], f"config_latency[{c!r}]") for c in names}
        self.modalities: tuple[str, ...] = order
        self.configurations: tuple[str, ...] = _canonical_order(names, order)
        self.max_batch: int = _common_max_batch(tables, "configuration")
        self.config_latency: dict[str, tuple[float, ...]] = {c: tables[c] for c in self.configurations}

    def latency(self, x: Split) -> float:
        """sum_c L_c(x_c), summed in configuration order."""
        counts = self.counts(x)
        total = 0.0
        for c, n in zip(self.configurations, counts):
            self._check_size(n, f"split[{c!r}]")
            total += self.config_latency[c][n]
        return total

    def encoder_loads(self, x: Split) -> dict[str, int]:
        """Per-configuration batch sizes (a joint model has no separate encoders)."""
        return dict(zip(self.configurations, self.counts(x)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "modalities": list(self.modalities),
            "max_batch": self.max_batch,
            "config_latency": {c: list(t) for c, t in self.config_latency.items()},
        }

    @classmethod
    def _from_dict(cls, d: Mapping[str, Any]) -> "JointCost":
        if "config_latency" not in d:
            raise ValueError("cost model: missing field 'config_latency'")
        cost = cls(d["config_latency"], modalities=d.get("modalities"))
        if "max_batch" in d and d["max_batch"] != cost.max_batch:
            raise ValueError(f"cost model: max_batch {d['max_batch']} does not match tables ({cost.max_batch})")
        return cost

    def __repr__(self) -> str:
        return f"JointCost(configurations={list(self.configurations)}, max_batch={self.max_batch})"


class LateFusionCost(CostModel):
    """Late-fusion cost: one latency table per modality encoder, loads shared across configs.

    `encoder_latency[m][n]`: latency of encoder m on a batch of n, n = 0..B. `placement`:
    "shared" (encoders on one device, latencies add up) or "separate" (one device each,
    the busiest encoder is the bottleneck). `head_latency[b]`, if given, is the fusion
    head's latency for the whole job of b requests and is added on top.
    `modalities` (default: the order of `encoder_latency`) is the model's modality order;
    `configurations` (default: all 2^N - 1) restricts which configurations may be used.
    """

    kind = "late_fusion"

    def __init__(
        self,
        encoder_latency: Mapping[str, Sequence[float]],
        placement: str,
        head_latency: Sequence[float] | None = None,
        *,
        modalities: Sequence[str] | None = None,
        configurations: Sequence[str] | None = None,
    ):
        if not isinstance(encoder_latency, Mapping) or not encoder_latency:
            raise ValueError("encoder_latency: expected a non-empty dict modality -> latency table")
        if placement not in PLACEMENTS:
            raise ValueError(f"placement: expected one of {list(PLACEMENTS)}, got {placement!r}")
        if modalities is None:
            order = _check_modalities(list(encoder_latency), "encoder_latency")
        else:
            order = _check_modalities(modalities, "modalities")
            missing = [m for m in order if m not in encoder_latency]
            if missing:
                raise ValueError(f"encoder_latency: no latency table for modalities {missing}")
            extra = [m for m in encoder_latency if m not in order]
            if extra:
                raise ValueError(f"encoder_latency: unknown modalities {extra}; model has {list(order)}")
        tables = {m: _check_table(encoder_latency[m], f"encoder_latency[{m!r}]") for m in order}
        if head_latency is not None:
            tables_with_head = dict(tables)
            head = _check_table(head_latency, "head_latency")
            tables_with_head["<fusion head>"] = head
            max_batch = _common_max_batch(tables_with_head, "table")
        else:
            head = None
            max_batch = _common_max_batch(tables, "encoder")
        if configurations is None:
            configs = tuple(all_configurations(order))
        else:
            if isinstance(configurations, str) or not isinstance(configurations, Sequence):
                raise ValueError(f"configurations: expected a list of names, got {configurations!r}")
            if not configurations:
                raise ValueError("configurations: at least one configuration is needed")
            for c in configurations:
                _check_configuration(c, order)
            if len(set(configurations)) != len(configurations):
                raise ValueError(f"configurations: duplicates in {list(configurations)}")
            configs = _canonical_order(list(configurations), order)
        self.modalities: tuple[str, ...] = order
        self.configurations: tuple[str, ...] = configs
        self.placement: str = placement
        self.max_batch: int = max_batch
        self.encoder_latency: dict[str, tuple[float, ...]] = tables
        self.head_latency: tuple[float, ...] | None = head
        # For each configuration, the indices (in modality order) of the encoders it uses.
        self.config_encoders: tuple[tuple[int, ...], ...] = tuple(
            tuple(order.index(m) for m in config_modalities(c)) for c in configs
        )

    def _loads(self, counts: tuple[int, ...]) -> list[int]:
        loads = [0] * len(self.modalities)
        for encoders, n in zip(self.config_encoders, counts):
            for m in encoders:
                loads[m] += n
        return loads

    def encoder_loads(self, x: Split) -> dict[str, int]:
        """load_m = sum of x_c over the configurations c that use modality m."""
        return dict(zip(self.modalities, self._loads(self.counts(x))))

    def latency_of_loads(self, loads: Sequence[int], b: int) -> float:
        """Job latency given per-encoder loads (modality order) and the job size b."""
        if self.placement == "shared":
            total = 0.0
            for m, n in zip(self.modalities, loads):
                self._check_size(n, f"load[{m!r}]")
                total += self.encoder_latency[m][n]
        else:
            total = 0.0
            for m, n in zip(self.modalities, loads):
                self._check_size(n, f"load[{m!r}]")
                total = max(total, self.encoder_latency[m][n])
        if self.head_latency is not None:
            self._check_size(b, "job size")
            total += self.head_latency[b]
        return total

    def latency(self, x: Split) -> float:
        counts = self.counts(x)
        return self.latency_of_loads(self._loads(counts), sum(counts))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "placement": self.placement,
            "modalities": list(self.modalities),
            "configurations": list(self.configurations),
            "max_batch": self.max_batch,
            "encoder_latency": {m: list(t) for m, t in self.encoder_latency.items()},
            "head_latency": None if self.head_latency is None else list(self.head_latency),
        }

    @classmethod
    def _from_dict(cls, d: Mapping[str, Any]) -> "LateFusionCost":
        for key in ("encoder_latency", "placement"):
            if key not in d:
                raise ValueError(f"cost model: missing field {key!r}")
        cost = cls(
            d["encoder_latency"],
            d["placement"],
            d.get("head_latency"),
            modalities=d.get("modalities"),
            configurations=d.get("configurations"),
        )
        if "max_batch" in d and d["max_batch"] != cost.max_batch:
            raise ValueError(f"cost model: max_batch {d['max_batch']} does not match tables ({cost.max_batch})")
        return cost

    def __repr__(self) -> str:
        return (
            f"LateFusionCost(modalities={list(self.modalities)}, placement={self.placement!r}, "
            f"configurations={len(self.configurations)}, max_batch={self.max_batch})"
        )
