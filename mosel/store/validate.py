"""Validation of everything the profile store accepts, before anything is stored.

Each `validate_*` raises mosel.errors.InvalidArgument naming the offending field
(e.g. `series[1].median_ms[4]`) or returns None. Profiles, matrices and tuning
records are checked against the model's latest manifest, which the caller looks up
(an unknown model is the caller's NOT_FOUND). Nothing here touches the database.
"""

from __future__ import annotations

import json
import math
import re
from typing import Iterable, Sequence

from mosel.errors import InvalidArgument
from mosel.modalities import all_configurations
from mosel.protocol import tensors as wire
from mosel.protocol.v1 import profile_store_pb2 as pb

PRECISIONS = ("fp32", "fp16", "bf16")
COST_MODELS = ("late_fusion", "joint")
PLACEMENTS = ("shared", "separate")
# The wire dtypes a TensorSpec may name (mosel.protocol.tensors decodes exactly these).
DTYPES = tuple(sorted(wire.WIRE_DTYPES))
MAX_MODALITIES = 8  # 255 configurations; more would make every matrix row explode
MAX_BATCH_LIMIT = 4096
# Strategy accuracy is recomputed from the counts; this much float noise is tolerated.
ACCURACY_TOLERANCE = 1e-6

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# No "+": it joins modality names into configuration names.
_MODALITY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


# -- small checks ------------------------------------------------------------------------

def _model_name(name: str, field: str) -> None:
    if not name:
        raise InvalidArgument(field, "missing")
    if not _MODEL_NAME.match(name):
        raise InvalidArgument(field, f"{name!r} is not a valid model name (letters, digits, '.', '_', '-'; "
                                     "starting with a letter or digit; at most 128 characters)")


def _finite(value: float, field: str) -> None:
    if not math.isfinite(value):
        raise InvalidArgument(field, f"must be a finite number, got {value!r}")


def _unit_interval(value: float, field: str) -> None:
    _finite(value, field)
    if not 0.0 <= value <= 1.0:
        raise InvalidArgument(field, f"must be in [0, 1], got {value!r}")


def _non_negative_int(value: int, field: str) -> None:
    if value < 0:
        raise InvalidArgument(field, f"must be >= 0, got {value}")


def _json_text(text: str, field: str) -> None:
    if not text:
        return
    try:
        json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(field, f"not valid JSON ({exc})") from None


def _precision(value: str, field: str = "precision") -> None:
    if not value:
        raise InvalidArgument(field, f"missing; one of {', '.join(PRECISIONS)}")
    if value not in PRECISIONS:
        raise InvalidArgument(field, f"{value!r} is not one of {', '.join(PRECISIONS)}")


def _max_batch(value: int, field: str = "max_batch") -> None:
    if value < 1:
        raise InvalidArgument(field, f"must be >= 1, got {value}")
    if value > MAX_BATCH_LIMIT:
        raise InvalidArgument(field, f"{value} exceeds the limit of {MAX_BATCH_LIMIT}")


def _latency_series(values: Sequence[float], field: str, max_batch: int) -> None:
    """Index n = batch size n, for n = 0..max_batch; index 0 is 0; finite, non-negative."""
    if len(values) != max_batch + 1:
        raise InvalidArgument(field, f"has {len(values)} entries; needs {max_batch + 1} "
                                     f"(batch sizes 0..max_batch={max_batch})")
    for n, value in enumerate(values):
        _finite(value, f"{field}[{n}]")
        if value < 0:
            raise InvalidArgument(f"{field}[{n}]", f"negative latency {value!r}")
    if values[0] != 0:
        raise InvalidArgument(f"{field}[0]", f"the latency of an empty batch must be 0, got {values[0]!r}")


def _exact_names(got: Sequence[str], expected: Sequence[str], field: str, what: str,
                 item_field: str | None = None) -> None:
    """`got` holds each of `expected` exactly once and nothing else (any order)."""
    item_field = item_field or field
    allowed = set(expected)
    seen: set[str] = set()
    for i, name in enumerate(got):
        if name not in allowed:
            raise InvalidArgument(item_field.format(i=i), f"{name!r} is not {what}; expected {list(expected)}")
        if name in seen:
            raise InvalidArgument(item_field.format(i=i), f"{name!r} appears more than once")
        seen.add(name)
    missing = [name for name in expected if name not in seen]
    if missing:
        raise InvalidArgument(field, f"missing {missing}; expected each of {list(expected)} exactly once")


