"""Sensor-Digits data: front ends (the pack's preprocessing) and the labelled splits.

Three sensors observe one digit:
- "spectrogram": a wideband microphone (8 kHz) hears the spoken digit; its front end is a
  linear-frequency log-power STFT (32 ms window, 10 ms hop) averaged into 32 equal bands,
  the time axis resampled to 32 columns (speaking-rate normalisation) and the image
  standardised per utterance: float32[32, 32];
- "waveform": a cheap narrowband sensor on the *same utterance* with its own noise: the raw
  signal low-passed at 900 Hz, decimated to 2 kHz, level-normalised (AGC) and cut into
  10 ms frames of 20 samples: float16[frames, 20] in [-1, 1], a dynamic sequence (float16,
  not int16: serving's batching ops take uint8, float16 and float32 items);
- "digit": a handwritten digit of the same class (pairing by class, the AV-MNIST protocol:
  not natural co-occurrence), shifted, contrast-reduced, partly erased and noisy: uint8[20, 20].

Data: the Free Spoken Digit Dataset (CC BY-SA 4.0) and OpenCV's digits.png (from MNIST),
read with mosel's offline loaders from $MOSEL_DATA_DIR (or data_dir). Splits are disjoint:
FSDD index 0-4 is test, >= 5 train; images 0-399 of each class train, 400-499 test.
Everything is a pure function of (split, seed).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mosel.models.av_digits import digits as _digits  # offline readers only (digits.png)
from mosel.models.av_digits import fsdd as _fsdd  # offline readers only (FSDD WAVs)
from mosel.models.labelled import ArraySet

RATE = _fsdd.SAMPLE_RATE  # 8 kHz
# spectrogram front end
N_FFT, HOP, BANDS, COLUMNS = 256, 80, 32, 32
# waveform front end
DECIMATE = 4  # 8 kHz -> 2 kHz
CUTOFF_HZ = 900.0
TAPS = 63
FRAME = 20  # samples per 10 ms frame at 2 kHz
AGC_RMS = 0.1  # level after the sensor's AGC, as a fraction of full scale
MAX_FRAMES = 256  # 2.56 s; the longest FSDD clip is 2.28 s
SIDE = _digits.CELL  # 20

TEST_SEED = 31337  # the test split's pairing and noise are fixed, whatever the training seed
SPLITS: dict[str, dict[str, tuple[int, int]]] = {  # half-open ranges
    "train": {"fsdd_index": (5, 50), "digit": (0, 400)},
    "test": {"fsdd_index": (0, 5), "digit": (400, 500)},
}


@dataclass(frozen=True)
class Noise:
    """How hard each sensor is made: the microphone is good, the narrowband sensor poor,
    the handwriting somewhere in between."""

    mic_snr_db: tuple[float, float] = (-4.0, 20.0)  # white noise on the wideband microphone
    sensor_snr_db: tuple[float, float] = (-6.0, 10.0)  # independent noise on the narrowband sensor
    digit_shift: int = 2
    digit_contrast: tuple[float, float] = (0.5, 1.0)
    digit_erase_p: float = 0.6
    digit_erase: tuple[int, int] = (6, 11)
    digit_noise: tuple[float, float] = (25.0, 70.0)


NOISE = Noise()


# ---------------------------------------------------------------- front ends (preprocessing)


def as_float(wave: np.ndarray) -> np.ndarray:
    """int16 (or float in [-1, 1]) -> float32, RMS-normalised to AGC_RMS (silence stays zero)."""
    x = wave.astype(np.float32) / 32768.0 if wave.dtype == np.int16 else np.asarray(wave, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    return x * np.float32(AGC_RMS / rms) if rms > 1e-8 else x


@functools.lru_cache(maxsize=1)
def _window() -> torch.Tensor:
    return torch.hann_window(N_FFT, periodic=True, dtype=torch.float32)


def spectrogram(wave: np.ndarray) -> np.ndarray:
    """8 kHz waveform -> float32[BANDS, COLUMNS] standardised log band energies."""
    x = as_float(wave)
    if x.shape[0] < N_FFT:
        x = np.pad(x, (0, N_FFT - x.shape[0]))
    spec = torch.stft(torch.from_numpy(x), n_fft=N_FFT, hop_length=HOP, window=_window(), center=False,
                      return_complex=True)  # [129, T]
    power = (spec.real.square() + spec.imag.square())[1:]  # drop DC: 128 bins
    bands = power.reshape(BANDS, (N_FFT // 2) // BANDS, -1).mean(dim=1)  # 32 equal-width bands
    logs = torch.log(bands + 1e-6)[None]  # [1, 32, T]
    img = F.interpolate(logs, size=COLUMNS, mode="linear", align_corners=True)[0]  # [32, 32]
    img = (img - img.mean()) / img.std().clamp_min(1e-3)
    return np.ascontiguousarray(img.numpy().astype(np.float32))


@functools.lru_cache(maxsize=1)
def _lowpass() -> np.ndarray:
    n = np.arange(TAPS) - (TAPS - 1) / 2
    fc = CUTOFF_HZ / RATE
    h = 2 * fc * np.sinc(2 * fc * n) * np.hamming(TAPS)
    return (h / h.sum()).astype(np.float32)


def waveform(wave: np.ndarray) -> np.ndarray:
    """8 kHz waveform -> float16[frames, FRAME] in [-1, 1]: low-pass, decimate to 2 kHz, AGC,
    10 ms frames (the last one zero-padded)."""
    x = np.convolve(as_float(wave), _lowpass(), mode="same")[::DECIMATE]
    x = as_float(x)
    frames = max(1, -(-x.shape[0] // FRAME))
    out = np.zeros(frames * FRAME, dtype=np.float32)
    out[: x.shape[0]] = x
    return np.clip(out, -1.0, 1.0).astype(np.float16).reshape(frames, FRAME)


def max_samples() -> int:
    """Longest 8 kHz waveform the waveform modality takes (MAX_FRAMES frames)."""
    return MAX_FRAMES * FRAME * DECIMATE


# ---------------------------------------------------------------- degradations


def _noisy(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    x = as_float(wave)
    sigma = AGC_RMS / (10.0 ** (snr_db / 20.0))
    return np.clip(x + rng.standard_normal(x.shape[0], dtype=np.float32) * np.float32(sigma), -1.0, 1.0)


def degrade_digits(imgs: np.ndarray, rng: np.random.Generator, c: Noise = NOISE) -> np.ndarray:
    """uint8[N, 20, 20] -> uint8[N, 20, 20]: shift, contrast loss, an erased block (sometimes), noise."""
    n = imgs.shape[0]
    shifts = rng.integers(-c.digit_shift, c.digit_shift + 1, size=(n, 2))
    contrast = rng.uniform(*c.digit_contrast, size=n).astype(np.float32)
    erase = rng.random(n) < c.digit_erase_p
    sizes = rng.integers(c.digit_erase[0], c.digit_erase[1] + 1, size=(n, 2))
    corners = rng.random((n, 2))
    sigma = rng.uniform(*c.digit_noise, size=n).astype(np.float32)
    noise = rng.standard_normal((n, SIDE, SIDE), dtype=np.float32)
    out = np.empty((n, SIDE, SIDE), dtype=np.float32)
    for i in range(n):
        img = np.roll(imgs[i].astype(np.float32), tuple(shifts[i]), axis=(0, 1)) * contrast[i]
        if erase[i]:
            h, w = sizes[i]
            top, left = int(corners[i, 0] * (SIDE - h + 1)), int(corners[i, 1] * (SIDE - w + 1))
            img[top : top + h, left : left + w] = 0.0
        out[i] = img + noise[i] * sigma[i]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- splits


def build(split: str, seed: int, data_dir: str | os.PathLike | None = None, noise: Noise = NOISE) -> ArraySet:
    """Every FSDD clip of `split` once (sorted), heard by both audio sensors with independent
    noise, paired with a random handwritten digit of its class from the split's images."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    lo, hi = SPLITS[split]["fsdd_index"]
    recs = [r for r in _fsdd.list_recordings(data_dir) if lo <= r.index < hi]
    waves = _fsdd.load_waveforms(data_dir)
    pictures = _digits.load_digits(data_dir)
    pair, mic, sensor, ink = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, 0x5E25]).spawn(4))
    labels = np.array([r.digit for r in recs], dtype=np.int64)
    mic_snr = mic.uniform(*noise.mic_snr_db, size=len(recs))
    sensor_snr = sensor.uniform(*noise.sensor_snr_db, size=len(recs))
    specs = np.stack([spectrogram(_noisy(waves[r.key], s, mic)) for r, s in zip(recs, mic_snr)])
    frames = [waveform(_noisy(waves[r.key], s, sensor)) for r, s in zip(recs, sensor_snr)]
    ids = pair.integers(*SPLITS[split]["digit"], size=len(recs))
    digits = degrade_digits(pictures[labels, ids], ink, noise)
    return ArraySet(labels, {"spectrogram": specs, "waveform": frames, "digit": digits})


def description() -> dict:
    return {
        "protocol": "modalities paired by class (AV-MNIST style); both audio sensors hear the same utterance",
        "spectrogram": "FSDD 8 kHz, index 0-4 test, >= 5 train; white noise at a random SNR; "
                       f"{BANDS} linear bands x {COLUMNS} resampled columns, standardised per utterance",
        "waveform": f"the same utterance with independent noise, low-passed at {CUTOFF_HZ:.0f} Hz, 2 kHz, AGC, "
                    f"frames of {FRAME} samples",
        "digit": "digits.png images 0-399 of each class train, 400-499 test; shifted, erased, noisy",
        "ranges": {s: {k: list(v) for k, v in d.items()} for s, d in SPLITS.items()},
        "test_seed": TEST_SEED,
        "noise": {k: list(v) if isinstance(v, tuple) else v for k, v in NOISE.__dict__.items()},
    }
