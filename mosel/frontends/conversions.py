"""KServe v2 datatypes, tensors and parameters <-> MOSEL's wire types; no KServe stub needed.

A KServe tensor holds all rows of a call (leading batch dimension); MOSEL's selection service
takes one `Tensor` per request and modality. Everything here validates before it touches
bytes, and every error names the KServe field ("inputs[video].shape", "parameters[timeout]",
"raw_input_contents[1]") the way mosel.protocol.tensors does for mosel.v1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from mosel.errors import MAX_STRING_CHARS, InvalidArgument, NotFound
from mosel.protocol import tensors as wire
from mosel.protocol.v1 import selection_pb2, tensor_pb2

# KServe datatype name -> MOSEL wire dtype name (mosel.protocol.tensors.WIRE_DTYPES).
KSERVE_TO_WIRE: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "BF16": "bfloat16",
    "FP32": "float32",
    "FP64": "float64",
}
WIRE_TO_KSERVE: dict[str, str] = {v: k for k, v in KSERVE_TO_WIRE.items()}
# Datatypes of the protocol that no MOSEL model takes (refused by name, not as unknown).
KSERVE_UNSUPPORTED = ("UINT16", "UINT32", "UINT64", "BYTES")

# KServe datatype name -> Triton's model_config DataType enum value name.
KSERVE_TO_TRITON_ENUM: dict[str, str] = {
    "BOOL": "TYPE_BOOL", "UINT8": "TYPE_UINT8", "UINT16": "TYPE_UINT16", "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64", "INT8": "TYPE_INT8", "INT16": "TYPE_INT16", "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64", "FP16": "TYPE_FP16", "FP32": "TYPE_FP32", "FP64": "TYPE_FP64",
    "BYTES": "TYPE_STRING", "BF16": "TYPE_BF16",
}

# Which InferTensorContents list carries a datatype's elements (FP16/BF16 travel raw only).
TYPED_CONTENTS: dict[str, str] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}

# Output tensors of every MOSEL model: class probabilities and the predicted class.
OUTPUT_SCORES = "scores"
OUTPUT_LABEL = "label"
OUTPUT_NAMES = (OUTPUT_SCORES, OUTPUT_LABEL)

# Request parameters that carry the SLO (see protos/mosel/protocol/kserve/grpc_service.proto).
PARAM_TIMEOUT = "timeout"
PARAM_PRIORITY = "priority"
PARAM_MIN_ACCURACY = "min_accuracy"
PARAM_ALLOWED = "allowed_modalities"
PARAM_REQUIRED = "required_modalities"
INT32_MAX = 2**31 - 1
# A call's rows become job items "<id>-<row>", which must stay within mosel.v1's MAX_STRING_CHARS.
MAX_REQUEST_ID_CHARS = MAX_STRING_CHARS - 8


def shown(value: Any, limit: int = 80) -> str:
    """repr of a refused value, cut short: a refusal must not echo a huge value back."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def numpy_dtype(datatype: str) -> np.dtype:
    """Little-endian numpy dtype of a supported KServe datatype (BF16: its raw 2-byte words)."""
    return wire.WIRE_DTYPES[KSERVE_TO_WIRE[datatype]]


def kserve_datatype(wire_dtype: str) -> str:
    try:
        return WIRE_TO_KSERVE[wire_dtype]
    except KeyError:
        raise ValueError(f"wire dtype {wire_dtype!r} has no KServe datatype") from None


def check_datatype(datatype: str, field: str) -> None:
    if datatype in KSERVE_TO_WIRE:
        return
    if datatype in KSERVE_UNSUPPORTED:
        raise InvalidArgument(field, f"datatype {datatype} is not accepted by MOSEL models")
    raise InvalidArgument(field, f"unknown datatype {shown(datatype)}; expected one of {sorted(KSERVE_TO_WIRE)}")


# ---- request parameters -> SLO --------------------------------------------------------------
def _integer(params: Mapping[str, Any], key: str) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise InvalidArgument(f"parameters[{key}]", f"must be an integer, got {shown(value)}")
    return value


def _names(params: Mapping[str, Any], key: str) -> list[str]:
    value = params.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        parts = list(value)  # JSON callers may send a list
    else:
        raise InvalidArgument(f"parameters[{key}]",
                              f"must be a comma-separated string of modality names, got {shown(value)}")
    return [p.strip() for p in parts if p.strip()]


