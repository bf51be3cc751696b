"""Checks of what the cost models (mosel.planning.costs) are built from: modality orders,
configuration names, profiled latency tables, split counts and the keys of per-name tables;
each returns the value in canonical form (or nothing) or raises ValueError saying what is
wrong."""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, Sequence

from mosel.modalities import all_configurations, config_modalities, config_name


def check_modalities(modalities: Sequence[str], what: str) -> tuple[str, ...]:
    """A model's modality order: distinct, non-empty names without "+"."""
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


def infer_order(names: Sequence[str]) -> tuple[str, ...]:
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


def check_configuration(name: Any, modalities: Sequence[str]) -> str:
    """A configuration name made of known modalities, written in the model's modality order."""
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


def canonical_order(configs: Sequence[str], modalities: Sequence[str]) -> tuple[str, ...]:
    """Configurations sorted as mosel.modalities.all_configurations lists them."""
    rank = {c: i for i, c in enumerate(all_configurations(modalities))}
    return tuple(sorted(configs, key=rank.__getitem__))


def check_table(table: Any, what: str) -> tuple[float, ...]:
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


def common_max_batch(tables: Mapping[str, tuple[float, ...]], what: str) -> int:
    """The largest batch size B of tables that must all cover n = 0..B."""
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


def check_count(value: Any, what: str) -> int:
    """A split count: an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{what}: count must be an integer, got {value!r}")
    v = int(value)
    if v < 0:
        raise ValueError(f"{what}: count must be >= 0, got {v}")
    return v


def check_keys(given: Mapping[str, Any], expected: Sequence[str], what: str, *, value: str, keys: str,
               owner: str) -> None:
    """Refuse a table `given` (named `what`) whose keys are not exactly `expected`: a
    missing one has no `value`, an extra one is an unknown of the `keys` the `owner` has."""
    missing = [k for k in expected if k not in given]
    if missing:
        raise ValueError(f"{what}: no {value} for {keys} {missing}")
    extra = [k for k in given if k not in expected]
    if extra:
        raise ValueError(f"{what}: unknown {keys} {extra}; {owner} has {list(expected)}")
