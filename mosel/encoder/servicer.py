"""EncoderService servicer: wire tensors in, wire embeddings out (logic in EncoderRunner)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from mosel.encoder.runner import EncoderRunner
from mosel.encoder.versions import EncoderVersions
from mosel.errors import DeadlineExceeded, InvalidArgument, NotFound, Unavailable, check_length, grpc_errors
from mosel.models.checkpoint import checkpoint_sha256
from mosel.protocol import tensors as wire
from mosel.protocol.v1 import encoder_pb2, encoder_pb2_grpc, tensor_pb2

if TYPE_CHECKING:
    from mosel.metrics.families import EncoderMetrics


class EncoderServicer(encoder_pb2_grpc.EncoderServiceServicer):
    def __init__(self, runner: EncoderRunner | EncoderVersions, fused_ops: bool, metrics: EncoderMetrics | None = None):
        self.versions = runner if isinstance(runner, EncoderVersions) else EncoderVersions(runner)
        self.fused_ops = fused_ops
        self.metrics = metrics
        self.draining = False

    @property
    def runner(self) -> EncoderRunner:
        """The runner of the weights served now."""
        return self.versions.current

    @grpc_errors
    def Encode(self, request: encoder_pb2.EncodeRequest, context: grpc.ServicerContext):
        r = self.runner
        for name in ("model", "modality", "model_digest"):  # echoed in refusals: bounded first
            check_length(getattr(request, name), name)
        if request.model != r.model:
            raise NotFound(f"model: this encoder serves {r.model!r}, not {request.model!r}")
        if request.modality != r.modality:
            raise NotFound(f"modality: this encoder serves {r.modality!r}, not {request.modality!r}")
        if self.draining or not r.warm:
            raise Unavailable("encoder is draining" if self.draining else "encoder is warming up")
        if request.frame_stride < 0:
            raise InvalidArgument("frame_stride", f"must be >= 0, got {request.frame_stride}")
        r = self.versions.runner_for(request.model_digest)
        items = [wire.decode(t, field=f"items[{i}]") for i, t in enumerate(request.items)]
        r.validate(items)
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded("deadline passed before the batch started")
        result = r.encode(items, frame_stride=request.frame_stride or 1)
        if self.metrics is not None:
            self.metrics.compute_seconds.labels(r.model, r.modality).observe(result.compute_us / 1e6)
            self.metrics.batch_size.labels(r.model, r.modality).observe(len(items))
        return encoder_pb2.EncodeResponse(
            embeddings=wire.encode(result.embeddings), compute_us=result.compute_us, queue_us=result.queue_us
        )

    @grpc_errors
    def Info(self, request, context):
        r = self.runner
        s = r.spec
        return encoder_pb2.EncoderInfo(
            model=r.model,
            modality=r.modality,
            device=str(r.device),
            device_name=r.device_name,
            precision=r.precision,
            max_batch=r.max_batch,
            warm=r.warm,
            embed_dim=r.pack.embed_dim,
            spec=tensor_pb2.TensorSpec(dtype=s.dtype, shape=list(s.shape), sequence=s.sequence, max_steps=s.max_steps),
            checkpoint_sha256=checkpoint_sha256(r.manifest),
            fused_ops=self.fused_ops,
        )