def manifest_modalities(manifest: pb.ModelManifest) -> list[str]:
    return [m.name for m in manifest.modalities]


# -- manifests ---------------------------------------------------------------------------

def _tensor_spec(spec, field: str) -> None:
    if not spec.dtype:
        raise InvalidArgument(f"{field}.dtype", "missing")
    if spec.dtype not in DTYPES:
        raise InvalidArgument(f"{field}.dtype", f"unknown dtype {spec.dtype!r}; expected one of {list(DTYPES)}")
    shape = list(spec.shape)
    if len(shape) > wire.MAX_RANK:
        raise InvalidArgument(f"{field}.shape", f"rank {len(shape)} exceeds {wire.MAX_RANK}")
    for i, extent in enumerate(shape):
        if extent < 1 and extent != -1:
            raise InvalidArgument(f"{field}.shape[{i}]", f"must be >= 1 or -1 (dynamic), got {extent}")
    if spec.sequence and not shape:
        raise InvalidArgument(f"{field}.sequence", "a sequence axis needs a shape with at least one dimension")
    if spec.max_steps < 0:
        raise InvalidArgument(f"{field}.max_steps", f"must be >= 0, got {spec.max_steps}")
    if spec.max_steps and not spec.sequence:
        raise InvalidArgument(f"{field}.max_steps", "only applies when sequence is true")


def validate_manifest(manifest: pb.ModelManifest) -> None:
    _model_name(manifest.name, "name")
    if not manifest.modalities:
        raise InvalidArgument("modalities", "at least one modality is required")
    if len(manifest.modalities) > MAX_MODALITIES:
        raise InvalidArgument("modalities", f"{len(manifest.modalities)} modalities exceed the limit of {MAX_MODALITIES}")
    names: list[str] = []
    for i, modality in enumerate(manifest.modalities):
        field = f"modalities[{i}]"
        if not modality.name:
            raise InvalidArgument(f"{field}.name", "missing")
        if not _MODALITY_NAME.match(modality.name):
            raise InvalidArgument(f"{field}.name", f"{modality.name!r} is not a valid modality name "
                                                  "(letters, digits, '_', '-'; no '+')")
        if modality.name in names:
            raise InvalidArgument(f"{field}.name", f"duplicate modality {modality.name!r}")
        names.append(modality.name)
        if not modality.HasField("spec"):
            raise InvalidArgument(f"{field}.spec", "missing")
        _tensor_spec(modality.spec, f"{field}.spec")

    expected = all_configurations(names)
    if not manifest.configurations:
        raise InvalidArgument("configurations", f"missing; expected every non-empty subset of the modalities: {expected}")
    _exact_names(list(manifest.configurations), expected, "configurations",
                 "a canonical configuration of the modalities (names joined by '+' in modality order)",
                 "configurations[{i}]")

    labels: set[str] = set()
    for i, label in enumerate(manifest.labels):
        if not label:
            raise InvalidArgument(f"labels[{i}]", "empty label")
        if label in labels:
            raise InvalidArgument(f"labels[{i}]", f"duplicate label {label!r}")
        labels.add(label)
    _non_negative_int(manifest.embed_dim, "embed_dim")
    if manifest.checkpoint_sha256 and not _SHA256.match(manifest.checkpoint_sha256):
        raise InvalidArgument("checkpoint_sha256", "must be 64 hexadecimal digits")
    _json_text(manifest.manifest_json, "manifest_json")


# -- latency profiles --------------------------------------------------------------------

