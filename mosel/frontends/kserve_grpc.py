"""`inference.GRPCInferenceService` (KServe v2 / Triton gRPC) served by MOSEL.

    kserve = KServeServicer(selection_servicer)      # in-process: no extra network hop
    kserve = KServeServicer(SelectionServiceStub(ch)) # or in front of a remote selection service
    grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(kserve, server)

A ModelInfer call is one job (see mosel.frontends.core). Inputs travel as
raw_input_contents (one entry per input, as Triton clients send them) or as typed
`contents`; outputs always go back as raw_output_contents. Unary errors are gRPC status
with mosel.v1's codes; on ModelStreamInfer a refused request is answered in the stream
(error_message "<CODE>: <message>") and the stream goes on.

Importing this module loads the generated `inference` messages into the default protobuf
pool; a process cannot hold those and another copy of them (tritonclient.grpc's) at once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import grpc
from google.protobuf import json_format

from mosel.errors import MAX_STRING_CHARS, InvalidArgument, check_length, grpc_errors, status_of
from mosel.frontends import conversions as conv
from mosel.frontends.backend import UNBOUNDED_CALL_S
from mosel.frontends.core import STREAM_MAX_OUTSTANDING, KServeCore
from mosel.server.streams import ReplyStream
from mosel.protocol.kserve import grpc_service_pb2 as pb
from mosel.protocol.kserve import grpc_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = "inference.GRPCInferenceService"
add_to_server = pb_grpc.add_GRPCInferenceServiceServicer_to_server
# Requests of one ModelStreamInfer stream served at once; more wait in the stream's own queue.
STREAM_CONCURRENCY = 32  # (at most core.STREAM_MAX_OUTSTANDING read at once)


def remaining_s(context) -> float | None:
    """The caller's deadline; None without one (gRPC then reports a remainder of centuries)."""
    remaining = context.time_remaining()
    return None if remaining is None or remaining > UNBOUNDED_CALL_S else remaining


def parameter_value(p: pb.InferParameter) -> Any:
    which = p.WhichOneof("parameter_choice")
    return None if which is None else getattr(p, which)


def parameters_of(params) -> dict[str, Any]:
    return {key: parameter_value(value) for key, value in params.items()}


def set_parameter(target: pb.InferParameter, value: Any) -> None:
    if isinstance(value, bool):
        target.bool_param = value
    elif isinstance(value, int):
        target.int64_param = value
    elif isinstance(value, float):
        target.double_param = value
    else:
        target.string_param = str(value)


