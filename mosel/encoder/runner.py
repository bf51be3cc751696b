"""EncoderRunner: items of one modality in, embeddings out, one batch at a time per device.

Kept free of gRPC so the profiler and tests can drive the same code path the
service runs: validate -> fused drop-and-pack (cast + normalise) -> encoder forward.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from mosel.ops import batching
from mosel.errors import InvalidArgument
from mosel.protocol import tensors as wire
from mosel.repository.source import OpenedModel, open_model

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class EncodeResult:
    embeddings: np.ndarray  # float32 [K, D]
    queue_us: int
    compute_us: int


class EncoderRunner:
    def __init__(self, model: str, modality: str, device: str = "cpu", precision: str = "fp32",
                 max_batch: int = 32, home=None, repository=None, version: int | None = None,
                 opened: OpenedModel | None = None):
        """`opened` (from open_model) skips finding the model again; else it is opened from
        `home` / `repository` (`version` pins a repository version)."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        opened = opened or open_model(model, home=home, repository=repository, version=version)
        self.model = model
        self.modality = modality
        self.device = torch.device(device)
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        # a repository model declares the largest batch its artifacts were exported for
        self.max_batch = min(max_batch, opened.manifest.get("max_batch", max_batch))
        self.opened = opened
        self.manifest = opened.manifest
        self.pack = opened.pack
        encoder = opened.encoder(modality, device=str(self.device))
        if self.dtype != torch.float32 and getattr(encoder, "float32_only", False):
            raise ValueError(f"{modality} encoder of {model!r} is a torch.export program, which computes in fp32 "
                             f"only; serve it at fp32 or export it with --format torchscript for {precision}")
        self.encoder = encoder.to(device=self.device, dtype=self.dtype).eval()
        self.spec = self.pack.modality(modality).spec
        self.warm = False
        # One batch at a time on the device: concurrent batches would only slow each other.
        self._device_lock = threading.Lock()
        # Reused packing output (guarded by the device lock): a fresh 30+ MB batch per call
        # costs more in page faults than the packing itself.
        self._pack_buffer = batching.PackBuffer()

    @property
    def device_name(self) -> str:
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        import platform

        return platform.processor() or platform.machine() or "cpu"

    def validate(self, items: list[np.ndarray], field: str = "items") -> None:
        if not items:
            raise InvalidArgument(field, "empty batch")
        if len(items) > self.max_batch:
            raise InvalidArgument(field, f"{len(items)} items exceed max batch {self.max_batch}")
        for i, item in enumerate(items):
            self.pack.validate_item(self.modality, item, field=f"{field}[{i}]")
            # NaN/inf would come back as NaN embeddings and poison the whole fused answer
            wire.check_finite(item, f"{field}[{i}]", self.spec.dtype)

    def encode(self, items: list[np.ndarray], frame_stride: int = 1) -> EncodeResult:
        """Validated items -> float32 embeddings [len(items), D]."""
        received = time.perf_counter()
        with self._device_lock:
            started = time.perf_counter()
            with torch.inference_mode():
                packed = batching.drop_and_pack(
                    items,
                    spec=self.spec,
                    frame_stride=max(1, frame_stride) if self.spec.sequence else 1,
                    out_dtype=self.dtype,
                    device=self.device,
                    buffer=self._pack_buffer,
                )
                emb = self.encoder(packed.x, packed.lengths)
                out = emb.float().cpu().numpy()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            done = time.perf_counter()
        return EncodeResult(out, int((started - received) * 1e6), int((done - started) * 1e6))

    def warm_up(self, batch_sizes=(1, 8)) -> None:
        """Run a few synthetic batches so the first real request does not pay for lazy init."""
        rng = np.random.default_rng(0)
        for b in batch_sizes:
            self.encode([synthetic_item(self.spec, rng) for _ in range(min(b, self.max_batch))])
        self.warm = True
        log.info("encoder %s/%s warm on %s (%s)", self.model, self.modality, self.device, self.precision)


def synthetic_item(spec, rng: np.random.Generator, steps: int | None = None) -> np.ndarray:
    """A random item matching `spec` (dynamic dims get `steps`, default 16 or max_steps)."""
    shape = []
    for axis, d in enumerate(spec.shape):
        if d == -1:
            d = steps or (min(16, spec.max_steps) if spec.max_steps else 16)
        shape.append(d)
    if np.dtype(spec.dtype).kind == "u":
        return rng.integers(0, 256, size=shape, dtype=np.uint8).astype(spec.dtype)
    return rng.standard_normal(shape).astype(spec.dtype)
