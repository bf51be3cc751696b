from mosel.protocol.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecordKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECORD_KIND_UNSPECIFIED: _ClassVar[RecordKind]
    RECORD_KIND_MODEL: _ClassVar[RecordKind]
    RECORD_KIND_LATENCY_PROFILE: _ClassVar[RecordKind]
    RECORD_KIND_ACCURACY_PROFILE: _ClassVar[RecordKind]
    RECORD_KIND_STRATEGY_MATRIX: _ClassVar[RecordKind]
    RECORD_KIND_TUNING: _ClassVar[RecordKind]
RECORD_KIND_UNSPECIFIED: RecordKind
RECORD_KIND_MODEL: RecordKind
RECORD_KIND_LATENCY_PROFILE: RecordKind
RECORD_KIND_ACCURACY_PROFILE: RecordKind
RECORD_KIND_STRATEGY_MATRIX: RecordKind
RECORD_KIND_TUNING: RecordKind

class VersionRef(_message.Message):
    __slots__ = ("model", "kind", "version", "variant", "seq", "created_unix_ms")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    model: str
    kind: RecordKind
    version: int
    variant: str
    seq: int
    created_unix_ms: int
    def __init__(self, model: _Optional[str] = ..., kind: _Optional[_Union[RecordKind, str]] = ..., version: _Optional[int] = ..., variant: _Optional[str] = ..., seq: _Optional[int] = ..., created_unix_ms: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("model", "version", "variant")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    variant: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., variant: _Optional[str] = ...) -> None: ...

class ModalityManifest(_message.Message):
    __slots__ = ("name", "spec", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec: _tensor_pb2.TensorSpec
    description: str
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[_Union[_tensor_pb2.TensorSpec, _Mapping]] = ..., description: _Optional[str] = ...) -> None: ...

class ModelManifest(_message.Message):
    __slots__ = ("name", "ref", "modalities", "configurations", "labels", "embed_dim", "checkpoint_sha256", "manifest_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATIONS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    EMBED_DIM_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    ref: VersionRef
    modalities: _containers.RepeatedCompositeFieldContainer[ModalityManifest]
    configurations: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.RepeatedScalarFieldContainer[str]
    embed_dim: int
    checkpoint_sha256: str
    manifest_json: str
    def __init__(self, name: _Optional[str] = ..., ref: _Optional[_Union[VersionRef, _Mapping]] = ..., modalities: _Optional[_Iterable[_Union[ModalityManifest, _Mapping]]] = ..., configurations: _Optional[_Iterable[str]] = ..., labels: _Optional[_Iterable[str]] = ..., embed_dim: _Optional[int] = ..., checkpoint_sha256: _Optional[str] = ..., manifest_json: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelManifest]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelManifest, _Mapping]]] = ...) -> None: ...

class LatencySeries(_message.Message):
    __slots__ = ("unit", "median_ms", "p95_ms")
    UNIT_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_MS_FIELD_NUMBER: _ClassVar[int]
    P95_MS_FIELD_NUMBER: _ClassVar[int]
    unit: str
    median_ms: _containers.RepeatedScalarFieldContainer[float]
    p95_ms: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, unit: _Optional[str] = ..., median_ms: _Optional[_Iterable[float]] = ..., p95_ms: _Optional[_Iterable[float]] = ...) -> None: ...

class LatencyProfile(_message.Message):
    __slots__ = ("model", "ref", "cost_model", "placement", "max_batch", "series", "head_ms", "device", "device_name", "precision", "warmup", "repeats", "code_version", "checkpoint_sha256")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    COST_MODEL_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    HEAD_MS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    WARMUP_FIELD_NUMBER: _ClassVar[int]
    REPEATS_FIELD_NUMBER: _ClassVar[int]
    CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    model: str
    ref: VersionRef
    cost_model: str
    placement: str
    max_batch: int
    series: _containers.RepeatedCompositeFieldContainer[LatencySeries]
    head_ms: _containers.RepeatedScalarFieldContainer[float]
    device: str
    device_name: str
    precision: str
    warmup: int
    repeats: int
    code_version: str
    checkpoint_sha256: str
    def __init__(self, model: _Optional[str] = ..., ref: _Optional[_Union[VersionRef, _Mapping]] = ..., cost_model: _Optional[str] = ..., placement: _Optional[str] = ..., max_batch: _Optional[int] = ..., series: _Optional[_Iterable[_Union[LatencySeries, _Mapping]]] = ..., head_ms: _Optional[_Iterable[float]] = ..., device: _Optional[str] = ..., device_name: _Optional[str] = ..., precision: _Optional[str] = ..., warmup: _Optional[int] = ..., repeats: _Optional[int] = ..., code_version: _Optional[str] = ..., checkpoint_sha256: _Optional[str] = ...) -> None: ...

class ConfigurationAccuracy(_message.Message):
    __slots__ = ("configuration", "accuracy", "samples", "ci_low", "ci_high")
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    configuration: str
    accuracy: float
    samples: int
    ci_low: float
    ci_high: float
    def __init__(self, configuration: _Optional[str] = ..., accuracy: _Optional[float] = ..., samples: _Optional[int] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ...) -> None: ...

