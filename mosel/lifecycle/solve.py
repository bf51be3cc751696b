"""Solve a model's strategy matrix from the profiles in the store and store it (`mosel solve`,
`mosel up`): the latest latency profile of a device kind and precision plus the latest
accuracy profile -> mosel.planning.solver.solve_matrix -> PutStrategyMatrix."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mosel.protocol.records import accuracies_from_profile, cost_from_latency_profile, matrix_source, matrix_to_proto
from mosel.planning.solver import StrategyMatrix
from mosel.protocol.v1 import profile_store_pb2 as ps


class MissingProfile(LookupError):
    """The store lacks a record the solve needs; the message says which command creates it."""


@dataclass
class SolveResult:
    matrix: StrategyMatrix
    proto: ps.StrategyMatrix
    ref: ps.VersionRef
    latency: ps.LatencyProfile
    accuracy: ps.AccuracyProfile
    solve_ms: float
    notes: list[str] = field(default_factory=list)


def _latest_or_none(fetch, *args, **kwargs):
    import grpc

    try:
        return fetch(*args, **kwargs)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def solve_from_store(client, model: str, device: str = "cpu", precision: str = "fp32", placement: str | None = None,
                     step: float = 0.002, max_batch: int | None = None) -> SolveResult:
    """Latest latency profile (variant '<device kind>-<precision>') + latest accuracy profile
    (that precision, else fp32) -> solve_matrix -> PutStrategyMatrix. Returns what was stored."""
    from mosel.planning.solver import solve_matrix

    notes: list[str] = []
    variant = f"{device.split(':', 1)[0]}-{precision}"
    latency = _latest_or_none(client.get_latency_profile, model, variant=variant)
    if latency is None:
        raise MissingProfile(f"no {variant} latency profile for {model!r} in the store; run "
                             f"`mosel profile --model {model} --device {device} --precision {precision}`")
    accuracy = _latest_or_none(client.get_accuracy_profile, model, variant=precision)
    if accuracy is None and precision != "fp32":
        accuracy = _latest_or_none(client.get_accuracy_profile, model, variant="fp32")
        if accuracy is not None:
            notes.append(f"no {precision} accuracy profile; used the fp32 one (v{accuracy.ref.version})")
    if accuracy is None:
        raise MissingProfile(f"no accuracy profile for {model!r} in the store; run `mosel eval --model {model}` "
                             f"or `mosel profile --model {model}` (which publishes it)")
    manifest = client.get_model(model)
    if latency.checkpoint_sha256 and manifest.checkpoint_sha256 and latency.checkpoint_sha256 != manifest.checkpoint_sha256:
        notes.append(f"latency profile v{latency.ref.version} was measured on another checkpoint than the "
                     "registered one; re-run `mosel profile`")
    max_batch = max_batch or latency.max_batch
    if not 1 <= max_batch <= latency.max_batch:
        raise ValueError(f"max_batch must be in 1..{latency.max_batch} (the latency profile's max_batch)")
    cost = cost_from_latency_profile(latency, placement=placement, modalities=[m.name for m in manifest.modalities])
    placement = getattr(cost, "placement", "")
    started = time.perf_counter()
    matrix = solve_matrix(cost, accuracies_from_profile(accuracy), max_batch=max_batch, step=step)
    solve_ms = (time.perf_counter() - started) * 1000.0
    proto = matrix_to_proto(matrix, model, latency_version=latency.ref.version, accuracy_version=accuracy.ref.version,
                            cost_model=latency.cost_model, placement=placement, precision=precision, solve_ms=solve_ms)
    ref = client.put_strategy_matrix(proto)
    proto.ref.CopyFrom(ref)
    matrix.source.update(matrix_source(model, ref.version, latency.ref.version, accuracy.ref.version,
                                       latency.cost_model, placement, precision, solve_ms))
    return SolveResult(matrix, proto, ref, latency, accuracy, solve_ms, notes)
