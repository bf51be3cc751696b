"""SelectionService servicer: turns wire calls into jobs and waits for their answers."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout

import grpc

from mosel.errors import (MAX_STRING_CHARS, DeadlineExceeded, InvalidArgument, InvalidInput, MoselError, NotFound,
                          check_length, grpc_errors, status_of)
from mosel.modalities import config_modalities
from mosel.engine.dispatcher import Dispatcher
from mosel.server.streams import ReplyStream
from mosel.scheduling.job import Job
from mosel.engine.requests import build_job
from mosel.engine.stats import ServingStats
from mosel.protocol.v1 import selection_pb2, selection_pb2_grpc, tensor_pb2

log = logging.getLogger(__name__)

# Extra wait beyond a job's deadline before the handler gives up on its answer;
# the dispatcher settles every job itself, this only guards against a wedged encoder.
ANSWER_GRACE_S = 5.0
# Replies of one InferStream read but not yet sent. At the bound the stream's reader stops
# reading, so a client that does not read its answers is held back by gRPC flow control
# instead of making the server buffer replies (and jobs) without limit.
STREAM_MAX_OUTSTANDING = 64


class SelectionServicer(selection_pb2_grpc.SelectionServiceServicer):
    def __init__(self, dispatchers: dict[str, Dispatcher], policy: str,
                 default_budget_ms: float = 1000.0, max_job_size: int = 32):
        self.dispatchers = dispatchers
        self.policy = policy
        self.default_budget_ms = default_budget_ms
        self.max_job_size = max_job_size

    # ---- helpers ------------------------------------------------------------------------
    def _dispatcher(self, model: str) -> Dispatcher:
        if not model:
            raise NotFound(f"model: empty model name; served models: {sorted(self.dispatchers)}")
        check_length(model, "model")
        try:
            return self.dispatchers[model]
        except KeyError:
            raise NotFound(f"model: unknown model {model!r}; served models: {sorted(self.dispatchers)}") from None

    def _job_from_request(self, request: selection_pb2.InferRequest, rpc_remaining: float | None) -> Job:
        return self._build(request.model, request.id, [(request.id, request.inputs)], request.slo,
                           rpc_remaining, item_field="")

    def _job_from_job_request(self, request: selection_pb2.InferJobRequest, rpc_remaining: float | None) -> Job:
        return self._build(request.model, request.job_id, [(it.id, it.inputs) for it in request.items],
                           request.slo, rpc_remaining, item_field="items")

    def _build(self, model: str, job_id: str, items, slo, rpc_remaining: float | None, item_field: str) -> Job:
        """Validate into a Job; refusals count in the model's statistics (errors by code)."""
        d = self._dispatcher(model)
        try:
            return build_job(d.model, job_id, items, slo, default_budget_ms=self.default_budget_ms,
                             max_job_size=self.max_job_size, rpc_remaining_s=rpc_remaining, item_field=item_field)
        except (MoselError, InvalidInput) as exc:
            d.stats.received(max(1, len(items)))
            d.stats.failed(status_of(exc)[0].name, max(1, len(items)), "validation")
            raise

    def _run(self, job: Job) -> selection_pb2.InferJobResponse:
        self.dispatchers[job.model.name].submit(job)
        try:
            return job.future.result(timeout=max(job.remaining_s(), 0) + ANSWER_GRACE_S)
        except FutureTimeout:
            raise DeadlineExceeded("no answer within the deadline") from None

    # ---- RPCs -----------------------------------------------------------------------------
    @grpc_errors
    def Infer(self, request, context):
        job = self._job_from_request(request, context.time_remaining())
        return self._run(job).results[0]

    @grpc_errors
    def InferJob(self, request, context):
        return self._run(self._job_from_job_request(request, context.time_remaining()))

    def InferStream(self, request_iterator, context):
        """Answers in completion order; a bad message yields an error entry, the stream goes on."""
        stream = ReplyStream(context, STREAM_MAX_OUTSTANDING)

        def settle(message_id: str, is_job: bool, future) -> None:
            try:
                response = future.result()
                msg = selection_pb2.StreamResponse(job=response) if is_job else \
                    selection_pb2.StreamResponse(response=response.results[0])
            except Exception as exc:  # noqa: BLE001 - becomes a stream error entry
                msg = _stream_error(message_id, exc)
            stream.finished(msg)

        def read() -> None:
            try:
                while stream.take_slot():
                    message = next(request_iterator, None)
                    if message is None:
                        stream.no_request()
                        break
                    kind = message.WhichOneof("kind")
                    message_id = message.job.job_id if kind == "job" else message.request.id
                    try:
                        if kind == "job":
                            job = self._job_from_job_request(message.job, None)
                        elif kind == "request":
                            job = self._job_from_request(message.request, None)
                        else:
                            raise InvalidArgument("kind", "empty StreamRequest: set request or job")
                        stream.started()
                        try:
                            self.dispatchers[job.model.name].submit(job)
                        except Exception:
                            stream.abandoned()
                            raise
                        job.future.add_done_callback(lambda f, i=message_id, j=(kind == "job"): settle(i, j, f))
                    except Exception as exc:  # noqa: BLE001
                        stream.reply(_stream_error(message_id, exc))
            except grpc.RpcError:
                pass  # client went away
            finally:
                stream.done_reading()

        threading.Thread(target=read, name="stream-reader", daemon=True).start()
        yield from stream.replies()

    @grpc_errors
    def GetModelMetadata(self, request, context):
        model = self._dispatcher(request.model).model
        pack, prof = model.pack, model.profiles
        configs = []
        for name in model.configurations:
            detail = prof.accuracy_detail.get(name)
            configs.append(selection_pb2.ConfigurationInfo(
                name=name, modalities=list(config_modalities(name)), accuracy=prof.accuracy.get(name, 0.0),
                accuracy_ci_low=detail.ci_low if detail else 0.0, accuracy_ci_high=detail.ci_high if detail else 0.0,
                samples=detail.samples if detail else 0, latency_ms_b1=model.latency_b1_ms(name)))
        return selection_pb2.ModelMetadata(
            name=model.name,
            modalities=[selection_pb2.ModalityInfo(
                name=m.name, description=m.description,
                spec=tensor_pb2.TensorSpec(dtype=m.spec.dtype, shape=list(m.spec.shape), sequence=m.spec.sequence,
                                           max_steps=m.spec.max_steps)) for m in pack.modalities],
            configurations=configs, labels=list(pack.labels),
            accuracy_profile_version=prof.accuracy_version, latency_profile_version=prof.latency_version,
            strategy_matrix_version=prof.matrix_version, tuning_version=prof.tuning_version,
            policy=self.policy, max_job_size=self.max_job_size, weights_sha256=model.digest,
            model_version=str((model.manifest.get("repository") or {}).get("version", "")))

    @grpc_errors
    def GetStats(self, request, context):
        chosen = [self._dispatcher(request.model)] if request.model else list(self.dispatchers.values())
        snap = ServingStats.combined([d.stats for d in chosen])
        depth = sum(d.queue_depth() for d in chosen)
        stats = selection_pb2.Stats(queue_depth=depth, policy=self.policy,
                                    pipeline_depth=max(d.pipeline_depth for d in chosen), **snap)
        stats.modalities_unavailable.extend(sorted(set().union(*(d.encoders.down_modalities() for d in chosen))))
        now = time.monotonic()  # the dispatchers' clock
        stats.planning_headroom_ms = 1000.0 * max(d.policy.planning_headroom_s(now) for d in chosen)
        for d in chosen:
            costs = d.measured_costs()
            if costs is None:
                continue
            for lane, fit in costs["lanes"].items():
                stats.lanes.append(_lane_cost(f"{d.model.name}/{lane}", fit))
            if len(chosen) == 1:  # one finishing step per model: only meaningful for one
                stats.finishing.CopyFrom(_lane_cost(d.model.name, costs["finishing"]))
        return stats


def _lane_cost(name: str, fit: dict) -> selection_pb2.LaneCost:
    return selection_pb2.LaneCost(name=name, overhead_ms=fit["overhead_ms"], scale=fit["scale"],
                                  noise=fit["noise"], samples=fit["samples"])


def _stream_error(message_id: str, exc: BaseException) -> selection_pb2.StreamResponse:
    code, message = status_of(exc)
    if len(message_id) > MAX_STRING_CHARS:  # refused for its length: not echoed back
        message_id = ""
    return selection_pb2.StreamResponse(error=selection_pb2.StreamError(id=message_id, code=code.value[0], message=message))
