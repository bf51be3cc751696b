from mosel.protocol.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SLO(_message.Message):
    __slots__ = ("budget_ms", "deadline_unix_ms", "min_accuracy", "allowed_modalities", "required_modalities", "priority")
    BUDGET_MS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODALITIES_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_MODALITIES_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    budget_ms: float
    deadline_unix_ms: int
    min_accuracy: float
    allowed_modalities: _containers.RepeatedScalarFieldContainer[str]
    required_modalities: _containers.RepeatedScalarFieldContainer[str]
    priority: int
    def __init__(self, budget_ms: _Optional[float] = ..., deadline_unix_ms: _Optional[int] = ..., min_accuracy: _Optional[float] = ..., allowed_modalities: _Optional[_Iterable[str]] = ..., required_modalities: _Optional[_Iterable[str]] = ..., priority: _Optional[int] = ...) -> None: ...

class InferRequest(_message.Message):
    __slots__ = ("model", "id", "inputs", "slo")
    class InputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _tensor_pb2.Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    SLO_FIELD_NUMBER: _ClassVar[int]
    model: str
    id: str
    inputs: _containers.MessageMap[str, _tensor_pb2.Tensor]
    slo: SLO
    def __init__(self, model: _Optional[str] = ..., id: _Optional[str] = ..., inputs: _Optional[_Mapping[str, _tensor_pb2.Tensor]] = ..., slo: _Optional[_Union[SLO, _Mapping]] = ...) -> None: ...

class Timing(_message.Message):
    __slots__ = ("queue_us", "compute_us", "total_us")
    QUEUE_US_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_US_FIELD_NUMBER: _ClassVar[int]
    TOTAL_US_FIELD_NUMBER: _ClassVar[int]
    queue_us: int
    compute_us: int
    total_us: int
    def __init__(self, queue_us: _Optional[int] = ..., compute_us: _Optional[int] = ..., total_us: _Optional[int] = ...) -> None: ...

class InferResponse(_message.Message):
    __slots__ = ("id", "model", "scores", "label", "label_name", "modalities_used", "configuration", "expected_accuracy", "degraded", "timing", "policy", "degraded_reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    LABEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_USED_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: str
    scores: _containers.RepeatedScalarFieldContainer[float]
    label: int
    label_name: str
    modalities_used: _containers.RepeatedScalarFieldContainer[str]
    configuration: str
    expected_accuracy: float
    degraded: bool
    timing: Timing
    policy: str
    degraded_reason: str
    def __init__(self, id: _Optional[str] = ..., model: _Optional[str] = ..., scores: _Optional[_Iterable[float]] = ..., label: _Optional[int] = ..., label_name: _Optional[str] = ..., modalities_used: _Optional[_Iterable[str]] = ..., configuration: _Optional[str] = ..., expected_accuracy: _Optional[float] = ..., degraded: _Optional[bool] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ..., policy: _Optional[str] = ..., degraded_reason: _Optional[str] = ...) -> None: ...

class JobItem(_message.Message):
    __slots__ = ("id", "inputs")
    class InputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _tensor_pb2.Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    inputs: _containers.MessageMap[str, _tensor_pb2.Tensor]
    def __init__(self, id: _Optional[str] = ..., inputs: _Optional[_Mapping[str, _tensor_pb2.Tensor]] = ...) -> None: ...

class InferJobRequest(_message.Message):
    __slots__ = ("model", "job_id", "items", "slo")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    SLO_FIELD_NUMBER: _ClassVar[int]
    model: str
    job_id: str
    items: _containers.RepeatedCompositeFieldContainer[JobItem]
    slo: SLO
    def __init__(self, model: _Optional[str] = ..., job_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[JobItem, _Mapping]]] = ..., slo: _Optional[_Union[SLO, _Mapping]] = ...) -> None: ...

class ConfigurationCount(_message.Message):
    __slots__ = ("configuration", "count")
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    configuration: str
    count: int
    def __init__(self, configuration: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class InferJobResponse(_message.Message):
    __slots__ = ("job_id", "results", "strategy", "expected_accuracy", "degraded", "timing")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    results: _containers.RepeatedCompositeFieldContainer[InferResponse]
    strategy: _containers.RepeatedCompositeFieldContainer[ConfigurationCount]
    expected_accuracy: float
    degraded: bool
    timing: Timing
    def __init__(self, job_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[InferResponse, _Mapping]]] = ..., strategy: _Optional[_Iterable[_Union[ConfigurationCount, _Mapping]]] = ..., expected_accuracy: _Optional[float] = ..., degraded: _Optional[bool] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("request", "job")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    request: InferRequest
    job: InferJobRequest
    def __init__(self, request: _Optional[_Union[InferRequest, _Mapping]] = ..., job: _Optional[_Union[InferJobRequest, _Mapping]] = ...) -> None: ...

