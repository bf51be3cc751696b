"""Wire requests -> scheduler jobs: the SLO's deadline and floor, each item's tensors checked
against the model, and the configurations each item may use (non-empty subsets of
provided ∩ allowed that contain every required modality).

A request is a job of size 1. Each item keeps its original wire tensors (forwarded to the
encoders untouched, so no bytes are re-encoded).
"""

from __future__ import annotations

import math
import time
import uuid

from mosel.errors import DeadlineExceeded, InvalidArgument, NotFound, check_length
from mosel.modalities import config_modalities
from mosel.protocol import tensors as wire
from mosel.protocol.v1 import selection_pb2
from mosel.scheduling.job import Item, Job

# A budget beyond this is almost certainly a unit mistake (seconds vs ms, µs vs ms).
MAX_BUDGET_MS = 10 * 60 * 1000.0


def resolve_deadline(slo: selection_pb2.SLO, default_budget_ms: float, now_mono: float, now_unix_ms: float,
                     rpc_remaining_s: float | None) -> float:
    """SLO deadline -> monotonic deadline, validated (field names from the proto)."""
    which = slo.WhichOneof("deadline")
    if which == "budget_ms":
        budget = slo.budget_ms
        if not math.isfinite(budget) or budget <= 0:
            raise InvalidArgument("slo.budget_ms", f"must be a positive number of milliseconds, got {budget}")
        if budget > MAX_BUDGET_MS:
            raise InvalidArgument("slo.budget_ms", f"{budget} ms is absurd (limit {MAX_BUDGET_MS:.0f} ms)")
    elif which == "deadline_unix_ms":
        budget = slo.deadline_unix_ms - now_unix_ms
        if budget <= 0:
            raise DeadlineExceeded(f"slo.deadline_unix_ms is {-budget:.0f} ms in the past")
        if budget > MAX_BUDGET_MS:
            raise InvalidArgument("slo.deadline_unix_ms", f"{budget:.0f} ms ahead is absurd (limit {MAX_BUDGET_MS:.0f} ms)")
    else:
        budget = default_budget_ms
    deadline = now_mono + budget / 1000.0
    if rpc_remaining_s is not None:  # the caller's gRPC deadline binds too
        deadline = min(deadline, now_mono + rpc_remaining_s)
    return deadline


def validate_modality_names(names, known: tuple[str, ...], field_name: str) -> set[str]:
    out = set()
    for i, name in enumerate(names):
        check_length(name, f"{field_name}[{i}]")
        if name not in known:
            raise NotFound(f"{field_name}: unknown modality {name!r}; model has {list(known)}")
        out.add(name)
    return out


def build_item(model, item_id: str, inputs, allowed: set[str], required: set[str], field_prefix: str) -> Item:
    """Validate one request's tensors against the model and list its candidate configurations."""
    pack = model.pack
    if not inputs:
        raise InvalidArgument(f"{field_prefix}inputs", "empty request: provide at least one modality tensor")
    check_length(item_id, f"{field_prefix}id")
    for name, tensor in inputs.items():
        check_length(name, f"{field_prefix}inputs.key")  # a modality name
        field_name = f"{field_prefix}inputs[{name}]"
        if name not in pack.modality_names:
            raise NotFound(f"{field_name}: unknown modality {name!r}; model {model.name!r} has {list(pack.modality_names)}")
        array = wire.decode(tensor, field=field_name)
        pack.validate_item(name, array, field=field_name)
        wire.check_finite(array, field_name, tensor.dtype)
    usable = set(inputs) & allowed
    missing = required - set(inputs)
    if missing:
        raise InvalidArgument(f"{field_prefix}inputs", f"required modalities {sorted(missing)} not provided")
    candidates = [c for c in model.configurations if set(config_modalities(c)) <= usable
                  and required <= set(config_modalities(c))]
    if not candidates:
        raise InvalidArgument(f"{field_prefix}inputs", "no configuration fits the provided, allowed and required modalities")
    candidates.sort(key=lambda c: -model.accuracy_of(c))
    return Item(id=item_id or uuid.uuid4().hex[:12], inputs=dict(inputs), candidates=candidates)


def build_job(model, job_id: str, raw_items: list[tuple[str, dict]], slo: selection_pb2.SLO, *,
              default_budget_ms: float, max_job_size: int, rpc_remaining_s: float | None,
              item_field: str = "items") -> Job:
    now_mono, now_unix_ms = time.monotonic(), time.time() * 1000.0
    check_length(job_id, "id" if item_field != "items" else "job_id")
    if not raw_items:
        raise InvalidArgument(item_field, "empty job: at least one item is required")
    if len(raw_items) > max_job_size:
        raise InvalidArgument(item_field, f"{len(raw_items)} items exceed the maximum job size {max_job_size}")
    floor = slo.min_accuracy
    if not math.isfinite(floor) or not 0.0 <= floor <= 1.0:
        raise InvalidArgument("slo.min_accuracy", f"must be within [0, 1], got {floor}")
    if floor > 0 and not model.has_accuracy_profile:
        raise InvalidArgument("slo.min_accuracy",
                              f"model {model.name!r} has no accuracy profile yet (run `mosel eval`), so floors cannot be met")
    known = model.pack.modality_names
    allowed = validate_modality_names(slo.allowed_modalities, known, "slo.allowed_modalities") or set(known)
    required = validate_modality_names(slo.required_modalities, known, "slo.required_modalities")
    if not required <= allowed:
        raise InvalidArgument("slo.required_modalities", f"{sorted(required - allowed)} not in allowed_modalities")
    deadline = resolve_deadline(slo, default_budget_ms, now_mono, now_unix_ms, rpc_remaining_s)
    items = []
    for i, (item_id, inputs) in enumerate(raw_items):
        prefix = f"{item_field}[{i}]." if item_field == "items" else ""
        item = build_item(model, item_id, inputs, allowed, required, prefix)
        item.index = i
        items.append(item)
    best = sum(model.accuracy_of(it.candidates[0]) for it in items) / len(items)
    if floor > best + 1e-12:
        raise InvalidArgument("slo.min_accuracy",
                              f"{floor:.4f} exceeds the best accuracy {best:.4f} reachable with the given modalities")
    return Job(id=job_id or uuid.uuid4().hex[:12], model=model, items=items, received=now_mono,
               deadline=deadline, min_accuracy=floor, priority=slo.priority)
