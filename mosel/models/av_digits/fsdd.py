"""Free Spoken Digit Dataset (FSDD): WAV reading and log-mel features.

Source: the public repository Jakobovski/free-spoken-digit-dataset (also Zenodo DOI
10.5281/zenodo.1342401), licence CC BY-SA 4.0 -- attribute the FSDD authors. A user
elsewhere clones that repository and points MOSEL_DATA_DIR (or --data-dir) at a folder
holding its `recordings/` directory as `fsdd/recordings`. Nothing is downloaded here.

Files are named `{digit}_{speaker}_{index}.wav`: 8 kHz, mono, 16-bit PCM. The dataset's
documented test split is index 0-4; index >= 5 is training data.

Features are computed with plain torch (no torchaudio): a Hann-windowed `torch.stft`,
power spectrum, a triangular mel filterbank (HTK mel scale, written below) and a log.
"""

from __future__ import annotations

import functools
import os
import re
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mosel.config import data_dir as _data_dir

SAMPLE_RATE = 8000
N_FFT = 256  # 32 ms window
HOP = 128  # 16 ms hop
N_MELS = 32
F_MIN = 20.0
F_MAX = SAMPLE_RATE / 2
TARGET_RMS = 0.1  # clips are RMS-normalised before featurisation (gain invariance)
LOG_FLOOR = 1e-6

_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


@dataclass(frozen=True)
class Recording:
    digit: int
    speaker: str
    index: int
    path: Path

    @property
    def key(self) -> str:
        return f"{self.digit}_{self.speaker}_{self.index}"


def recordings_dir(data_dir: str | os.PathLike | None = None) -> Path:
    return _data_dir(data_dir) / "fsdd" / "recordings"


def list_recordings(data_dir: str | os.PathLike | None = None) -> list[Recording]:
    """All recordings, sorted by (digit, speaker, index). Raises FileNotFoundError with a hint."""
    folder = recordings_dir(data_dir)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"FSDD recordings not found at {folder}; clone Jakobovski/free-spoken-digit-dataset and "
            "set MOSEL_DATA_DIR (or --data-dir) to a folder holding fsdd/recordings"
        )
    out = []
    for path in folder.iterdir():
        m = _NAME.match(path.name)
        if m:
            out.append(Recording(int(m.group(1)), m.group(2), int(m.group(3)), path))
    out.sort(key=lambda r: (r.digit, r.speaker, r.index))
    if not out:
        raise FileNotFoundError(f"no FSDD WAV files ({{digit}}_{{speaker}}_{{index}}.wav) in {folder}")
    return out


def read_wav(path: str | os.PathLike) -> np.ndarray:
    """Read a mono 16-bit PCM WAV at 8 kHz as int16[n]. Other formats raise ValueError."""
    with wave.open(str(path), "rb") as w:
        channels, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        if width != 2:
            raise ValueError(f"{path}: expected 16-bit PCM, got {8 * width}-bit")
        if rate != SAMPLE_RATE:
            raise ValueError(f"{path}: expected {SAMPLE_RATE} Hz, got {rate} Hz")
        raw = w.readframes(n)
    samples = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    if channels != 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return samples


@functools.lru_cache(maxsize=4)
def _read_all_cached(root: str) -> dict[str, np.ndarray]:
    return {r.key: read_wav(r.path) for r in list_recordings(root)}


def load_waveforms(data_dir: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """key -> int16 waveform for every recording (cached per data directory; do not mutate)."""
    return _read_all_cached(str(_data_dir(data_dir)))


def to_float(samples: np.ndarray) -> np.ndarray:
    """int16 -> float32 in [-1, 1), RMS-normalised to TARGET_RMS (silent clips stay zero)."""
    x = samples.astype(np.float32) / 32768.0
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0
    if rms > 1e-8:
        x = x * np.float32(TARGET_RMS / rms)
    return x


def n_frames(n_samples: int) -> int:
    """Frames produced for a clip of n_samples (clips shorter than one window are padded to it)."""
    return 1 + (max(n_samples, N_FFT) - N_FFT) // HOP


def min_samples_for(frames: int) -> int:
    return N_FFT + (frames - 1) * HOP


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=8)
def mel_filterbank(
    n_fft: int = N_FFT, n_mels: int = N_MELS, sample_rate: int = SAMPLE_RATE, f_min: float = F_MIN, f_max: float = F_MAX
) -> torch.Tensor:
    """Triangular filters on the HTK mel scale: float32[n_fft // 2 + 1, n_mels], peak 1 each."""
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edges = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    f = freqs[:, None]
    rising = (f - left) / (centre - left)
    falling = (right - f) / (right - centre)
    fb = np.clip(np.minimum(rising, falling), 0.0, None)
    return torch.from_numpy(fb.astype(np.float32))


@functools.lru_cache(maxsize=2)
def _window(n_fft: int) -> torch.Tensor:
    return torch.hann_window(n_fft, periodic=True, dtype=torch.float32)


def log_mel_batch(waves: list[np.ndarray]) -> list[np.ndarray]:
    """Float waveforms -> float32[frames_i, N_MELS] log-mel spectrograms.

    One batched STFT over zero-padded waveforms (center=False, so a frame only reads its
    own clip's samples); each clip keeps exactly n_frames(len) frames, so the result equals
    featurising every clip alone."""
    if not waves:
        return []
    lens = [max(len(w), N_FFT) for w in waves]
    longest = max(lens)
    buf = np.zeros((len(waves), longest), dtype=np.float32)
    for i, w in enumerate(waves):
        buf[i, : len(w)] = w
    spec = torch.stft(
        torch.from_numpy(buf), n_fft=N_FFT, hop_length=HOP, win_length=N_FFT, window=_window(N_FFT),
        center=False, return_complex=True,
    )  # [B, n_freq, frames]
    power = spec.real.square() + spec.imag.square()
    mel = torch.einsum("bft,fm->btm", power, mel_filterbank())
    logmel = torch.log(mel + LOG_FLOOR).numpy()
    return [np.ascontiguousarray(logmel[i, : n_frames(n)]) for i, n in enumerate(lens)]


def log_mel(wave_float: np.ndarray) -> np.ndarray:
    """One float waveform -> float32[frames, N_MELS]."""
    return log_mel_batch([np.asarray(wave_float, dtype=np.float32)])[0]
