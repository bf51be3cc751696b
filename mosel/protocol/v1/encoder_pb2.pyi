from mosel.protocol.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EncodeRequest(_message.Message):
    __slots__ = ("model", "modality", "items", "frame_stride", "model_digest")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    FRAME_STRIDE_FIELD_NUMBER: _ClassVar[int]
    MODEL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    model: str
    modality: str
    items: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Tensor]
    frame_stride: int
    model_digest: str
    def __init__(self, model: _Optional[str] = ..., modality: _Optional[str] = ..., items: _Optional[_Iterable[_Union[_tensor_pb2.Tensor, _Mapping]]] = ..., frame_stride: _Optional[int] = ..., model_digest: _Optional[str] = ...) -> None: ...

class EncodeResponse(_message.Message):
    __slots__ = ("embeddings", "compute_us", "queue_us")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_US_FIELD_NUMBER: _ClassVar[int]
    QUEUE_US_FIELD_NUMBER: _ClassVar[int]
    embeddings: _tensor_pb2.Tensor
    compute_us: int
    queue_us: int
    def __init__(self, embeddings: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., compute_us: _Optional[int] = ..., queue_us: _Optional[int] = ...) -> None: ...

class EncoderInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EncoderInfo(_message.Message):
    __slots__ = ("model", "modality", "device", "device_name", "precision", "max_batch", "warm", "embed_dim", "spec", "checkpoint_sha256", "fused_ops")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    WARM_FIELD_NUMBER: _ClassVar[int]
    EMBED_DIM_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    FUSED_OPS_FIELD_NUMBER: _ClassVar[int]
    model: str
    modality: str
    device: str
    device_name: str
    precision: str
    max_batch: int
    warm: bool
    embed_dim: int
    spec: _tensor_pb2.TensorSpec
    checkpoint_sha256: str
    fused_ops: bool
    def __init__(self, model: _Optional[str] = ..., modality: _Optional[str] = ..., device: _Optional[str] = ..., device_name: _Optional[str] = ..., precision: _Optional[str] = ..., max_batch: _Optional[int] = ..., warm: _Optional[bool] = ..., embed_dim: _Optional[int] = ..., spec: _Optional[_Union[_tensor_pb2.TensorSpec, _Mapping]] = ..., checkpoint_sha256: _Optional[str] = ..., fused_ops: _Optional[bool] = ...) -> None: ...