class StreamError(_message.Message):
    __slots__ = ("id", "code", "message")
    ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    code: int
    message: str
    def __init__(self, id: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("response", "job", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: InferResponse
    job: InferJobResponse
    error: StreamError
    def __init__(self, response: _Optional[_Union[InferResponse, _Mapping]] = ..., job: _Optional[_Union[InferJobResponse, _Mapping]] = ..., error: _Optional[_Union[StreamError, _Mapping]] = ...) -> None: ...

class ModelMetadataRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ModalityInfo(_message.Message):
    __slots__ = ("name", "spec", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec: _tensor_pb2.TensorSpec
    description: str
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[_Union[_tensor_pb2.TensorSpec, _Mapping]] = ..., description: _Optional[str] = ...) -> None: ...

class ConfigurationInfo(_message.Message):
    __slots__ = ("name", "modalities", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "samples", "latency_ms_b1")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_CI_LOW_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_B1_FIELD_NUMBER: _ClassVar[int]
    name: str
    modalities: _containers.RepeatedScalarFieldContainer[str]
    accuracy: float
    accuracy_ci_low: float
    accuracy_ci_high: float
    samples: int
    latency_ms_b1: float
    def __init__(self, name: _Optional[str] = ..., modalities: _Optional[_Iterable[str]] = ..., accuracy: _Optional[float] = ..., accuracy_ci_low: _Optional[float] = ..., accuracy_ci_high: _Optional[float] = ..., samples: _Optional[int] = ..., latency_ms_b1: _Optional[float] = ...) -> None: ...

class ModelMetadata(_message.Message):
    __slots__ = ("name", "modalities", "configurations", "labels", "accuracy_profile_version", "latency_profile_version", "strategy_matrix_version", "tuning_version", "policy", "max_job_size", "model_version", "weights_sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATIONS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_PROFILE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LATENCY_PROFILE_VERSION_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_MATRIX_VERSION_FIELD_NUMBER: _ClassVar[int]
    TUNING_VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    MAX_JOB_SIZE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    modalities: _containers.RepeatedCompositeFieldContainer[ModalityInfo]
    configurations: _containers.RepeatedCompositeFieldContainer[ConfigurationInfo]
    labels: _containers.RepeatedScalarFieldContainer[str]
    accuracy_profile_version: int
    latency_profile_version: int
    strategy_matrix_version: int
    tuning_version: int
    policy: str
    max_job_size: int
    model_version: str
    weights_sha256: str
    def __init__(self, name: _Optional[str] = ..., modalities: _Optional[_Iterable[_Union[ModalityInfo, _Mapping]]] = ..., configurations: _Optional[_Iterable[_Union[ConfigurationInfo, _Mapping]]] = ..., labels: _Optional[_Iterable[str]] = ..., accuracy_profile_version: _Optional[int] = ..., latency_profile_version: _Optional[int] = ..., strategy_matrix_version: _Optional[int] = ..., tuning_version: _Optional[int] = ..., policy: _Optional[str] = ..., max_job_size: _Optional[int] = ..., model_version: _Optional[str] = ..., weights_sha256: _Optional[str] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class Stats(_message.Message):
    __slots__ = ("requests_received", "requests_served", "errors", "requests_degraded", "served_by_configuration", "deadline_misses", "mean_expected_accuracy", "latency_p50_ms", "latency_p99_ms", "queue_depth", "uptime_s", "policy", "jobs_received", "jobs_served", "lanes", "finishing", "pipeline_depth", "planning_headroom_ms", "requests_degraded_unavailable", "modalities_unavailable")
    class ErrorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ServedByConfigurationEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    REQUESTS_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_SERVED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_DEGRADED_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MISSES_FIELD_NUMBER: _ClassVar[int]
    MEAN_EXPECTED_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P99_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    JOBS_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    JOBS_SERVED_FIELD_NUMBER: _ClassVar[int]
    LANES_FIELD_NUMBER: _ClassVar[int]
    FINISHING_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    PLANNING_HEADROOM_MS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_DEGRADED_UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    requests_received: int
    requests_served: int
    errors: _containers.ScalarMap[str, int]
    requests_degraded: int
    served_by_configuration: _containers.ScalarMap[str, int]
    deadline_misses: int
    mean_expected_accuracy: float
    latency_p50_ms: float
    latency_p99_ms: float
    queue_depth: int
    uptime_s: float
    policy: str
    jobs_received: int
    jobs_served: int
    lanes: _containers.RepeatedCompositeFieldContainer[LaneCost]
    finishing: LaneCost
    pipeline_depth: int
    planning_headroom_ms: float
    requests_degraded_unavailable: int
    modalities_unavailable: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, requests_received: _Optional[int] = ..., requests_served: _Optional[int] = ..., errors: _Optional[_Mapping[str, int]] = ..., requests_degraded: _Optional[int] = ..., served_by_configuration: _Optional[_Mapping[str, int]] = ..., deadline_misses: _Optional[int] = ..., mean_expected_accuracy: _Optional[float] = ..., latency_p50_ms: _Optional[float] = ..., latency_p99_ms: _Optional[float] = ..., queue_depth: _Optional[int] = ..., uptime_s: _Optional[float] = ..., policy: _Optional[str] = ..., jobs_received: _Optional[int] = ..., jobs_served: _Optional[int] = ..., lanes: _Optional[_Iterable[_Union[LaneCost, _Mapping]]] = ..., finishing: _Optional[_Union[LaneCost, _Mapping]] = ..., pipeline_depth: _Optional[int] = ..., planning_headroom_ms: _Optional[float] = ..., requests_degraded_unavailable: _Optional[int] = ..., modalities_unavailable: _Optional[_Iterable[str]] = ...) -> None: ...

class LaneCost(_message.Message):
    __slots__ = ("name", "overhead_ms", "scale", "noise", "samples")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OVERHEAD_MS_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    NOISE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    name: str
    overhead_ms: float
    scale: float
    noise: float
    samples: int
    def __init__(self, name: _Optional[str] = ..., overhead_ms: _Optional[float] = ..., scale: _Optional[float] = ..., noise: _Optional[float] = ..., samples: _Optional[int] = ...) -> None: ...