def slo_from_parameters(params: Mapping[str, Any]) -> selection_pb2.SLO:
    """The job's SLO from KServe request parameters (plain Python values).

    timeout (µs, > 0; 0 or absent = the server's default budget), priority (>= 0),
    min_accuracy ([0, 1]), allowed_modalities / required_modalities (comma-separated)."""
    slo = selection_pb2.SLO()
    timeout = _integer(params, PARAM_TIMEOUT)
    if timeout is not None:
        if timeout < 0:
            raise InvalidArgument(f"parameters[{PARAM_TIMEOUT}]", f"must be >= 0 microseconds, got {timeout}")
        if timeout > 0:
            slo.budget_ms = timeout / 1000.0
    priority = _integer(params, PARAM_PRIORITY)
    if priority is not None:
        if not 0 <= priority <= INT32_MAX:
            raise InvalidArgument(f"parameters[{PARAM_PRIORITY}]", f"must be within [0, {INT32_MAX}], got {priority}")
        slo.priority = priority
    floor = params.get(PARAM_MIN_ACCURACY)
    if floor is not None:
        if isinstance(floor, bool) or not isinstance(floor, (int, float)):
            raise InvalidArgument(f"parameters[{PARAM_MIN_ACCURACY}]", f"must be a number, got {shown(floor)}")
        floor = float(floor)
        if not math.isfinite(floor) or not 0.0 <= floor <= 1.0:
            raise InvalidArgument(f"parameters[{PARAM_MIN_ACCURACY}]", f"must be within [0, 1], got {floor}")
        slo.min_accuracy = floor
    slo.allowed_modalities.extend(_names(params, PARAM_ALLOWED))
    slo.required_modalities.extend(_names(params, PARAM_REQUIRED))
    return slo


def rename_slo_fields(message: str) -> str:
    """A selection-service refusal worded in KServe terms ("slo.min_accuracy" -> "parameters[min_accuracy]")."""
    for slo_field, param in (("slo.budget_ms", PARAM_TIMEOUT), ("slo.min_accuracy", PARAM_MIN_ACCURACY),
                             ("slo.allowed_modalities", PARAM_ALLOWED), ("slo.required_modalities", PARAM_REQUIRED),
                             ("slo.priority", PARAM_PRIORITY)):
        message = message.replace(slo_field, f"parameters[{param}]")
    return message


# ---- model view -------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputSpec:
    name: str
    datatype: str  # KServe name
    item_shape: tuple[int, ...]  # per row, -1 = dynamic


DEFAULT_VERSION = "1"


@dataclass(frozen=True)
class ModelView:
    """What the fronts need of a model, read from mosel.v1 ModelMetadata."""

    name: str
    inputs: tuple[InputSpec, ...]
    labels: tuple[str, ...]
    max_batch_size: int
    policy: str
    configurations: tuple[tuple[str, float], ...]  # (name, profiled accuracy)
    version: str = DEFAULT_VERSION  # the repository version served; packs have one version, "1"

    @classmethod
    def from_metadata(cls, meta: selection_pb2.ModelMetadata) -> "ModelView":
        inputs = tuple(InputSpec(m.name, kserve_datatype(m.spec.dtype), tuple(int(d) for d in m.spec.shape))
                       for m in meta.modalities)
        return cls(name=meta.name, inputs=inputs, labels=tuple(meta.labels), max_batch_size=int(meta.max_job_size),
                   policy=meta.policy, configurations=tuple((c.name, c.accuracy) for c in meta.configurations),
                   version=meta.model_version or DEFAULT_VERSION)

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    def input(self, name: str) -> InputSpec | None:
        return next((i for i in self.inputs if i.name == name), None)

    def metadata_json(self) -> dict:
        """KServe v2 model metadata (the HTTP body; the gRPC message has the same fields)."""
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "mosel",
            "inputs": [{"name": i.name, "datatype": i.datatype, "shape": [-1, *i.item_shape]} for i in self.inputs],
            "outputs": [{"name": OUTPUT_SCORES, "datatype": "FP32", "shape": [-1, len(self.labels)]},
                        {"name": OUTPUT_LABEL, "datatype": "INT64", "shape": [-1]}],
        }

    def config_json(self) -> dict:
        """Triton's model configuration in its JSON form (protobuf JSON names, enum names)."""
        return {
            "name": self.name,
            "platform": "mosel",
            "backend": "mosel",
            "max_batch_size": self.max_batch_size,
            "input": [{"name": i.name, "data_type": KSERVE_TO_TRITON_ENUM[i.datatype], "dims": list(i.item_shape),
                       "optional": True} for i in self.inputs],
            "output": [{"name": OUTPUT_SCORES, "data_type": "TYPE_FP32", "dims": [len(self.labels)]},
                       {"name": OUTPUT_LABEL, "data_type": "TYPE_INT64", "dims": [1], "reshape": {"shape": []}}],
            "dynamic_batching": {},
            "parameters": {
                "policy": {"string_value": self.policy},
                "modalities": {"string_value": ",".join(self.input_names)},
                "configurations": {"string_value": ",".join(f"{n}={a:.4f}" for n, a in self.configurations)},
                "labels": {"string_value": ",".join(self.labels)},
            },
        }