class AccuracyProfile(_message.Message):
    __slots__ = ("model", "ref", "configurations", "split", "checkpoint_sha256", "precision")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATIONS_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    model: str
    ref: VersionRef
    configurations: _containers.RepeatedCompositeFieldContainer[ConfigurationAccuracy]
    split: str
    checkpoint_sha256: str
    precision: str
    def __init__(self, model: _Optional[str] = ..., ref: _Optional[_Union[VersionRef, _Mapping]] = ..., configurations: _Optional[_Iterable[_Union[ConfigurationAccuracy, _Mapping]]] = ..., split: _Optional[str] = ..., checkpoint_sha256: _Optional[str] = ..., precision: _Optional[str] = ...) -> None: ...

class Strategy(_message.Message):
    __slots__ = ("counts", "accuracy", "latency_ms", "target")
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    counts: _containers.RepeatedScalarFieldContainer[int]
    accuracy: float
    latency_ms: float
    target: float
    def __init__(self, counts: _Optional[_Iterable[int]] = ..., accuracy: _Optional[float] = ..., latency_ms: _Optional[float] = ..., target: _Optional[float] = ...) -> None: ...

class StrategyRow(_message.Message):
    __slots__ = ("job_size", "strategies")
    JOB_SIZE_FIELD_NUMBER: _ClassVar[int]
    STRATEGIES_FIELD_NUMBER: _ClassVar[int]
    job_size: int
    strategies: _containers.RepeatedCompositeFieldContainer[Strategy]
    def __init__(self, job_size: _Optional[int] = ..., strategies: _Optional[_Iterable[_Union[Strategy, _Mapping]]] = ...) -> None: ...

class StrategyMatrix(_message.Message):
    __slots__ = ("model", "ref", "configurations", "accuracies", "targets", "max_batch", "rows", "latency_profile_version", "accuracy_profile_version", "cost_model", "placement", "precision", "solve_ms", "cost_json")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATIONS_FIELD_NUMBER: _ClassVar[int]
    ACCURACIES_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_PROFILE_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_PROFILE_VERSION_FIELD_NUMBER: _ClassVar[int]
    COST_MODEL_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    SOLVE_MS_FIELD_NUMBER: _ClassVar[int]
    COST_JSON_FIELD_NUMBER: _ClassVar[int]
    model: str
    ref: VersionRef
    configurations: _containers.RepeatedScalarFieldContainer[str]
    accuracies: _containers.RepeatedScalarFieldContainer[float]
    targets: _containers.RepeatedScalarFieldContainer[float]
    max_batch: int
    rows: _containers.RepeatedCompositeFieldContainer[StrategyRow]
    latency_profile_version: int
    accuracy_profile_version: int
    cost_model: str
    placement: str
    precision: str
    solve_ms: float
    cost_json: str
    def __init__(self, model: _Optional[str] = ..., ref: _Optional[_Union[VersionRef, _Mapping]] = ..., configurations: _Optional[_Iterable[str]] = ..., accuracies: _Optional[_Iterable[float]] = ..., targets: _Optional[_Iterable[float]] = ..., max_batch: _Optional[int] = ..., rows: _Optional[_Iterable[_Union[StrategyRow, _Mapping]]] = ..., latency_profile_version: _Optional[int] = ..., accuracy_profile_version: _Optional[int] = ..., cost_model: _Optional[str] = ..., placement: _Optional[str] = ..., precision: _Optional[str] = ..., solve_ms: _Optional[float] = ..., cost_json: _Optional[str] = ...) -> None: ...

class TuningRecord(_message.Message):
    __slots__ = ("model", "ref", "thresholds", "strategy_matrix_version", "latency_profile_version", "study", "objectives", "validation_json")
    class ThresholdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ObjectivesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_MATRIX_VERSION_FIELD_NUMBER: _ClassVar[int]
    LATENCY_PROFILE_VERSION_FIELD_NUMBER: _ClassVar[int]
    STUDY_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVES_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_JSON_FIELD_NUMBER: _ClassVar[int]
    model: str
    ref: VersionRef
    thresholds: _containers.ScalarMap[str, float]
    strategy_matrix_version: int
    latency_profile_version: int
    study: str
    objectives: _containers.ScalarMap[str, float]
    validation_json: str
    def __init__(self, model: _Optional[str] = ..., ref: _Optional[_Union[VersionRef, _Mapping]] = ..., thresholds: _Optional[_Mapping[str, float]] = ..., strategy_matrix_version: _Optional[int] = ..., latency_profile_version: _Optional[int] = ..., study: _Optional[str] = ..., objectives: _Optional[_Mapping[str, float]] = ..., validation_json: _Optional[str] = ...) -> None: ...

class ListVersionsRequest(_message.Message):
    __slots__ = ("model", "kind")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    model: str
    kind: RecordKind
    def __init__(self, model: _Optional[str] = ..., kind: _Optional[_Union[RecordKind, str]] = ...) -> None: ...

class ListVersionsResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[VersionRef]
    def __init__(self, versions: _Optional[_Iterable[_Union[VersionRef, _Mapping]]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("models", "kinds", "after_seq")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedScalarFieldContainer[str]
    kinds: _containers.RepeatedScalarFieldContainer[RecordKind]
    after_seq: int
    def __init__(self, models: _Optional[_Iterable[str]] = ..., kinds: _Optional[_Iterable[_Union[RecordKind, str]]] = ..., after_seq: _Optional[int] = ...) -> None: ...

class VersionEvent(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: VersionRef
    def __init__(self, ref: _Optional[_Union[VersionRef, _Mapping]] = ...) -> None: ...