def input_tensors(request: pb.ModelInferRequest) -> list[conv.InputTensor]:
    """The request's inputs, each with its raw bytes or typed elements (sizes checked later)."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument("raw_input_contents",
                              f"{len(raw)} entries for {len(request.inputs)} inputs: give one per input, in order")
    out = []
    for i, t in enumerate(request.inputs):
        check_length(t.name, f"inputs[{i}].name")  # echoed in every refusal below
        field = f"inputs[{t.name}]"
        conv.check_datatype(t.datatype, f"{field}.datatype")
        shape = conv.check_shape(t.shape, f"{field}.shape")
        typed = [(f.name, values) for f, values in t.contents.ListFields()]
        if raw:
            if typed:
                raise InvalidArgument(f"{field}.contents", "set together with raw_input_contents; use one or the other")
            out.append(conv.InputTensor(t.name, t.datatype, shape, raw=raw[i], data_field=f"raw_input_contents[{i}]"))
            continue
        expected = conv.TYPED_CONTENTS.get(t.datatype)
        if not typed:
            if math.prod(shape) == 0:
                out.append(conv.InputTensor(t.name, t.datatype, shape, raw=b""))
                continue
            raise InvalidArgument(f"{field}.contents", "no data: set contents."
                                  f"{expected or '(none: ' + t.datatype + ' travels raw)'} or raw_input_contents")
        if expected is None:
            raise InvalidArgument(f"{field}.contents", f"{t.datatype} has no typed contents; send raw_input_contents")
        names = [name for name, _ in typed]
        if names != [expected]:
            raise InvalidArgument(f"{field}.contents", f"{t.datatype} elements go in {expected}, got {names}")
        array = conv.array_from_typed(t.datatype, shape, typed[0][1], f"{field}.contents.{expected}")
        out.append(conv.InputTensor(t.name, t.datatype, shape, array=array))
    return out


class KServeServicer(pb_grpc.GRPCInferenceServiceServicer):
    """KServe v2 gRPC over a SelectionServicer (in-process) or a mosel.v1 stub (remote)."""

    def __init__(self, target=None, *, ready: Callable[[], bool] | None = None, core: KServeCore | None = None):
        if core is None and target is None:
            raise TypeError("KServeServicer needs a selection servicer, a mosel.v1 stub or a KServeCore")
        self.core = core or KServeCore(target, ready=ready)

    def set_ready(self, ready: bool) -> None:
        self.core.set_ready(ready)

    # ---- health and metadata -------------------------------------------------------------------
    @grpc_errors
    def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=self.core.live())

    @grpc_errors
    def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.core.ready())

    @grpc_errors
    def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=self.core.model_ready(request.name, request.version))

    @grpc_errors
    def ServerMetadata(self, request, context):
        meta = self.core.server_metadata()
        return pb.ServerMetadataResponse(name=meta["name"], version=meta["version"], extensions=meta["extensions"])

    @grpc_errors
    def ModelMetadata(self, request, context):
        meta = self.core.model_metadata(request.name, request.version)
        tensors = lambda items: [pb.ModelMetadataResponse.TensorMetadata(**t) for t in items]  # noqa: E731
        return pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=meta["platform"],
                                        inputs=tensors(meta["inputs"]), outputs=tensors(meta["outputs"]))

    @grpc_errors
    def ModelConfig(self, request, context):
        config = self.core.model_config(request.name, request.version)
        return pb.ModelConfigResponse(config=json_format.ParseDict(config, pb.ModelConfigResponse().config))

    @grpc_errors
    def ModelStatistics(self, request, context):
        return json_format.ParseDict(self.core.statistics(request.name, request.version), pb.ModelStatisticsResponse())

    # ---- inference -----------------------------------------------------------------------------
    def _infer(self, request: pb.ModelInferRequest, rpc_remaining_s: float | None) -> pb.ModelInferResponse:
        t0 = time.perf_counter_ns()
        inputs = input_tensors(request)
        for i, o in enumerate(request.outputs):
            check_length(o.name, f"outputs[{i}].name")
            if "classification" in o.parameters:
                raise InvalidArgument(f"outputs[{o.name}].parameters[classification]", "not supported")
        outcome = self.core.infer(request.model_name, request.model_version, request.id, inputs,
                                  parameters_of(request.parameters), [o.name for o in request.outputs],
                                  rpc_remaining_s=rpc_remaining_s, decode_ns=time.perf_counter_ns() - t0)
        response = pb.ModelInferResponse(model_name=outcome.model, model_version="1", id=request.id)
        for key, value in outcome.parameters.items():
            set_parameter(response.parameters[key], value)
        for out in outcome.outputs:
            response.outputs.add(name=out.name, datatype=out.datatype, shape=out.shape)
            response.raw_output_contents.append(out.raw())
        return response

    @grpc_errors
    def ModelInfer(self, request, context):
        return self._infer(request, remaining_s(context))

    def ModelStreamInfer(self, request_iterator, context):
        """One response per request, in completion order; errors go in the stream."""
        pool = ThreadPoolExecutor(max_workers=STREAM_CONCURRENCY, thread_name_prefix="kserve-stream")
        stream = ReplyStream(context, STREAM_MAX_OUTSTANDING)

        def serve(request: pb.ModelInferRequest) -> None:
            try:
                reply = pb.ModelStreamInferResponse(infer_response=self._infer(request, remaining_s(context)))
            except Exception as exc:  # noqa: BLE001 - becomes an error entry of the stream
                reply = stream_error(request, exc)
            stream.finished(reply)

        def read() -> None:
            try:
                while stream.take_slot():
                    request = next(request_iterator, None)
                    if request is None:
                        stream.no_request()
                        break
                    stream.started()
                    try:
                        pool.submit(serve, request)
                    except Exception:
                        stream.abandoned()
                        raise
            except grpc.RpcError:
                pass  # the client went away
            except Exception as exc:  # noqa: BLE001 - e.g. a pool shut down under us
                stream.reply(stream_error(pb.ModelInferRequest(), exc))
            finally:
                stream.done_reading()

        threading.Thread(target=read, name="kserve-stream-reader", daemon=True).start()
        try:
            yield from stream.replies()
        finally:
            pool.shutdown(wait=False)


def stream_error(request: pb.ModelInferRequest, exc: BaseException) -> pb.ModelStreamInferResponse:
    code, message = status_of(exc)
    if code == grpc.StatusCode.INTERNAL:
        log.error("ModelStreamInfer request %r failed", request.id, exc_info=exc)
    # echo the request's names unless one was refused for its length
    echo = all(len(v) <= MAX_STRING_CHARS for v in (request.model_name, request.model_version, request.id))
    answer = pb.ModelInferResponse(model_name=request.model_name, model_version=request.model_version,
                                   id=request.id) if echo else pb.ModelInferResponse()
    answer.parameters["error_code"].int64_param = code.value[0]
    answer.parameters["error_status"].string_param = code.name
    return pb.ModelStreamInferResponse(error_message=f"{code.name}: {message}", infer_response=answer)
