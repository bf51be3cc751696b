"""What the KServe v2 fronts share, free of any wire format: one ModelInfer call is ONE job.

The rows of a call's inputs (their leading batch dimension) are the b requests of one job
with one deadline and one accuracy floor, taken from the request parameters (see
conversions.slo_from_parameters). Each input is one modality; an input left out is a
modality not provided. The answer holds "scores" FP32 [b, classes] and "label" INT64 [b],
and parameters saying which configurations ran (conversions.response_parameters).

Errors are MoselErrors with the status codes mosel.v1 uses; the gRPC front sends them as
gRPC status, the HTTP front as an HTTP status with {"error": message}.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from typing import Any, Callable, Mapping, Sequence

import grpc

from mosel.errors import InvalidArgument, NotFound, check_length
from mosel.frontends import conversions as conv
from mosel.frontends.backend import CALL_GRACE_S, Backend, Refused, as_backend
from mosel.protocol.v1 import selection_pb2

SERVER_NAME = "mosel"
MODALITY_SELECTION_EXTENSION = "mosel_modality_selection"
EXTENSIONS = ("model_configuration", "statistics", "binary_tensor_data", "parameters", MODALITY_SELECTION_EXTENSION)
# Model metadata (modalities, labels, profiled accuracies) is re-read from the backend this often.
VIEW_TTL_S = 5.0
# Triton request parameters MOSEL has no use for but clients send; anything else unknown is ignored too.
STATEFUL_PARAMETERS = ("sequence_id", "sequence_start", "sequence_end")
# Replies of one ModelStreamInfer stream read but not yet sent (serving, waiting for a thread,
# or waiting to be sent). At the bound the stream's reader stops reading: a client that does not
# read its answers is held back by gRPC flow control instead of the server buffering them.
STREAM_MAX_OUTSTANDING = 64


def server_version() -> str:
    try:
        return importlib_metadata.version("mosel-serving")
    except importlib_metadata.PackageNotFoundError:
        return "0"


@dataclass
class InferOutcome:
    model: str
    id: str
    outputs: list[conv.OutputTensor]
    parameters: dict[str, Any]


@dataclass
class _Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += max(0, int(ns))

    def json(self) -> dict:
        return {"count": self.count, "ns": self.ns}


@dataclass
class _ModelStats:
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    durations: dict[str, _Duration] = field(default_factory=lambda: {
        k: _Duration() for k in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")})
    batches: dict[int, dict[str, _Duration]] = field(default_factory=dict)


class KServeCore:
    def __init__(self, target, ready: Callable[[], bool] | None = None, version: str | None = None):
        self.backend: Backend = as_backend(target, ready)
        self.version = version or server_version()
        self._views: dict[str, tuple[float, conv.ModelView]] = {}
        self._stats: dict[str, _ModelStats] = {}
        self._lock = threading.Lock()
        self._accepting = True

    # ---- health -------------------------------------------------------------------------------
    def set_ready(self, ready: bool) -> None:
        """False while the server drains: readiness turns off, liveness stays."""
        self._accepting = ready

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self._accepting and self.backend.ready()

    def model_ready(self, name: str, version: str = "") -> bool:
        if not self.ready():
            return False
        try:
            self.view(name, version)
        except (NotFound, Refused):
            return False
        return True

    def server_metadata(self) -> dict:
        return {"name": SERVER_NAME, "version": self.version, "extensions": list(EXTENSIONS)}

    # ---- models -------------------------------------------------------------------------------
    def view(self, name: str, version: str = "") -> conv.ModelView:
        """The model as served now; `version` ("" = any) must be the one served."""
        check_length(name, "model_name")
        check_length(version, "model_version")
        view = self._current_view(name)
        if version not in ("", view.version):
            raise NotFound(f"model_version: model {name!r} has no version {version!r} served; served: [{view.version!r}]")
        return view

    def _served_version(self, name: str) -> str:
        """The version last seen served (call with the lock held; no backend call)."""
        cached = self._views.get(name)
        return cached[1].version if cached else conv.DEFAULT_VERSION

    def _current_view(self, name: str) -> conv.ModelView:
        if not name:
            raise NotFound("model_name: empty model name")
        now = time.monotonic()
        with self._lock:
            cached = self._views.get(name)
        if cached and now - cached[0] < VIEW_TTL_S:
            return cached[1]
        try:
            view = conv.ModelView.from_metadata(self.backend.metadata(name))
        except Refused as exc:
            if exc.code == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"model_name: unknown model {name!r}") from None
            raise
        with self._lock:
            self._views[name] = (now, view)
        return view

    def model_metadata(self, name: str, version: str = "") -> dict:
        return self.view(name, version).metadata_json()

    def model_config(self, name: str, version: str = "") -> dict:
        return self.view(name, version).config_json()

    # ---- inference ----------------------------------------------------------------------------
    def infer(self, model: str, version: str, request_id: str, inputs: Sequence[conv.InputTensor],
              parameters: Mapping[str, Any], requested_outputs: Sequence[str] = (),
              rpc_remaining_s: float | None = None, decode_ns: int = 0) -> InferOutcome:
        """Serve the call as one job. `rpc_remaining_s`: the caller's own deadline, which binds too."""
        view = self.view(model, version)
        check_length(request_id, "id", conv.MAX_REQUEST_ID_CHARS)
        started = time.perf_counter_ns() - decode_ns
        try:
            outcome, timing = self._infer(view, request_id, inputs, parameters, requested_outputs, rpc_remaining_s)
        except Exception:
            self._record_failure(view.name, time.perf_counter_ns() - started)
            raise
        self._record_success(view.name, len(outcome.outputs[0].array) if outcome.outputs else 0, started, decode_ns,
                             timing)
        return outcome

    def _infer(self, view, request_id, inputs, parameters, requested_outputs, rpc_remaining_s):
        for key in STATEFUL_PARAMETERS:
            if parameters.get(key) not in (None, 0, "", False):
                raise InvalidArgument(f"parameters[{key}]", "MOSEL models are stateless: sequences are not supported")
        wanted = conv.check_requested_outputs(requested_outputs)
        slo = conv.slo_from_parameters(parameters)
        t0 = time.perf_counter_ns()
        items = conv.job_items(view, inputs, request_id)
        decode_ns = time.perf_counter_ns() - t0
        request = selection_pb2.InferJobRequest(model=view.name, job_id=request_id, items=items, slo=slo)
        budget_s = slo.budget_ms / 1000.0 if slo.HasField("budget_ms") else None
        if budget_s is not None and rpc_remaining_s is not None:
            timeout_s = min(budget_s + CALL_GRACE_S, rpc_remaining_s)
        elif budget_s is not None:
            timeout_s = budget_s + CALL_GRACE_S
        else:
            timeout_s = rpc_remaining_s
        try:
            response = self.backend.infer_job(request, timeout_s)
        except Refused as exc:
            raise Refused(exc.code, conv.rename_slo_fields(exc.message)) from None
        t1 = time.perf_counter_ns()
        outputs = conv.outputs_of(response, len(view.labels), wanted)
        params = conv.response_parameters(response, view.input_names)
        encode_ns = time.perf_counter_ns() - t1
        timing = {"queue_ns": response.timing.queue_us * 1000, "compute_ns": response.timing.compute_us * 1000,
                  "input_ns": decode_ns, "output_ns": encode_ns}
        return InferOutcome(model=view.name, id=request_id, outputs=outputs, parameters=params), timing

    # ---- statistics ---------------------------------------------------------------------------
    def _entry(self, model: str) -> _ModelStats:
        return self._stats.setdefault(model, _ModelStats())

    def _record_failure(self, model: str, elapsed_ns: int) -> None:
        with self._lock:
            self._entry(model).durations["fail"].add(elapsed_ns)

    def _record_success(self, model: str, rows: int, started_ns: int, decode_ns: int, timing: dict) -> None:
        elapsed = time.perf_counter_ns() - started_ns
        with self._lock:
            s = self._entry(model)
            s.last_inference_ms = int(time.time() * 1000)
            s.inference_count += rows
            s.execution_count += 1
            d = s.durations
            d["success"].add(elapsed)
            d["queue"].add(timing["queue_ns"])
            d["compute_input"].add(decode_ns + timing["input_ns"])
            d["compute_infer"].add(timing["compute_ns"])
            d["compute_output"].add(timing["output_ns"])
            b = s.batches.setdefault(rows, {k: _Duration() for k in ("compute_input", "compute_infer", "compute_output")})
            b["compute_input"].add(decode_ns + timing["input_ns"])
            b["compute_infer"].add(timing["compute_ns"])
            b["compute_output"].add(timing["output_ns"])

    def statistics(self, name: str = "", version: str = "") -> dict:
        """Triton's statistics (JSON form) of the calls served through this front."""
        names = [self.view(name, version).name] if name else sorted(set(self.backend.models()) | set(self._stats))
        out = []
        with self._lock:
            for model in names:
                s = self._stats.get(model, _ModelStats())
                out.append({
                    "name": model, "version": self._served_version(model), "last_inference": s.last_inference_ms,
                    "inference_count": s.inference_count, "execution_count": s.execution_count,
                    "inference_stats": {k: v.json() for k, v in s.durations.items()},
                    "batch_stats": [{"batch_size": size, **{k: v.json() for k, v in b.items()}}
                                    for size, b in sorted(s.batches.items())],
                })
        return {"model_stats": out}

    def close(self) -> None:
        self.backend.close()