# ---- input tensors ------------------------------------------------------------------------------
@dataclass
class InputTensor:
    """One KServe input as received: its elements as raw little-endian bytes or as an array."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes | memoryview | None = None
    array: np.ndarray | None = None
    data_field: str = ""  # where the elements came from, for error messages


def check_shape(shape: Sequence[int], field: str) -> tuple[int, ...]:
    out = tuple(int(d) for d in shape)
    if len(out) > wire.MAX_RANK + 1:
        raise InvalidArgument(field, f"rank {len(out)} exceeds {wire.MAX_RANK + 1}")
    if any(d < 0 for d in out):
        raise InvalidArgument(field, f"negative dimension in {list(out)}")
    return out


def array_from_typed(datatype: str, shape: tuple[int, ...], values: Sequence, field: str) -> np.ndarray:
    """Typed contents (a flat list) -> array of the datatype, size-checked."""
    count = math.prod(shape)
    if len(values) != count:
        raise InvalidArgument(field, f"{len(values)} elements do not match shape {list(shape)} = {count} elements")
    dtype = numpy_dtype(datatype)
    try:
        out = np.asarray(values, dtype=np.float64 if datatype in ("FP32", "FP64") else None)
        if datatype != "BOOL" and out.dtype.kind in "iu" and out.size and \
                (out.min() < np.iinfo(dtype).min or out.max() > np.iinfo(dtype).max):
            raise InvalidArgument(field, f"values out of range for {datatype}")
        return out.astype(dtype).reshape(shape)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(field, f"cannot read elements as {datatype}: {exc}") from None


def array_from_json(datatype: str, shape: tuple[int, ...], data: Any, field: str) -> np.ndarray:
    """JSON `data` (flat or nested row-major lists) -> array of the datatype, size-checked."""
    if not isinstance(data, list):
        data = [data]
    try:
        if datatype == "BOOL":
            flat = np.asarray(data, dtype=object).reshape(-1)
            if not all(isinstance(v, bool) for v in flat):
                raise InvalidArgument(field, "BOOL elements must be true or false")
            values = np.asarray(flat, dtype=np.bool_)
        else:
            values = np.asarray(data, dtype=np.float64 if datatype in ("FP16", "BF16", "FP32", "FP64") else None)
            if values.dtype == object or values.dtype.kind not in "biuf":
                raise InvalidArgument(field, f"elements must be numbers for {datatype}")
            values = values.reshape(-1)
    except ValueError as exc:  # ragged nesting
        raise InvalidArgument(field, f"data is not a dense row-major array: {exc}") from None
    count = math.prod(shape)
    if values.size != count:
        raise InvalidArgument(field, f"{values.size} elements do not match shape {list(shape)} = {count} elements")
    if datatype == "BF16":  # upper halves of the float32 words
        return (values.astype("<f4").view("<u4") >> 16).astype("<u2").reshape(shape)
    if datatype not in ("BOOL", "FP16", "FP32", "FP64"):
        if values.dtype.kind == "f" and not np.all(np.equal(np.mod(values, 1), 0)):
            raise InvalidArgument(field, f"{datatype} elements must be integers")
        info = np.iinfo(numpy_dtype(datatype))
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise InvalidArgument(field, f"values out of range for {datatype}")
    return values.astype(numpy_dtype(datatype)).reshape(shape)


def check_raw_size(datatype: str, shape: tuple[int, ...], raw, field: str) -> None:
    expected = math.prod(shape) * numpy_dtype(datatype).itemsize
    if len(raw) != expected:
        raise InvalidArgument(field, f"{len(raw)} bytes do not match datatype {datatype} x shape {list(shape)} "
                                     f"= {expected} bytes")


def job_items(view: ModelView, inputs: Sequence[InputTensor], request_id: str) -> list[selection_pb2.JobItem]:
    """The rows of the inputs as the items of one job, validated against the model's inputs."""
    if not inputs:
        raise InvalidArgument("inputs", f"no input given; model {view.name!r} takes {view.input_names}")
    seen: set[str] = set()
    rows: int | None = None
    for t in inputs:
        field = f"inputs[{t.name}]"
        spec = view.input(t.name)
        if spec is None:
            raise NotFound(f"{field}: unknown input {t.name!r}; model {view.name!r} has {view.input_names}")
        if t.name in seen:
            raise InvalidArgument(field, "given more than once")
        seen.add(t.name)
        check_datatype(t.datatype, f"{field}.datatype")
        if t.datatype != spec.datatype:
            raise InvalidArgument(f"{field}.datatype", f"{t.name} takes {spec.datatype}, got {t.datatype}")
        if len(t.shape) != 1 + len(spec.item_shape):
            raise InvalidArgument(f"{field}.shape", f"expected [rows, {', '.join(map(str, spec.item_shape))}] "
                                                   f"(rank {1 + len(spec.item_shape)}), got {list(t.shape)}")
        for axis, (want, got) in enumerate(zip(spec.item_shape, t.shape[1:]), start=1):
            if want != -1 and want != got:
                raise InvalidArgument(f"{field}.shape", f"dimension {axis} must be {want}, got {got} "
                                                       f"(shape {list(t.shape)}, model shape {[-1, *spec.item_shape]})")
        if t.shape[0] < 1:
            raise InvalidArgument(f"{field}.shape", "the batch dimension (rows) must be at least 1")
        if rows is not None and t.shape[0] != rows:
            raise InvalidArgument(f"{field}.shape", f"{t.shape[0]} rows, but other inputs have {rows}")
        rows = t.shape[0]
    assert rows is not None
    if rows > view.max_batch_size:
        raise InvalidArgument(f"inputs[{inputs[0].name}].shape",
                              f"{rows} rows exceed max_batch_size {view.max_batch_size}")
    items = [selection_pb2.JobItem(id=f"{request_id}-{i}" if request_id else "") for i in range(rows)]
    for t in inputs:
        dtype_name = KSERVE_TO_WIRE[t.datatype]
        item_shape = list(t.shape[1:])
        if t.raw is not None:
            check_raw_size(t.datatype, t.shape, t.raw, t.data_field or f"inputs[{t.name}]")
            data = memoryview(t.raw).cast("B")
        else:
            array = np.ascontiguousarray(np.asarray(t.array).astype(wire.WIRE_DTYPES[dtype_name], copy=False))
            data = memoryview(array.reshape(-1).view(np.uint8))
        # NaN/inf would be answered with NaN scores and a confident label: refuse them (index [row, ...])
        wire.check_finite(np.frombuffer(data, dtype=wire.WIRE_DTYPES[dtype_name]).reshape(t.shape),
                          f"inputs[{t.name}]", dtype_name)
        row_bytes = len(data) // rows
        for i, item in enumerate(items):
            item.inputs[t.name].CopyFrom(tensor_pb2.Tensor(dtype=dtype_name, shape=item_shape,
                                                           data=bytes(data[i * row_bytes:(i + 1) * row_bytes])))
    return items


