"""The Sensor-Digits model pack: a spoken digit heard by two microphones and a handwritten
digit of the same class (see sensor_digits.data), 10 classes.

Encoders (exact on padded batches: an item's embedding does not depend on the others in
its batch, since padded steps are zeroed after every layer):
- spectrogram: a small residual 2-D CNN over the 32x32 band-energy image, global mean+max
  pooling -- the strong and the most expensive modality;
- waveform: a dilated temporal conv net (TCN) on raw 10 ms frames of the 2 kHz signal: a
  learned filterbank (conv over 3 frames = 60 samples), log compression, residual dilated
  convs, masked mean+max pooling over time -- the weak one;
- digit: an MLP on the 400 pixels -- cheap, in between.
Fusion: attention pooling. Each present modality becomes a token (projection, layer norm,
a learned modality embedding); a learned query attends over the present tokens only; the
pooled vector and the presence mask feed an MLP. Absent embeddings are never read.

Size knobs: preset ("tiny", "default", "large"), width, depth, embed_dim.
"""

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mosel.models.pack import InvalidInput, ModalitySpec, ModelPack, TensorSpec
from sensor_digits import data as _data

NAME = "sensor-digits"
LABELS = tuple(str(d) for d in range(10))

# packing normalises with these: waveform items are AGC-normalised to AGC_RMS (sensor_digits.data);
# digit: the degraded training images' mean and std
WAVE_STD = _data.AGC_RMS
DIGIT_MEAN, DIGIT_STD = 36.6, 56.0

PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"width": 8, "depth": 1, "embed_dim": 16},
    "default": {"width": 16, "depth": 1, "embed_dim": 48},
    "large": {"width": 32, "depth": 2, "embed_dim": 96},
}
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"epochs": 4, "batch_size": 64, "lr": 4e-3, "weight_decay": 1e-4},
    "default": {"epochs": 12, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-4},
    "large": {"epochs": 30, "batch_size": 128, "lr": 2e-3, "weight_decay": 1e-4},
}


# ------------------------------------------------------------------ export-friendly checks


@torch.jit.unused
def _exporting() -> bool:
    return torch.compiler.is_exporting()


def _checks_on() -> bool:
    """Value checks run eagerly and in TorchScript; torch.export traces shape-static code only."""
    return torch.jit.is_scripting() or not _exporting()


def _mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]  # [K, L]


# ------------------------------------------------------------------ encoders


class ResBlock2d(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.a = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(channels)
        self.b = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(h + self.bn_b(self.b(F.relu(self.bn_a(self.a(h))))))


class SpectrogramEncoder(nn.Module):
    """[K, 1, 32*32] -> [K, D]: stem, residual blocks at 32x32 and (after a stride) 16x16 and 8x8."""

    def __init__(self, width: int, depth: int, embed_dim: int):
        super().__init__()
        self.bands, self.columns = _data.BANDS, _data.COLUMNS
        stages: list[nn.Module] = [nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        channels = width
        for stage in range(2):
            stages += [nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(2 * channels), nn.ReLU()]
            channels *= 2
            stages += [ResBlock2d(channels) for _ in range(depth)]
        self.body = nn.Sequential(*stages)
        self.out = nn.Linear(2 * channels, embed_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != 1 or x.shape[2] != self.bands * self.columns:
            raise ValueError(f"spectrogram encoder expects x [K, 1, {self.bands * self.columns}]")
        h = self.body(x.reshape(x.shape[0], 1, self.bands, self.columns))
        return self.out(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1))


class WaveformEncoder(nn.Module):
    """[K, L, 20] raw frames + lengths -> [K, D]: learned filterbank, log compression, a
    masked residual dilated conv stack (dilations 1, 2, 4, ...), masked mean+max pooling."""

    def __init__(self, width: int, depth: int, embed_dim: int):
        super().__init__()
        channels = 2 * width
        self.frame = _data.FRAME
        self.filters = nn.Conv1d(self.frame, channels, 3, padding=1)
        self.gain = nn.Parameter(torch.ones(channels))  # of the per-item standardisation below
        self.shift = nn.Parameter(torch.zeros(channels))
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, 3, padding=2 ** i, dilation=2 ** i) for i in range(1 + depth)
        )
        self.out = nn.Linear(2 * channels, embed_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[2] != self.frame:
            raise ValueError(f"waveform encoder expects x [K, L, {self.frame}]")
        if _checks_on() and x.shape[0] > 0 and (int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1]):
            raise ValueError(f"waveform encoder: lengths must be in 1..{x.shape[1]}")
        valid = _mask(lengths, x.shape[1])
        m = valid[:, None, :].to(x.dtype)  # [K, 1, L]
        h = self.filters(x.transpose(1, 2) * m) * m
        h = torch.log1p(h.abs())  # energy-like, level-compressed filter outputs
        # standardise each item over its valid steps only (a GroupNorm would also see the padding)
        count = m.sum(dim=(1, 2), keepdim=True).clamp_min(1.0) * h.shape[1]
        mean = (h * m).sum(dim=(1, 2), keepdim=True) / count
        var = (((h - mean) * m) ** 2).sum(dim=(1, 2), keepdim=True) / count
        h = ((h - mean) / torch.sqrt(var + 1e-5) * self.gain[None, :, None] + self.shift[None, :, None]) * m
        for conv in self.convs:
            h = (h + F.relu(conv(h))) * m
        total = m.sum(dim=2).clamp_min(1.0)  # [K, 1]
        mean_t = h.sum(dim=2) / total
        peak = torch.where(valid[:, None, :], h, torch.full((), -1e4, dtype=h.dtype, device=h.device)).amax(dim=2)
        return self.out(torch.cat([mean_t, peak], dim=1))


