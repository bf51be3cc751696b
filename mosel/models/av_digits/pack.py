"""AV-Digits: spoken digit (audio) + handwritten digit (image) + synthetic video, 10 classes.

A small late-fusion model built from the offline data (see mosel.models.av_digits.dataset for the
task, its AV-MNIST-style pairing by class and its disjoint splits). **The video modality
is synthetic**: a handwritten still moved along a random trajectory and degraded frame
by frame; it stands in for a real camera stream.

Encoders (all exact on padded batches: an item's embedding does not depend on the
other items in its batch):
- audio: a 1-D conv stack over log-mel frames, masked after every layer, masked
  mean+max pooling over time;
- image: a small 2-D CNN (strided convs, batch norm, linear over the 7x7 map);
- video: a per-frame 2-D CNN run on the valid frames only, a masked temporal conv and
  masked mean+max pooling. It does most of the compute: ~78% of the full
  configuration's multiply-accumulates with 8 frames (default size), ~70% of its CPU
  latency at batch 32 (less at batch 1, where per-op overhead dominates).
Batch norm uses running statistics in eval mode, so serving stays per item.
Fusion: per-modality projections, masked mean over present modalities, plus the
presence mask, into an MLP. Any non-empty subset works.
Under torch.export (mosel.repository.artifacts) the modules take a shape-static path with the
same results: no value checks, and the video CNN runs on every frame (padding included).

Size presets scale width/depth: "tiny" (tests), "default" (CPU), "large" (GPU).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mosel.models.av_digits import digits as _digits
from mosel.models.av_digits import fsdd as _fsdd
from mosel.models.pack import InvalidInput, ModalitySpec, ModelPack, TensorSpec

NAME = "av-digits"
LABELS = tuple(str(d) for d in range(10))
FRAMES = 8
SIDE = _digits.PADDED  # 28
AUDIO_MAX_STEPS = 256  # ~4.1 s of audio at a 16 ms hop
VIDEO_MAX_STEPS = 64

# Training-set statistics (mosel.models.av_digits.dataset.normalisation_stats(seed=0), checked by a
# test): packing applies (value - mean) / std with these.
AUDIO_MEAN, AUDIO_STD = 1.3055, 1.6175
IMAGE_MEAN, IMAGE_STD = 24.31, 50.10
VIDEO_MEAN, VIDEO_STD = 42.89, 61.95

PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"width": 8, "depth": 1, "embed_dim": 32},
    "default": {"width": 16, "depth": 1, "embed_dim": 64},
    "large": {"width": 32, "depth": 2, "embed_dim": 128},
}


# ------------------------------------------------------------------ helpers


def _is_exporting() -> bool:
    return torch.compiler.is_exporting()


# TorchScript cannot compile torch.compiler.is_exporting (it reads a Python global), so it gets
# an unused stub; the stub's signature needs a real annotation, not this module's postponed one.
_is_exporting.__annotations__["return"] = bool
_is_exporting = torch.jit.unused(_is_exporting)


def _static_path() -> bool:
    """True while torch.export traces a module (mosel.repository.artifacts): take the shape-static
    path, without data-dependent Python branches or value checks (serving validates inputs
    before they reach a model). Eager and TorchScript (which compiles `_is_exporting` to an
    unused stub that the `is_scripting` test never reaches) keep the eager path."""
    return not torch.jit.is_scripting() and _is_exporting()


def _check_lengths(x: torch.Tensor, lengths: torch.Tensor, row: int, name: str) -> None:
    if x.dim() != 3 or x.shape[2] != row:
        raise ValueError(f"{name} encoder expects x of shape [K, L, {row}], got {list(x.shape)}")
    if lengths.dim() != 1 or lengths.shape[0] != x.shape[0]:
        raise ValueError(f"{name} encoder expects lengths of shape [{x.shape[0]}], got {list(lengths.shape)}")
    if x.shape[0] and not _static_path() and (int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1]):
        raise ValueError(f"{name} encoder: lengths must be in 1..{x.shape[1]}")


def _step_mask(lengths: torch.Tensor, steps: int, device: torch.device) -> torch.Tensor:
    return torch.arange(steps, device=device)[None, :] < lengths.to(device)[:, None]  # [K, L]


def _masked_mean_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """h [K, C, L], mask [K, L] -> [K, 2C]: mean and max over valid steps only."""
    m = mask[:, None, :]
    count = mask.sum(dim=1, keepdim=True).clamp_min(1).to(h.dtype)  # [K, 1]
    mean = torch.where(m, h, torch.zeros((), dtype=h.dtype, device=h.device)).sum(dim=2) / count
    peak = torch.where(m, h, torch.full((), float("-inf"), dtype=h.dtype, device=h.device)).amax(dim=2)
    return torch.cat([mean, peak], dim=1)


class MaskedConv1dStack(nn.Module):
    """Conv1d layers ("same" padding) over time, zeroing padded steps after every layer,
    so a padded step never leaks into a valid one: exact for any padding."""

    def __init__(self, channels_in: int, channels: int, layers: int, kernel: int):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(channels_in if i == 0 else channels, channels, kernel, padding=kernel // 2) for i in range(layers)
        )

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # h [K, C, L]
        m = mask[:, None, :].to(h.dtype)
        h = h * m
        for conv in self.convs:
            h = F.relu(conv(h)) * m
        return h


def _cnn(c1: int, c2: int, depth: int, out: int) -> nn.Sequential:
    """[N, 784] (28x28 frames) -> [N, out]: strided convs 28 -> 14 -> 7 (plus depth-1 convs
    at 7x7), batch norm (per-item in eval mode), then a linear layer over the 7x7 map."""
    layers: list[nn.Module] = [
        nn.Unflatten(1, (1, SIDE, SIDE)),
        nn.Conv2d(1, c1, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(c1), nn.ReLU(),
        nn.Conv2d(c1, c2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(),
    ]
    for _ in range(depth - 1):
        layers += [nn.Conv2d(c2, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.ReLU()]
    layers += [nn.Flatten(), nn.Linear(49 * c2, out)]
    return nn.Sequential(*layers)


# ------------------------------------------------------------------ encoders


class AudioEncoder(nn.Module):
    def __init__(self, n_mels: int, width: int, depth: int, embed_dim: int):
        super().__init__()
        self.n_mels = n_mels
        channels = 2 * width
        self.convs = MaskedConv1dStack(n_mels, channels, layers=1 + depth, kernel=5)
        self.out = nn.Linear(2 * channels, embed_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        _check_lengths(x, lengths, self.n_mels, "audio")
        mask = _step_mask(lengths, x.shape[1], x.device)
        h = self.convs(x.transpose(1, 2), mask)
        return self.out(_masked_mean_max(h, mask))


class ImageEncoder(nn.Module):
    def __init__(self, width: int, depth: int, embed_dim: int):
        super().__init__()
        self.row = SIDE * SIDE
        self.frame = _cnn(width, 2 * width, depth, embed_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        _check_lengths(x, lengths, self.row, "image")
        if x.shape[1] != 1:
            raise ValueError(f"image encoder expects one step per item, got L={x.shape[1]}")
        return self.frame(x.reshape(-1, self.row))


class VideoEncoder(nn.Module):
    def __init__(self, width: int, depth: int, embed_dim: int):
        super().__init__()
        # wider first stage and narrower second stage than the image CNN; with 8 frames per
        # clip this is ~75% of the full configuration's MACs and ~2/3 of its CPU latency at batch 32
        self.row = SIDE * SIDE
        self.frame = _cnn(width + width // 4, width, depth, embed_dim)
        self.temporal = MaskedConv1dStack(embed_dim, embed_dim, layers=1, kernel=3)
        self.out = nn.Linear(2 * embed_dim, embed_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        _check_lengths(x, lengths, self.row, "video")
        k, steps = x.shape[0], x.shape[1]
        mask = _step_mask(lengths, steps, x.device)
        # no padding (the common case), or exporting: the CNN on every frame. Exported graphs
        # always take this path: the padded frames' features are zeroed by the temporal stack's
        # mask before they are read, so valid frames get the same values as the gather below.
        if _static_path() or bool(mask.all()):
            h = self.frame(x.reshape(k * steps, -1)).reshape(k, steps, -1)
        else:
            feats = self.frame(x[mask])  # valid frames only: padding costs nothing; [N, D]
            h = feats.new_zeros(k, steps, feats.shape[1])
            h[mask] = feats
        h = self.temporal(h.transpose(1, 2), mask)
        return self.out(_masked_mean_max(h, mask))


class FusionHead(nn.Module):
    """forward(emb [B, M, D], present bool [B, M]) -> logits [B, C] for any non-empty subset.

    Absent rows are never read (masked with `where`, so NaN/garbage there is harmless)."""

    def __init__(self, modalities: int, embed_dim: int, hidden: int, classes: int):
        super().__init__()
        self.modalities = modalities
        self.embed_dim = embed_dim
        self.proj = nn.ModuleList(nn.Linear(embed_dim, hidden) for _ in range(modalities))
        self.mlp = nn.Sequential(
            nn.LayerNorm(hidden + modalities), nn.Linear(hidden + modalities, hidden), nn.ReLU(), nn.Linear(hidden, classes)
        )

    def forward(self, emb: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        if emb.dim() != 3 or emb.shape[1] != self.modalities or emb.shape[2] != self.embed_dim:
            raise ValueError(f"fusion head expects emb [B, {self.modalities}, {self.embed_dim}], got {list(emb.shape)}")
        if present.shape != emb.shape[:2]:
            raise ValueError(f"fusion head expects present [B, {self.modalities}], got {list(present.shape)}")
        present = present.to(device=emb.device, dtype=torch.bool)
        if emb.shape[0] and not _static_path() and not bool(present.any(dim=1).all()):
            rows: list[int] = torch.nonzero(~present.any(dim=1)).flatten().tolist()
            raise ValueError(f"fusion head: rows {rows[:10]} have no present modality")
        h = torch.stack([F.relu(p(emb[:, i])) for i, p in enumerate(self.proj)], dim=1)  # [B, M, H]
        m = present[..., None]
        pooled = torch.where(m, h, torch.zeros((), dtype=h.dtype, device=h.device)).sum(1)
        pooled = pooled / present.sum(1, keepdim=True).to(h.dtype)
        return self.mlp(torch.cat([pooled, present.to(h.dtype)], dim=1))


# ------------------------------------------------------------------ the pack

# Training hyper-parameters per size preset (epochs chosen so "default" trains in under
# 3 minutes on 2 CPU cores and "tiny" in well under a minute).
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"epochs": 8, "batch_size": 64, "lr": 4e-3, "weight_decay": 1e-4},
    "default": {"epochs": 16, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-4},
    "large": {"epochs": 30, "batch_size": 128, "lr": 2e-3, "weight_decay": 1e-4},
}


class AVDigitsPack(ModelPack):
    """The AV-Digits model pack. Size knobs: preset, width, depth, embed_dim, frames."""

    def __init__(
        self,
        preset: str = "default",
        width: int | None = None,
        depth: int | None = None,
        embed_dim: int | None = None,
        frames: int = FRAMES,
    ):
        if preset not in PRESETS:
            raise ValueError(f"unknown size preset {preset!r}; choose from {sorted(PRESETS)}")
        knobs = dict(PRESETS[preset])
        for key, value in (("width", width), ("depth", depth), ("embed_dim", embed_dim)):
            if value is not None:
                if int(value) < 1:
                    raise ValueError(f"{key} must be >= 1, got {value}")
                knobs[key] = int(value)
        if not 1 <= int(frames) <= VIDEO_MAX_STEPS:
            raise ValueError(f"frames must be in 1..{VIDEO_MAX_STEPS}, got {frames}")
        knobs["frames"] = int(frames)
        modalities = (
            ModalitySpec(
                "audio",
                TensorSpec("float32", (-1, _fsdd.N_MELS), sequence=True, mean=AUDIO_MEAN, std=AUDIO_STD,
                           max_steps=AUDIO_MAX_STEPS),
                f"spoken digit (FSDD, 8 kHz, noisy) as a log-mel spectrogram: frames x {_fsdd.N_MELS} mels, "
                f"{_fsdd.HOP / _fsdd.SAMPLE_RATE * 1000:.0f} ms hop",
            ),
            ModalitySpec(
                "image",
                TensorSpec("uint8", (SIDE, SIDE), mean=IMAGE_MEAN, std=IMAGE_STD),
                "handwritten digit, 20x20 centred on 28x28, degraded (noise, occlusion)",
            ),
            ModalitySpec(
                "video",
                TensorSpec("uint8", (-1, SIDE, SIDE), sequence=True, mean=VIDEO_MEAN, std=VIDEO_STD,
                           max_steps=VIDEO_MAX_STEPS),
                f"{knobs['frames']} frames of 28x28 of a second handwritten digit with synthetic motion "
                "(translation, rotation, blur, moving occluder, noise)",
            ),
        )
        super().__init__(name=NAME, embed_dim=knobs["embed_dim"], labels=LABELS, modalities=modalities,
                         size={"preset": preset, **knobs})
        self.width = knobs["width"]
        self.depth = knobs["depth"]
        self.frames = knobs["frames"]

    # -- builders

    def build_encoder(self, modality: str) -> nn.Module:
        if modality == "audio":
            return AudioEncoder(_fsdd.N_MELS, self.width, self.depth, self.embed_dim)
        if modality == "image":
            return ImageEncoder(self.width, self.depth, self.embed_dim)
        if modality == "video":
            return VideoEncoder(self.width, self.depth, self.embed_dim)
        raise KeyError(f"model {self.name!r} has no modality {modality!r}; it has {list(self.modality_names)}")

    def build_fusion_head(self) -> nn.Module:
        return FusionHead(len(self.modalities), self.embed_dim, hidden=2 * self.embed_dim, classes=self.num_classes)

    # -- inputs

    def preprocess(self, modality: str, raw: Any, field: str | None = None) -> np.ndarray:
        """Raw input -> wire-ready item (no corruption is added here).

        audio: a WAV path (8 kHz mono 16-bit) or a 1-D int16 waveform at 8 kHz (or float in
        [-1, 1]); image: uint8 20x20 or 28x28; video: a list/array of uint8 20x20 or 28x28
        frames. Raises InvalidInput naming `field` (default: the modality name)."""
        field = field or modality
        if modality == "audio":
            item = self._audio(raw, field)
        elif modality == "image":
            item = self._picture(raw, field, "image")
        elif modality == "video":
            item = self._video(raw, field)
        else:
            raise InvalidInput("modality", f"model {self.name!r} has no modality {modality!r}")
        self.validate_item(modality, item, field)
        return item

    def _audio(self, raw: Any, field: str) -> np.ndarray:
        if isinstance(raw, (str, os.PathLike)):
            try:
                raw = _fsdd.read_wav(Path(raw))
            except Exception as exc:  # OSError, EOFError, ValueError, wave.Error
                raise InvalidInput(field, f"cannot read WAV {str(raw)!r}: {exc}") from None
        arr = np.asarray(raw)
        if arr.ndim != 1:
            raise InvalidInput(field, f"audio waveform must be 1-D (mono samples), got shape {list(arr.shape)}")
        if arr.dtype == np.int16:
            wave = arr
        elif arr.dtype in (np.float32, np.float64):
            if arr.size and (not np.isfinite(arr).all() or np.abs(arr).max() > 1.0):
                raise InvalidInput(field, "float audio must be finite and within [-1, 1]")
            wave = np.rint(arr * 32767.0).astype(np.int16)
        else:
            raise InvalidInput(field, f"audio waveform must be int16 (or float in [-1, 1]), got {arr.dtype}")
        longest = _fsdd.min_samples_for(AUDIO_MAX_STEPS)
        if wave.shape[0] > longest:
            raise InvalidInput(
                field, f"audio is {wave.shape[0] / _fsdd.SAMPLE_RATE:.2f} s at 8 kHz; at most "
                f"{longest / _fsdd.SAMPLE_RATE:.2f} s ({AUDIO_MAX_STEPS} frames)"
            )
        if wave.shape[0] == 0:
            raise InvalidInput(field, "audio waveform is empty")
        return _fsdd.log_mel(_fsdd.to_float(wave))

    def _picture(self, raw: Any, field: str, what: str) -> np.ndarray:
        arr = np.asarray(raw)
        if arr.dtype != np.uint8:
            raise InvalidInput(field, f"{what} must be uint8 (0..255), got {arr.dtype}")
        if arr.ndim != 2:
            raise InvalidInput(field, f"{what} must be a 2-D grayscale array, got shape {list(arr.shape)}")
        if arr.shape == (_digits.CELL, _digits.CELL):
            return _digits.pad_to(arr, SIDE)
        if arr.shape == (SIDE, SIDE):
            return np.ascontiguousarray(arr)
        raise InvalidInput(field, f"{what} must be 20x20 or 28x28, got {arr.shape[0]}x{arr.shape[1]}")

    def _video(self, raw: Any, field: str) -> np.ndarray:
        if isinstance(raw, np.ndarray) and raw.ndim != 3:
            raise InvalidInput(field, f"video must be [frames, height, width], got shape {list(raw.shape)}")
        frames = list(raw)
        if not frames:
            raise InvalidInput(field, "video needs at least one frame")
        if len(frames) > VIDEO_MAX_STEPS:
            raise InvalidInput(field, f"video has {len(frames)} frames; at most {VIDEO_MAX_STEPS}")
        return np.stack([self._picture(f, f"{field}[{i}]", "video frame") for i, f in enumerate(frames)])

    # -- data hooks (training, evaluation; test_samples comes from ModelPack on top of `dataset`)

    def dataset(self, split: str, seed: int = 0, data_dir: str | os.PathLike | None = None):
        """Paired samples (mosel.models.av_digits.dataset): "train" drawn with `seed`, "test" with
        TEST_SEED + seed (seed 0: the evaluation draw, same pairing and noise as `mosel eval`)."""
        from mosel.models.av_digits.dataset import pack_dataset

        return pack_dataset(split, seed=seed, data_dir=data_dir, frames=self.frames)

    def data_description(self) -> dict[str, Any]:
        from mosel.models.av_digits.dataset import split_description

        return split_description()

    def training_defaults(self) -> dict[str, Any]:
        return dict(TRAIN_PRESETS.get(self.size.get("preset", "default"), TRAIN_PRESETS["default"]))
