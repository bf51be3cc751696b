"""Conversions between the profile store's protos and the library's objects.

- `matrix_to_proto` / `matrix_from_proto`: mosel.planning.solver.StrategyMatrix <-> ps.StrategyMatrix.
  The proto carries the cost model as JSON (`cost_json`), so a matrix read back prices any
  split exactly as the solve did. Floats are float64 on both sides: a round trip is exact.
- `cost_from_latency_profile`: a stored LatencyProfile -> mosel.planning.costs cost model (median
  latencies; late fusion adds the fusion head table).
- `accuracies_from_profile`: a stored AccuracyProfile -> {configuration: accuracy}.
"""

from __future__ import annotations

import json
from typing import Sequence

from mosel.planning.costs import CostModel, JointCost, LateFusionCost
from mosel.planning.solver import Strategy, StrategyMatrix
from mosel.protocol.v1 import profile_store_pb2 as ps

# Keys of StrategyMatrix.source that matrix_from_proto fills from the proto's fields.
SOURCE_KEYS = ("model", "version", "latency_profile_version", "accuracy_profile_version", "cost_model",
               "placement", "precision", "solve_ms")


def matrix_source(model: str, version: int = 0, latency_profile_version: int = 0, accuracy_profile_version: int = 0,
                  cost_model: str = "", placement: str = "", precision: str = "", solve_ms: float = 0.0) -> dict:
    """The `source` metadata a matrix read from the store carries (see matrix_from_proto)."""
    return {"model": model, "version": int(version), "latency_profile_version": int(latency_profile_version),
            "accuracy_profile_version": int(accuracy_profile_version), "cost_model": cost_model,
            "placement": placement, "precision": precision, "solve_ms": float(solve_ms)}


def matrix_to_proto(
    matrix: StrategyMatrix,
    model: str,
    latency_version: int = 0,
    accuracy_version: int = 0,
    cost_model: str | None = None,
    placement: str | None = None,
    precision: str = "fp32",
    solve_ms: float = 0.0,
) -> ps.StrategyMatrix:
    """The matrix as the store keeps it. `cost_model`/`placement` default to the matrix's cost
    model (placement is empty for joint models, as the store requires)."""
    kind = matrix.cost.get("kind", "")
    if cost_model is None:
        cost_model = kind
    if placement is None:
        placement = matrix.cost.get("placement", "") if kind == "late_fusion" else ""
    rows = []
    for b in range(1, matrix.max_batch + 1):
        rows.append(ps.StrategyRow(job_size=b, strategies=[
            ps.Strategy(counts=list(s.counts), accuracy=s.accuracy, latency_ms=s.latency, target=s.target)
            for s in matrix.row(b)
        ]))
    return ps.StrategyMatrix(
        model=model,
        configurations=list(matrix.configurations),
        accuracies=[matrix.accuracies[c] for c in matrix.configurations],
        targets=list(matrix.targets),
        max_batch=matrix.max_batch,
        rows=rows,
        latency_profile_version=int(latency_version),
        accuracy_profile_version=int(accuracy_version),
        cost_model=cost_model,
        placement=placement,
        precision=precision,
        solve_ms=float(solve_ms),
        cost_json=json.dumps(matrix.cost, sort_keys=True),
    )


def matrix_from_proto(msg: ps.StrategyMatrix) -> StrategyMatrix:
    """A StrategyMatrix from the store's message (ValueError when it is inconsistent).

    `source` holds the proto's provenance fields (SOURCE_KEYS; version = msg.ref.version)."""
    if not msg.cost_json:
        raise ValueError(f"strategy matrix for {msg.model!r} has no cost_json; re-run `mosel solve`")
    try:
        cost = json.loads(msg.cost_json)
    except ValueError as exc:
        raise ValueError(f"strategy matrix for {msg.model!r}: cost_json is not JSON ({exc})") from None
    CostModel.from_dict(cost)  # refuse a cost model the library cannot rebuild
    configurations = list(msg.configurations)
    if len(msg.accuracies) != len(configurations):
        raise ValueError(f"strategy matrix: {len(msg.accuracies)} accuracies for {len(configurations)} configurations")
    rows: dict[int, list[Strategy]] = {}
    for row in msg.rows:
        if row.job_size in rows:
            raise ValueError(f"strategy matrix: duplicate row for job size {row.job_size}")
        rows[row.job_size] = [Strategy(tuple(int(x) for x in s.counts), s.accuracy, s.latency_ms, s.target)
                              for s in row.strategies]
    source = matrix_source(msg.model, msg.ref.version, msg.latency_profile_version, msg.accuracy_profile_version,
                           msg.cost_model, msg.placement, msg.precision, msg.solve_ms)
    return StrategyMatrix(configurations, dict(zip(configurations, msg.accuracies)), msg.max_batch,
                          list(msg.targets), cost, rows, source)


def cost_from_latency_profile(profile: ps.LatencyProfile, placement: str | None = None,
                              modalities: Sequence[str] | None = None) -> CostModel:
    """Cost model from the profile's median latencies.

    late_fusion -> LateFusionCost(series per encoder, placement (the profile's unless given),
    head_ms when present); joint -> JointCost(series per configuration). `modalities` gives the
    model's modality order (default: the order of the series)."""
    tables = {s.unit: list(s.median_ms) for s in profile.series}
    if not tables:
        raise ValueError(f"latency profile for {profile.model!r} has no series")
    if profile.cost_model == "late_fusion":
        head = list(profile.head_ms) if profile.head_ms else None
        return LateFusionCost(tables, placement or profile.placement, head,
                              modalities=list(modalities) if modalities else None)
    if profile.cost_model == "joint":
        if placement:
            raise ValueError("placement only applies to late_fusion profiles")
        return JointCost(tables, modalities=list(modalities) if modalities else None)
    raise ValueError(f"latency profile for {profile.model!r}: unknown cost_model {profile.cost_model!r}")


def accuracies_from_profile(profile: ps.AccuracyProfile) -> dict[str, float]:
    return {c.configuration: float(c.accuracy) for c in profile.configurations}


# ----------------------------------------------------------------------------- solve from the store
