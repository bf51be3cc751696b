"""AV-Digits: paired (spoken digit, handwritten image, synthetic video) samples.

The task follows the AV-MNIST protocol: modalities are paired **by class**, not by
natural co-occurrence -- a clip of someone saying "seven" is joined with a handwritten
7 drawn by someone else. Report results with that caveat.

Modalities of one sample, all of the same digit:
- audio: an FSDD recording with white noise added at a random SNR, as a log-mel
  spectrogram float32[frames, 32];
- image: one handwritten 20x20 digit, centred on 28x28, with a random shift, contrast
  loss, an occluding block (sometimes) and pixel noise, uint8[28, 28];
- video: a *different* handwritten image of the same digit turned into a clip of
  `frames` uint8 28x28 frames. **The motion is synthetic**: the still image is
  translated, rotated and scaled along a random smooth trajectory, then every frame is
  blurred, partly covered by a moving bar and given fresh pixel noise. It is a stand-in
  for a real video stream, built so the video encoder is the expensive one.

Every modality is degraded on purpose so that no single one is perfect and the full
set is best (as AV-MNIST degrades both of its modalities).

Splits are disjoint on every side:
- audio: FSDD index 0-4 is test (the dataset's documented split), index >= 5 train;
- image modality: images 0-199 of each class train, 400-449 test;
- video modality: images 200-399 of each class train, 450-499 test;
so the image and the video of one sample never come from the same picture, and no
test picture or clip is seen in training. Everything is a function of the seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mosel.models.av_digits import digits as _digits
from mosel.models.av_digits import fsdd as _fsdd

FRAMES = 8
TEST_SEED = 2024  # the test split's pairing and noise are fixed, whatever the training seed

SPLITS: dict[str, dict[str, tuple[int, int]]] = {
    # half-open ranges [lo, hi)
    "train": {"fsdd_index": (5, 50), "image": (0, 200), "video": (200, 400)},
    "test": {"fsdd_index": (0, 5), "image": (400, 450), "video": (450, 500)},
}


@dataclass(frozen=True)
class Corruption:
    """How hard each modality is made (tuned so every single modality is imperfect)."""

    audio_snr_db: tuple[float, float] = (-10.0, 12.0)  # white noise, SNR uniform in this range
    image_shift: int = 2  # +- pixels
    image_contrast: tuple[float, float] = (0.6, 1.0)
    image_occlusion_p: float = 0.4
    image_occlusion_size: tuple[int, int] = (6, 12)
    image_noise: tuple[float, float] = (5.0, 35.0)  # pixel noise std, 0..255 units
    video_shift: float = 3.0  # trajectory end points, +- pixels
    video_rotate_deg: float = 15.0
    video_scale: tuple[float, float] = (0.9, 1.1)
    video_contrast: tuple[float, float] = (0.6, 1.0)
    video_blur_sigma: tuple[float, float] = (0.5, 1.0)
    video_bar_width: tuple[int, int] = (3, 7)
    video_noise: tuple[float, float] = (15.0, 50.0)


CORRUPTION = Corruption()


def split_description() -> dict:
    """JSON-able description of the splits, recorded in manifests."""
    return {
        "protocol": "AV-MNIST style: modalities paired by class, not by natural co-occurrence",
        "audio": "FSDD 8 kHz; index 0-4 test, index >= 5 train; white noise at random SNR",
        "image": "digits.png images 0-199 of each class train, 400-449 test",
        "video": "digits.png images 200-399 of each class train, 450-499 test; synthetic motion",
        "ranges": {s: {k: list(v) for k, v in d.items()} for s, d in SPLITS.items()},
        "test_seed": TEST_SEED,
        "corruption": {k: list(v) if isinstance(v, tuple) else v for k, v in CORRUPTION.__dict__.items()},
    }


@dataclass
class AVDigitsSplit:
    split: str
    labels: np.ndarray  # int64[N]
    audio: list[np.ndarray]  # float32[frames_i, 32]
    image: np.ndarray  # uint8[N, 28, 28]
    video: np.ndarray  # uint8[N, F, 28, 28]
    audio_keys: list[str] = field(default_factory=list)  # FSDD "{digit}_{speaker}_{index}"
    image_ids: np.ndarray = None  # index within class in digits.png
    video_ids: np.ndarray = None

    def __len__(self) -> int:
        return len(self.labels)

    def items(self, modality: str) -> Sequence[np.ndarray]:
        """A mosel.models.labelled.LabelledSet: audio as a list (lengths vary), image and video
        as their stacked arrays (equal-sized items; training packs them vectorised)."""
        if modality == "audio":
            return self.audio
        if modality == "image":
            return self.image
        if modality == "video":
            return self.video
        raise KeyError(modality)

    def sample(self, i: int) -> dict[str, np.ndarray]:
        return {"audio": self.audio[i], "image": self.image[i], "video": self.video[i]}


# ---------------------------------------------------------------- degradations


def noisy_audio_features(waves: list[np.ndarray], rng: np.random.Generator, c: Corruption = CORRUPTION) -> list[np.ndarray]:
    """int16 clips -> RMS-normalised, noise added at a random SNR -> log-mel features."""
    floats = []
    for w in waves:
        x = _fsdd.to_float(w)
        snr = rng.uniform(*c.audio_snr_db)
        noise_rms = _fsdd.TARGET_RMS / (10.0 ** (snr / 20.0))
        floats.append(x + rng.standard_normal(x.shape[0], dtype=np.float32) * np.float32(noise_rms))
    out: list[np.ndarray] = []
    for start in range(0, len(floats), 256):  # bounded memory for the padded STFT batch
        out.extend(_fsdd.log_mel_batch(floats[start : start + 256]))
    return out


def degrade_images(imgs: np.ndarray, rng: np.random.Generator, c: Corruption = CORRUPTION) -> np.ndarray:
    """uint8[N, 20, 20] -> uint8[N, 28, 28]: shift, contrast loss, occluding block, noise."""
    n = imgs.shape[0]
    canvas = _digits.pad_to(imgs, _digits.PADDED).astype(np.float32)
    shifts = rng.integers(-c.image_shift, c.image_shift + 1, size=(n, 2))
    contrast = rng.uniform(*c.image_contrast, size=n).astype(np.float32)
    occlude = rng.random(n) < c.image_occlusion_p
    sizes = rng.integers(c.image_occlusion_size[0], c.image_occlusion_size[1] + 1, size=(n, 2))
    corners = rng.random((n, 2))
    fill = rng.uniform(0, 255, size=n).astype(np.float32)
    sigma = rng.uniform(*c.image_noise, size=n).astype(np.float32)
    noise = rng.standard_normal(canvas.shape, dtype=np.float32)
    for i in range(n):
        img = np.roll(canvas[i], tuple(shifts[i]), axis=(0, 1)) * contrast[i]
        if occlude[i]:
            h, w = sizes[i]
            # place the block inside the central 20x20 area where the digit lives
            top = 4 + int(corners[i, 0] * (20 - h + 1))
            left = 4 + int(corners[i, 1] * (20 - w + 1))
            img[top : top + h, left : left + w] = fill[i]
        canvas[i] = img + noise[i] * sigma[i]
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def _blur_matrices(sigmas: np.ndarray, size: int, radius: int = 3) -> torch.Tensor:
    """Gaussian blur with zero padding as matrices: B @ img @ B.T blurs rows and columns."""
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    s = torch.from_numpy(sigmas.astype(np.float32))[:, None]
    k = torch.exp(-0.5 * (t[None, :] / s) ** 2)
    k = k / k.sum(dim=1, keepdim=True)  # [N, 2r+1]
    offset = torch.arange(size)[None, :] - torch.arange(size)[:, None]  # [out, in]: in - out
    inside = offset.abs() <= radius
    idx = (offset + radius).clamp(0, 2 * radius)
    return torch.where(inside[None], k[:, idx], torch.zeros(())).contiguous()  # [N, out, in]


def synth_videos(imgs: np.ndarray, rng: np.random.Generator, frames: int = FRAMES, c: Corruption = CORRUPTION) -> np.ndarray:
    """uint8[N, 20, 20] stills -> uint8[N, frames, 28, 28] clips with synthetic motion.

    Each still moves along a straight trajectory (translation, rotation, scale between
    random start and end poses, plus a little per-frame jitter), then each frame is
    contrast-reduced, blurred (one sigma per clip), covered by a bar that sweeps across
    the clip and given independent pixel noise."""
    n, size = imgs.shape[0], _digits.PADDED
    if n == 0:
        return np.zeros((0, frames, size, size), dtype=np.uint8)
    base = torch.from_numpy(_digits.pad_to(imgs, size).astype(np.float32) / 255.0)  # [N, 28, 28]
    # trajectory: [N, 2] start and end poses, linear in time
    t = np.linspace(0.0, 1.0, frames, dtype=np.float64)[None, :]  # [1, F]
    shift0, shift1 = rng.uniform(-c.video_shift, c.video_shift, size=(2, n, 2))
    rot0, rot1 = np.deg2rad(rng.uniform(-c.video_rotate_deg, c.video_rotate_deg, size=(2, n)))
    scale0, scale1 = rng.uniform(*c.video_scale, size=(2, n))
    jitter = rng.normal(0.0, 0.5, size=(n, frames, 2))
    tx = shift0[:, None, 0] + (shift1[:, None, 0] - shift0[:, None, 0]) * t + jitter[..., 0]
    ty = shift0[:, None, 1] + (shift1[:, None, 1] - shift0[:, None, 1]) * t + jitter[..., 1]
    rot = rot0[:, None] + (rot1 - rot0)[:, None] * t
    scale = scale0[:, None] + (scale1 - scale0)[:, None] * t
    # affine_grid maps output coords to input coords (normalised to [-1, 1]): inverse pose
    cos, sin = np.cos(rot) / scale, np.sin(rot) / scale
    theta = np.zeros((n, frames, 2, 3), dtype=np.float32)
    theta[..., 0, 0], theta[..., 0, 1] = cos, -sin
    theta[..., 1, 0], theta[..., 1, 1] = sin, cos
    px = 2.0 / size
    theta[..., 0, 2] = -(cos * tx - sin * ty) * px
    theta[..., 1, 2] = -(sin * tx + cos * ty) * px
    theta_t = torch.from_numpy(theta.reshape(n * frames, 2, 3))
    src = base[:, None].expand(n, frames, size, size).reshape(n * frames, 1, size, size)
    grid = F.affine_grid(theta_t, [n * frames, 1, size, size], align_corners=False)
    moved = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    moved = moved.reshape(n, frames, size, size)
    # contrast, then a Gaussian blur with one sigma per clip
    contrast = torch.from_numpy(rng.uniform(*c.video_contrast, size=n).astype(np.float32))
    moved = moved * contrast[:, None, None, None]
    blur = _blur_matrices(rng.uniform(*c.video_blur_sigma, size=n), size)  # [N, 28, 28]
    x = torch.matmul(torch.matmul(blur[:, None], moved), blur.transpose(1, 2)[:, None])  # [N, F, 28, 28]
    # a bar sweeping across the clip (vertical or horizontal), random fill value
    widths = rng.integers(c.video_bar_width[0], c.video_bar_width[1] + 1, size=n)
    vertical = rng.random(n) < 0.5
    start = rng.uniform(0, size, size=n)
    speed = rng.choice([-1.0, 1.0], size=n) * rng.uniform(2.0, 4.0, size=n)  # pixels per frame
    fill = rng.uniform(0.0, 1.0, size=n)
    lo = np.floor(start[:, None] + speed[:, None] * np.arange(frames)[None, :]).astype(np.int64) % size  # [N, F]
    covered = ((np.arange(size)[None, None, :] - lo[..., None]) % size) < widths[:, None, None]  # [N, F, 28]
    cov = torch.from_numpy(covered)
    vert = torch.from_numpy(vertical)[:, None, None, None]
    mask = torch.where(vert, cov[:, :, None, :].expand(n, frames, size, size), cov[:, :, :, None].expand(n, frames, size, size))
    x = torch.where(mask, torch.from_numpy(fill.astype(np.float32))[:, None, None, None], x)
    sigma = rng.uniform(*c.video_noise, size=n).astype(np.float32) / 255.0
    noise = torch.from_numpy(rng.standard_normal((n, frames, size, size), dtype=np.float32))
    x = x + noise * torch.from_numpy(sigma)[:, None, None, None]
    return x.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8).numpy()


# ---------------------------------------------------------------- building a split


def build_split(
    split: str,
    seed: int | None = None,
    data_dir: str | os.PathLike | None = None,
    frames: int = FRAMES,
    repeats: int = 1,
    corruption: Corruption | None = None,
) -> AVDigitsSplit:
    """Paired samples for `split` ("train" or "test"), a pure function of the arguments.

    Every FSDD clip of the split appears `repeats` times (in sorted order), each time with
    a fresh image, video source and noise draw. The test split defaults to TEST_SEED."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    if seed is None:
        seed = TEST_SEED if split == "test" else 0
    ranges = SPLITS[split]
    recs = [r for r in _fsdd.list_recordings(data_dir) if ranges["fsdd_index"][0] <= r.index < ranges["fsdd_index"][1]]
    waves_by_key = _fsdd.load_waveforms(data_dir)
    pictures = _digits.load_digits(data_dir)
    pair_rng, audio_rng, image_rng, video_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, 0xA7D16]).spawn(4)
    )
    recs = recs * repeats
    labels = np.array([r.digit for r in recs], dtype=np.int64)
    image_ids = pair_rng.integers(*ranges["image"], size=len(recs))
    video_ids = pair_rng.integers(*ranges["video"], size=len(recs))
    c = corruption or CORRUPTION
    audio = noisy_audio_features([waves_by_key[r.key] for r in recs], audio_rng, c)
    image = degrade_images(pictures[labels, image_ids], image_rng, c)
    video = synth_videos(pictures[labels, video_ids], video_rng, frames=frames, c=c)
    return AVDigitsSplit(
        split=split, labels=labels, audio=audio, image=image, video=video,
        audio_keys=[r.key for r in recs], image_ids=image_ids, video_ids=video_ids,
    )


def pack_dataset(split: str, seed: int = 0, data_dir: str | os.PathLike | None = None, frames: int = FRAMES
                 ) -> AVDigitsSplit:
    """The pack's `dataset` hook: a "train" draw with `seed` as is (one per epoch), a "test" draw
    with TEST_SEED + seed, so seed 0 is the evaluation set whatever the training seed."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    return build_split(split, seed=TEST_SEED + seed if split == "test" else seed, data_dir=data_dir, frames=frames)


def normalisation_stats(data_dir: str | os.PathLike | None = None, seed: int = 0) -> dict[str, tuple[float, float]]:
    """(mean, std) per modality over a training draw: the constants in the pack's specs."""
    train = build_split("train", seed=seed, data_dir=data_dir)
    audio = np.concatenate(train.audio, axis=0).astype(np.float64)
    return {
        "audio": (float(audio.mean()), float(audio.std())),
        "image": (float(train.image.mean()), float(train.image.std())),
        "video": (float(train.video.mean()), float(train.video.std())),
    }
