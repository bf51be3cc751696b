"""Handwritten digits: `digits/digits.png`, 5000 digits of 20x20 pixels.

Source: the sample image shipped with OpenCV (samples/data/digits.png; Debian package
opencv-doc, examples/data/digits.png); the digits derive from MNIST (LeCun, Cortes,
Burges). A user elsewhere copies that file to `<data dir>/digits/digits.png`.

Layout: 50 rows x 100 columns of 20x20 cells; each block of 5 cell rows is one class
(rows 0-4 are digit 0, ..., rows 45-49 digit 9), 500 images per class. Within a class,
image i sits at cell row 5*digit + i // 100, column i % 100.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
from PIL import Image

from mosel.config import data_dir as _data_dir

CELL = 20
PADDED = 28
PER_CLASS = 500
NUM_CLASSES = 10


def digits_path(data_dir: str | os.PathLike | None = None) -> Path:
    return _data_dir(data_dir) / "digits" / "digits.png"


@functools.lru_cache(maxsize=4)
def _load(path: str) -> np.ndarray:
    with Image.open(path) as im:
        arr = np.asarray(im.convert("L"), dtype=np.uint8)
    if arr.shape != (50 * CELL, 100 * CELL):
        raise ValueError(f"{path}: expected a 2000x1000 image of 20x20 cells, got {arr.shape[1]}x{arr.shape[0]}")
    cells = arr.reshape(50, CELL, 100, CELL).transpose(0, 2, 1, 3)  # [row, col, 20, 20]
    by_class = cells.reshape(NUM_CLASSES, 5 * 100, CELL, CELL)  # rows 5d..5d+4, col-major within a row
    out = np.ascontiguousarray(by_class)
    out.setflags(write=False)
    return out


def load_digits(data_dir: str | os.PathLike | None = None) -> np.ndarray:
    """uint8[10, 500, 20, 20]: [digit, index within class] (read-only, cached)."""
    path = digits_path(data_dir)
    if not path.is_file():
        raise FileNotFoundError(
            f"handwritten digits not found at {path}; copy OpenCV's samples/data/digits.png there "
            "or set MOSEL_DATA_DIR (or --data-dir)"
        )
    return _load(str(path))


def pad_to(img: np.ndarray, size: int = PADDED) -> np.ndarray:
    """Centre a [..., h, w] image on a zero canvas of [..., size, size]."""
    h, w = img.shape[-2:]
    if h > size or w > size:
        raise ValueError(f"image {h}x{w} is larger than {size}x{size}")
    top, left = (size - h) // 2, (size - w) // 2
    out = np.zeros(img.shape[:-2] + (size, size), dtype=img.dtype)
    out[..., top : top + h, left : left + w] = img
    return out