def validate_latency_profile(profile: pb.LatencyProfile, manifest: pb.ModelManifest) -> None:
    _model_name(profile.model, "model")
    if profile.cost_model not in COST_MODELS:
        raise InvalidArgument("cost_model", f"{profile.cost_model!r} is not one of {', '.join(COST_MODELS)}")
    if profile.cost_model == "late_fusion":
        if profile.placement not in PLACEMENTS:
            raise InvalidArgument("placement", f"{profile.placement!r} is not one of {', '.join(PLACEMENTS)} "
                                               "(required for late_fusion)")
        units = manifest_modalities(manifest)
        what = f"a modality of model {manifest.name!r} (late_fusion: one series per encoder)"
    else:
        if profile.placement:
            raise InvalidArgument("placement", "only applies to late_fusion; leave it empty for joint")
        units = list(manifest.configurations)
        what = f"a configuration of model {manifest.name!r} (joint: one series per configuration)"
    _max_batch(profile.max_batch)
    _exact_names([s.unit for s in profile.series], units, "series", what, "series[{i}].unit")
    for i, series in enumerate(profile.series):
        _latency_series(list(series.median_ms), f"series[{i}].median_ms", profile.max_batch)
        if series.p95_ms:
            _latency_series(list(series.p95_ms), f"series[{i}].p95_ms", profile.max_batch)
    if profile.head_ms:
        _latency_series(list(profile.head_ms), "head_ms", profile.max_batch)
    if not profile.device:
        raise InvalidArgument("device", "missing (a torch device such as cpu, cuda or cuda:1)")
    if not profile.device.split(":", 1)[0]:
        raise InvalidArgument("device", f"{profile.device!r} has no device kind before ':'")
    _precision(profile.precision)
    _non_negative_int(profile.warmup, "warmup")
    _non_negative_int(profile.repeats, "repeats")
    if profile.checkpoint_sha256 and not _SHA256.match(profile.checkpoint_sha256):
        raise InvalidArgument("checkpoint_sha256", "must be 64 hexadecimal digits")


# -- accuracy profiles -------------------------------------------------------------------

def validate_accuracy_profile(profile: pb.AccuracyProfile, manifest: pb.ModelManifest) -> None:
    _model_name(profile.model, "model")
    _exact_names([c.configuration for c in profile.configurations], list(manifest.configurations),
                 "configurations", f"a configuration of model {manifest.name!r}", "configurations[{i}].configuration")
    for i, entry in enumerate(profile.configurations):
        field = f"configurations[{i}]"
        _unit_interval(entry.accuracy, f"{field}.accuracy")
        _unit_interval(entry.ci_low, f"{field}.ci_low")
        _unit_interval(entry.ci_high, f"{field}.ci_high")
        if entry.ci_low > entry.ci_high:
            raise InvalidArgument(f"{field}.ci_low", f"{entry.ci_low!r} exceeds ci_high {entry.ci_high!r}")
        # Both bounds 0 means "no interval given"; otherwise it must contain the estimate.
        if (entry.ci_low or entry.ci_high) and not entry.ci_low <= entry.accuracy <= entry.ci_high:
            raise InvalidArgument(f"{field}.accuracy", f"{entry.accuracy!r} lies outside its interval "
                                                       f"[{entry.ci_low!r}, {entry.ci_high!r}]")
        if entry.samples <= 0:
            raise InvalidArgument(f"{field}.samples", f"must be > 0, got {entry.samples}")
    _precision(profile.precision)
    if profile.checkpoint_sha256 and not _SHA256.match(profile.checkpoint_sha256):
        raise InvalidArgument("checkpoint_sha256", "must be 64 hexadecimal digits")


# -- strategy matrices -------------------------------------------------------------------

