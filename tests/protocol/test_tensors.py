import numpy as np
import pytest

from mosel.errors import InvalidArgument
from mosel.protocol import tensors as wire
from mosel.protocol.v1 import tensor_pb2


@pytest.mark.parametrize("dtype", ["uint8", "int16", "int32", "int64", "float16", "float32", "float64", "bool"])
def test_round_trip(dtype):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 2)) * 10).astype(dtype)
    back = wire.decode(wire.encode(array))
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_big_endian_input_is_sent_little_endian():
    array = np.arange(6, dtype=">i4").reshape(2, 3)
    t = wire.encode(array)
    assert t.data == np.arange(6, dtype="<i4").tobytes()
    np.testing.assert_array_equal(wire.decode(t), array)


def test_zero_size_tensor():
    back = wire.decode(wire.encode(np.zeros((0, 5), np.float32)))
    assert back.shape == (0, 5)


@pytest.mark.parametrize(
    "tensor, field, words",
    [
        (tensor_pb2.Tensor(dtype="float32", shape=[2, 2], data=b"\0" * 15), "x.data", "15 bytes"),
        (tensor_pb2.Tensor(dtype="complex64", shape=[1], data=b"\0" * 8), "x.dtype", "unknown dtype"),
        (tensor_pb2.Tensor(dtype="", shape=[1], data=b"\0"), "x.dtype", "missing"),
        (tensor_pb2.Tensor(dtype="uint8", shape=[2, -1], data=b""), "x.shape", "negative"),
        (tensor_pb2.Tensor(dtype="uint8", shape=[1] * 9, data=b"\0"), "x.shape", "rank"),
    ],
)
def test_bad_tensors_name_the_field(tensor, field, words):
    with pytest.raises(InvalidArgument) as info:
        wire.decode(tensor, field="x")
    assert info.value.field == field
    assert words in str(info.value)