# ---- outputs and response parameters -----------------------------------------------------------
@dataclass
class OutputTensor:
    name: str
    datatype: str
    array: np.ndarray

    @property
    def shape(self) -> list[int]:
        return list(self.array.shape)

    def raw(self) -> bytes:
        return np.ascontiguousarray(self.array.astype(numpy_dtype(self.datatype), copy=False)).tobytes()


def check_requested_outputs(names: Sequence[str]) -> list[str]:
    """Requested output names (empty = all), validated, in the order asked for."""
    out = []
    for name in names:
        if name not in OUTPUT_NAMES:
            raise InvalidArgument(f"outputs[{name}]", f"unknown output {name!r}; the model has {list(OUTPUT_NAMES)}")
        if name in out:
            raise InvalidArgument(f"outputs[{name}]", "asked for more than once")
        out.append(name)
    return out or list(OUTPUT_NAMES)


def outputs_of(response: selection_pb2.InferJobResponse, classes: int, wanted: Sequence[str]) -> list[OutputTensor]:
    rows = len(response.results)
    scores = np.zeros((rows, classes), np.float32)
    for i, r in enumerate(response.results):
        if len(r.scores) != classes:
            raise RuntimeError(f"result {i} has {len(r.scores)} scores for {classes} classes")
        scores[i] = r.scores
    labels = np.array([r.label for r in response.results], np.int64)
    made = {OUTPUT_SCORES: OutputTensor(OUTPUT_SCORES, "FP32", scores), OUTPUT_LABEL: OutputTensor(OUTPUT_LABEL, "INT64", labels)}
    return [made[name] for name in wanted]


def response_parameters(response: selection_pb2.InferJobResponse, modality_order: Sequence[str]) -> dict[str, Any]:
    """What MOSEL decided, as KServe response parameters (plain values: str, float, bool)."""
    used = {m for r in response.results for m in r.modalities_used}
    policy = response.results[0].policy if response.results else ""
    return {
        "configurations": ",".join(r.configuration for r in response.results),
        "strategy": ",".join(f"{c.configuration}={c.count}" for c in response.strategy),
        "modalities_used": ",".join(m for m in modality_order if m in used),
        "expected_accuracy": float(response.expected_accuracy),
        "degraded": bool(response.degraded),
        # the distinct reasons, e.g. "load" or "unavailable:video" ("" when nothing was degraded)
        "degraded_reason": ",".join(dict.fromkeys(r.degraded_reason for r in response.results if r.degraded_reason)),
        "policy": policy,
    }
