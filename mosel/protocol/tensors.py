"""Tensors on the wire: dtype + shape + raw little-endian bytes (docs/architecture.md, "Tensors on the wire").

Decoding validates before anything touches the bytes: known dtype, non-negative
shape, and len(data) == prod(shape) * itemsize. Errors name the field.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from mosel.errors import InvalidArgument
from mosel.protocol.v1 import tensor_pb2

# Wire dtype name -> numpy little-endian dtype (public: validators list the names). bfloat16 travels as raw 2-byte words.
WIRE_DTYPES: dict[str, np.dtype] = {
    "bool": np.dtype("?"),
    "uint8": np.dtype("u1"),
    "int8": np.dtype("i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype("<u2"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
}
MAX_RANK = 8


def wire_dtype_name(dtype: np.dtype) -> str:
    dtype = np.dtype(dtype)
    for name, known in WIRE_DTYPES.items():
        if name != "bfloat16" and dtype.kind == known.kind and dtype.itemsize == known.itemsize:
            return name
    raise ValueError(f"dtype {dtype} has no wire name")


def encode(array: np.ndarray) -> tensor_pb2.Tensor:
    array = np.asarray(array)
    name = wire_dtype_name(array.dtype)
    little = array.astype(WIRE_DTYPES[name], copy=False)
    return tensor_pb2.Tensor(dtype=name, shape=list(array.shape), data=np.ascontiguousarray(little).tobytes())


def decode(tensor: tensor_pb2.Tensor, field: str = "tensor") -> np.ndarray:
    """Validated, read-only numpy view of a wire tensor (native byte order)."""
    if not tensor.dtype:
        raise InvalidArgument(f"{field}.dtype", "missing")
    dtype = WIRE_DTYPES.get(tensor.dtype)
    if dtype is None:
        raise InvalidArgument(f"{field}.dtype", f"unknown dtype {tensor.dtype!r}; expected one of {sorted(WIRE_DTYPES)}")
    shape = tuple(int(d) for d in tensor.shape)
    if len(shape) > MAX_RANK:
        raise InvalidArgument(f"{field}.shape", f"rank {len(shape)} exceeds {MAX_RANK}")
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"{field}.shape", f"negative dimension in {list(shape)}")
    expected = math.prod(shape) * dtype.itemsize
    if len(tensor.data) != expected:
        raise InvalidArgument(
            f"{field}.data",
            f"{len(tensor.data)} bytes do not match dtype {tensor.dtype} x shape {list(shape)} = {expected} bytes",
        )
    array = np.frombuffer(tensor.data, dtype=dtype).reshape(shape)
    if sys.byteorder == "big" and dtype.itemsize > 1:
        array = array.astype(dtype.newbyteorder("="))
    return array


# bfloat16 words with every exponent bit set are inf or NaN.
_BF16_EXPONENT = np.uint16(0x7F80)


def check_finite(array: np.ndarray, field: str, dtype_name: str = "") -> None:
    """InvalidArgument naming `field` if a float tensor holds NaN or ±inf (a model would answer
    it with NaN scores and a confident-looking label). Integer tensors pass untouched.
    `dtype_name`: the wire dtype, needed for bfloat16 (decoded as its raw uint16 words)."""
    if dtype_name == "bfloat16":
        bad = (array & _BF16_EXPONENT) == _BF16_EXPONENT
    elif array.dtype.kind == "f":
        if np.isfinite(array).all():  # the common case: one pass, no index array
            return
        bad = ~np.isfinite(array)
    else:
        return
    if not bad.any():
        return
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    raise InvalidArgument(field, f"{int(bad.sum())} of {array.size} elements are NaN or infinite "
                                 f"(first at index {list(first)}); only finite values are accepted")
