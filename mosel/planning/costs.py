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

from typing import Any, Mapping, Sequence, Union

from mosel.modalities import all_configurations, config_modalities
from mosel.planning.cost_inputs import (canonical_order, check_configuration, check_count, check_keys,
                                        check_modalities, check_table, common_max_batch, infer_order)

Split = Union[Mapping[str, int], Sequence[int]]

PLACEMENTS = ("shared", "separate")


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
                out[index[c]] = check_count(v, f"split[{c!r}]")
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
        return tuple(check_count(v, f"split[{c!r}]") for c, v in zip(self.configurations, x))

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
            order = infer_order(names)
        else:
            order = check_modalities(modalities, "modalities")
        for name in names:
            check_configuration(name, order)
        tables = {c: check_table(config_latency[c], f"config_latency[{c!r}]") for c in names}
        self.modalities: tuple[str, ...] = order
        self.configurations: tuple[str, ...] = canonical_order(names, order)
        self.max_batch: int = common_max_batch(tables, "configuration")
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
            order = check_modalities(list(encoder_latency), "encoder_latency")
        else:
            order = check_modalities(modalities, "modalities")
            check_keys(encoder_latency, order, "encoder_latency", value="latency table", keys="modalities",
                       owner="model")
        tables = {m: check_table(encoder_latency[m], f"encoder_latency[{m!r}]") for m in order}
        if head_latency is not None:
            tables_with_head = dict(tables)
            head = check_table(head_latency, "head_latency")
            tables_with_head["<fusion head>"] = head
            max_batch = common_max_batch(tables_with_head, "table")
        else:
            head = None
            max_batch = common_max_batch(tables, "encoder")
        if configurations is None:
            configs = tuple(all_configurations(order))
        else:
            if isinstance(configurations, str) or not isinstance(configurations, Sequence):
                raise ValueError(f"configurations: expected a list of names, got {configurations!r}")
            if not configurations:
                raise ValueError("configurations: at least one configuration is needed")
            for c in configurations:
                check_configuration(c, order)
            if len(set(configurations)) != len(configurations):
                raise ValueError(f"configurations: duplicates in {list(configurations)}")
            configs = canonical_order(list(configurations), order)
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

    def loads(self, counts: Sequence[int]) -> list[int]:
        """Per-encoder loads (modality order) of counts aligned to `configurations`, unchecked
        (a batch may exceed max_batch: callers that cost it past the tables need that)."""
        out = [0] * len(self.modalities)
        for encoders, n in zip(self.config_encoders, counts):
            for m in encoders:
                out[m] += n
        return out

    def encoder_loads(self, x: Split) -> dict[str, int]:
        """load_m = sum of x_c over the configurations c that use modality m."""
        return dict(zip(self.modalities, self.loads(self.counts(x))))

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
        return self.latency_of_loads(self.loads(counts), sum(counts))

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
