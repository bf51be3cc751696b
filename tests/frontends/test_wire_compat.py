"""Our `inference` protos are a wire-compatible subset of Triton's: the same service, message,
field and enum names and numbers, types and cardinalities, as tritonclient's descriptors say.
(Each side is described in its own process: one protobuf pool cannot hold both.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SERVED = {"ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
          "ModelStreamInfer", "ModelConfig", "ModelStatistics"}


def _describe(which: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "tests.frontends.describe", which], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def ours():
    return _describe("ours")


@pytest.fixture(scope="module")
def triton():
    return _describe("triton")


def test_the_service_has_tritons_name_and_the_rpcs_we_serve(ours, triton):
    assert set(ours["services"]) == {"inference.GRPCInferenceService"}
    methods = ours["services"]["inference.GRPCInferenceService"]
    assert set(methods) == SERVED
    for name, method in methods.items():
        assert method == triton["services"]["inference.GRPCInferenceService"][name], name


def test_every_message_field_matches_tritons(ours, triton):
    mismatches = []
    for message, fields in ours["messages"].items():
        theirs = triton["messages"].get(message)
        if theirs is None:
            mismatches.append(f"{message}: not a Triton message")
            continue
        for name, field in fields.items():
            if theirs.get(name) != field:
                mismatches.append(f"{message}.{name}: ours {field}, Triton {theirs.get(name)}")
        numbers = {f["number"]: n for n, f in theirs.items()}
        for name, field in fields.items():  # no number of ours means another Triton field
            if numbers.get(field["number"]) not in (None, name):
                mismatches.append(f"{message}.{name} = {field['number']} is Triton's {numbers[field['number']]}")
    assert not mismatches, "\n".join(mismatches)
    # the messages the fronts need are all there, with every field Triton gives them
    for message in ("inference.ModelInferRequest", "inference.ModelInferResponse", "inference.InferParameter",
                    "inference.InferTensorContents", "inference.ModelStreamInferResponse",
                    "inference.ModelInferRequest.InferInputTensor", "inference.ModelMetadataResponse.TensorMetadata"):
        assert ours["messages"][message] == triton["messages"][message], message


def test_enums_match_tritons(ours, triton):
    for enum, values in ours["enums"].items():
        assert values.items() <= triton["enums"][enum].items(), enum
    assert ours["enums"]["inference.DataType"] == triton["enums"]["inference.DataType"]