def validate_strategy_matrix(matrix: pb.StrategyMatrix, manifest: pb.ModelManifest) -> None:
    _model_name(matrix.model, "model")
    configurations = list(matrix.configurations)
    _exact_names(configurations, list(manifest.configurations), "configurations",
                 f"a configuration of model {manifest.name!r}", "configurations[{i}]")
    if len(matrix.accuracies) != len(configurations):
        raise InvalidArgument("accuracies", f"has {len(matrix.accuracies)} entries; needs one per configuration "
                                            f"({len(configurations)})")
    accuracies = list(matrix.accuracies)
    for i, accuracy in enumerate(accuracies):
        _unit_interval(accuracy, f"accuracies[{i}]")
    previous = -math.inf
    for i, target in enumerate(matrix.targets):
        _unit_interval(target, f"targets[{i}]")
        if target <= previous:
            raise InvalidArgument(f"targets[{i}]", "the target grid must be strictly increasing")
        previous = target
    _max_batch(matrix.max_batch)
    if matrix.cost_model and matrix.cost_model not in COST_MODELS:
        raise InvalidArgument("cost_model", f"{matrix.cost_model!r} is not one of {', '.join(COST_MODELS)}")
    if matrix.placement and matrix.placement not in PLACEMENTS:
        raise InvalidArgument("placement", f"{matrix.placement!r} is not one of {', '.join(PLACEMENTS)}")
    if matrix.placement and matrix.cost_model == "joint":
        raise InvalidArgument("placement", "only applies to late_fusion; leave it empty for joint")
    _precision(matrix.precision)
    _non_negative_int(matrix.latency_profile_version, "latency_profile_version")
    _non_negative_int(matrix.accuracy_profile_version, "accuracy_profile_version")
    _finite(matrix.solve_ms, "solve_ms")
    if matrix.solve_ms < 0:
        raise InvalidArgument("solve_ms", f"must be >= 0, got {matrix.solve_ms!r}")
    _json_text(matrix.cost_json, "cost_json")

    seen_rows: set[int] = set()
    for r, row in enumerate(matrix.rows):
        field = f"rows[{r}]"
        b = row.job_size
        if not 1 <= b <= matrix.max_batch:
            raise InvalidArgument(f"{field}.job_size", f"{b} is outside 1..max_batch={matrix.max_batch}")
        if b in seen_rows:
            raise InvalidArgument(f"{field}.job_size", f"duplicate row for job size {b}")
        seen_rows.add(b)
        if not row.strategies:
            raise InvalidArgument(f"{field}.strategies", "a row needs at least one strategy")
        last_accuracy = last_latency = -math.inf
        for s, strategy in enumerate(row.strategies):
            sfield = f"{field}.strategies[{s}]"
            counts = list(strategy.counts)
            if len(counts) != len(configurations):
                raise InvalidArgument(f"{sfield}.counts", f"has {len(counts)} entries; needs one per configuration "
                                                          f"({len(configurations)})")
            for c, count in enumerate(counts):
                if count < 0:
                    raise InvalidArgument(f"{sfield}.counts[{c}]", f"negative count {count}")
            if sum(counts) != b:
                raise InvalidArgument(f"{sfield}.counts", f"sum to {sum(counts)}, not the row's job_size {b}")
            _unit_interval(strategy.accuracy, f"{sfield}.accuracy")
            expected = sum(a * x for a, x in zip(accuracies, counts)) / b
            if abs(strategy.accuracy - expected) > ACCURACY_TOLERANCE:
                raise InvalidArgument(f"{sfield}.accuracy", f"{strategy.accuracy!r} does not match "
                                                            f"sum(accuracies * counts) / job_size = {expected!r}")
            _finite(strategy.latency_ms, f"{sfield}.latency_ms")
            if strategy.latency_ms < 0:
                raise InvalidArgument(f"{sfield}.latency_ms", f"negative latency {strategy.latency_ms!r}")
            _unit_interval(strategy.target, f"{sfield}.target")
            if strategy.accuracy + ACCURACY_TOLERANCE < strategy.target:
                raise InvalidArgument(f"{sfield}.accuracy", f"{strategy.accuracy!r} is below the strategy's "
                                                            f"target {strategy.target!r}")
            if strategy.accuracy < last_accuracy or strategy.latency_ms < last_latency:
                raise InvalidArgument(sfield, "the row is not a Pareto frontier in order (accuracy ascending, "
                                              "latency non-decreasing)")
            last_accuracy, last_latency = strategy.accuracy, strategy.latency_ms
    missing = [b for b in range(1, matrix.max_batch + 1) if b not in seen_rows]
    if missing:
        raise InvalidArgument("rows", f"missing rows for job sizes {_ranges(missing)} "
                                      f"(every size 1..max_batch={matrix.max_batch} is needed)")


def _ranges(values: Iterable[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    out: list[str] = []
    values = sorted(values)
    start = prev = values[0]
    for v in values[1:] + [None]:  # type: ignore[operator]
        if v is not None and v == prev + 1:
            prev = v
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(out)


# -- tuning ------------------------------------------------------------------------------

def validate_tuning(record: pb.TuningRecord, manifest: pb.ModelManifest) -> None:
    _model_name(record.model, "model")
    if not record.thresholds:
        raise InvalidArgument("thresholds", "at least one threshold is required")
    for name in sorted(record.thresholds):
        if not name:
            raise InvalidArgument("thresholds", "empty threshold name")
        _finite(record.thresholds[name], f"thresholds[{name!r}]")
    for name in sorted(record.objectives):
        if not name:
            raise InvalidArgument("objectives", "empty objective name")
        _finite(record.objectives[name], f"objectives[{name!r}]")
    _non_negative_int(record.strategy_matrix_version, "strategy_matrix_version")
    _non_negative_int(record.latency_profile_version, "latency_profile_version")
    _json_text(record.validation_json, "validation_json")