class DigitEncoder(nn.Module):
    """[K, 1, 400] pixels -> [K, D]: an MLP (no convolution)."""

    def __init__(self, width: int, depth: int, embed_dim: int):
        super().__init__()
        self.pixels = _data.SIDE * _data.SIDE
        hidden = 8 * width
        layers: list[nn.Module] = [nn.Linear(self.pixels, hidden), nn.GELU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.GELU()]
        layers += [nn.LayerNorm(hidden), nn.Linear(hidden, embed_dim)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != 1 or x.shape[2] != self.pixels:
            raise ValueError(f"digit encoder expects x [K, 1, {self.pixels}]")
        return self.mlp(x.reshape(x.shape[0], self.pixels))


class AttentionFusion(nn.Module):
    """forward(emb [B, M, D], present bool [B, M]) -> logits [B, C] for any non-empty subset."""

    def __init__(self, modalities: int, embed_dim: int, hidden: int, classes: int):
        super().__init__()
        self.modalities, self.embed_dim, self.hidden = modalities, embed_dim, hidden
        self.proj = nn.ModuleList(nn.Linear(embed_dim, hidden) for _ in range(modalities))
        self.kind = nn.Parameter(torch.zeros(modalities, hidden))  # learned modality embeddings
        self.norm = nn.LayerNorm(hidden)
        self.query = nn.Parameter(torch.randn(hidden) / hidden**0.5)
        self.key = nn.Linear(hidden, hidden, bias=False)
        self.value = nn.Linear(hidden, hidden)
        self.mlp = nn.Sequential(nn.LayerNorm(hidden + modalities), nn.Linear(hidden + modalities, hidden), nn.GELU(),
                                 nn.Linear(hidden, classes))

    def forward(self, emb: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        if emb.dim() != 3 or emb.shape[1] != self.modalities or emb.shape[2] != self.embed_dim:
            raise ValueError(f"fusion head expects emb [B, {self.modalities}, {self.embed_dim}]")
        if present.dim() != 2 or present.shape[0] != emb.shape[0] or present.shape[1] != self.modalities:
            raise ValueError(f"fusion head expects present [B, {self.modalities}]")
        present = present.to(device=emb.device, dtype=torch.bool)
        if _checks_on() and emb.shape[0] > 0 and not bool(present.any(dim=1).all()):
            raise ValueError("fusion head: a row has no present modality")
        emb = torch.where(present[..., None], emb, torch.zeros((), dtype=emb.dtype, device=emb.device))
        tokens = torch.stack([p(emb[:, i]) for i, p in enumerate(self.proj)], dim=1)  # [B, M, H]
        tokens = self.norm(tokens + self.kind[None])
        scores = (self.key(tokens) * self.query).sum(-1) / self.hidden**0.5  # [B, M]
        scores = scores.masked_fill(~present, -1e4)  # exp underflows to exactly 0
        weights = torch.softmax(scores, dim=1)
        pooled = (weights[..., None] * self.value(tokens)).sum(dim=1)
        return self.mlp(torch.cat([pooled, present.to(emb.dtype)], dim=1))


# ------------------------------------------------------------------ the pack


class SensorDigitsPack(ModelPack):
    """Sensor-Digits. Size knobs: preset, width, depth, embed_dim."""

    def __init__(self, preset: str = "default", width: int | None = None, depth: int | None = None,
                 embed_dim: int | None = None):
        if preset not in PRESETS:
            raise ValueError(f"unknown size preset {preset!r}; choose from {sorted(PRESETS)}")
        knobs = dict(PRESETS[preset])
        for key, value in (("width", width), ("depth", depth), ("embed_dim", embed_dim)):
            if value is not None:
                if int(value) < 1:
                    raise ValueError(f"{key} must be >= 1, got {value}")
                knobs[key] = int(value)
        modalities = (
            ModalitySpec("spectrogram", TensorSpec("float32", (_data.BANDS, _data.COLUMNS)),
                         f"wideband microphone: {_data.BANDS} log band energies x {_data.COLUMNS} time columns, "
                         "standardised per utterance"),
            ModalitySpec("waveform", TensorSpec("float16", (-1, _data.FRAME), sequence=True, std=WAVE_STD,
                                                max_steps=_data.MAX_FRAMES),
                         f"narrowband sensor: raw 2 kHz signal in [-1, 1], 10 ms frames of {_data.FRAME} samples"),
            ModalitySpec("digit", TensorSpec("uint8", (_data.SIDE, _data.SIDE), mean=DIGIT_MEAN, std=DIGIT_STD),
                         "handwritten digit, 20x20 grayscale"),
        )
        super().__init__(name=NAME, embed_dim=knobs["embed_dim"], labels=LABELS, modalities=modalities,
                         size={"preset": preset, **knobs})
        self.width, self.depth = knobs["width"], knobs["depth"]

    # -- builders

    def build_encoder(self, modality: str) -> nn.Module:
        builders = {"spectrogram": SpectrogramEncoder, "waveform": WaveformEncoder, "digit": DigitEncoder}
        if modality not in builders:
            raise KeyError(f"model {self.name!r} has no modality {modality!r}; it has {list(self.modality_names)}")
        return builders[modality](self.width, self.depth, self.embed_dim)

    def build_fusion_head(self) -> nn.Module:
        return AttentionFusion(len(self.modalities), self.embed_dim, hidden=2 * self.embed_dim,
                               classes=self.num_classes)

    # -- inputs

    def preprocess(self, modality: str, raw: Any, field: str | None = None) -> np.ndarray:
        """Raw input -> wire-ready item (no noise is added here).

        spectrogram, waveform: a WAV path (8 kHz mono 16-bit) or a 1-D waveform at 8 kHz
        (int16, or float in [-1, 1]); digit: uint8 20x20 (or 28x28, centre-cropped)."""
        field = field or modality
        if modality in ("spectrogram", "waveform"):
            wave = self._wave(raw, field)
            item = _data.spectrogram(wave) if modality == "spectrogram" else _data.waveform(wave)
        elif modality == "digit":
            item = self._digit(raw, field)
        else:
            raise InvalidInput("modality", f"model {self.name!r} has no modality {modality!r}")
        self.validate_item(modality, item, field)
        return item

    def _wave(self, raw: Any, field: str) -> np.ndarray:
        if isinstance(raw, (str, os.PathLike)):
            try:
                raw = _data._fsdd.read_wav(Path(raw))
            except Exception as exc:  # OSError, EOFError, ValueError, wave.Error
                raise InvalidInput(field, f"cannot read WAV {str(raw)!r}: {exc}") from None
        arr = np.asarray(raw)
        if arr.ndim != 1 or arr.shape[0] == 0:
            raise InvalidInput(field, f"audio must be a non-empty 1-D waveform, got shape {list(arr.shape)}")
        if arr.dtype != np.int16:
            if arr.dtype.kind != "f" or not np.isfinite(arr).all() or np.abs(arr).max() > 1.0:
                raise InvalidInput(field, f"audio must be int16 or float in [-1, 1], got {arr.dtype}")
            arr = arr.astype(np.float32)
        if arr.shape[0] > _data.max_samples():
            raise InvalidInput(field, f"audio is {arr.shape[0] / _data.RATE:.2f} s; at most "
                                      f"{_data.max_samples() / _data.RATE:.2f} s")
        return arr

    def _digit(self, raw: Any, field: str) -> np.ndarray:
        arr = np.asarray(raw)
        if arr.dtype != np.uint8 or arr.ndim != 2:
            raise InvalidInput(field, f"digit must be a 2-D uint8 image, got {arr.dtype} {list(arr.shape)}")
        if arr.shape == (28, 28):
            arr = arr[4:24, 4:24]
        if arr.shape != (_data.SIDE, _data.SIDE):
            raise InvalidInput(field, f"digit must be 20x20 or 28x28, got {arr.shape[0]}x{arr.shape[1]}")
        return np.ascontiguousarray(arr)

    # -- data hooks

    def dataset(self, split: str, seed: int = 0, data_dir: Any = None):
        """"train" drawn with `seed` (once per epoch); "test" with TEST_SEED + seed (0: the evaluation set)."""
        return _data.build(split, _data.TEST_SEED + seed if split == "test" else seed, data_dir)

    def data_description(self) -> dict[str, Any]:
        return _data.description()

    def training_defaults(self) -> dict[str, Any]:
        return dict(TRAIN_PRESETS[self.size["preset"]])
