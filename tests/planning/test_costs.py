"""Cost models (mosel.planning.costs): latency of splits, loads, validation, serialisation."""

from __future__ import annotations

import json
import math

import pytest

from mosel.planning.costs import CostModel, JointCost, LateFusionCost


def _joint():
    return JointCost(
        {
            "audio": [0.0, 2.0, 3.0, 5.0],
            "audio+video": [0.0, 10.0, 9.0, 30.0],  # not monotone: allowed
            "video": [0.0, 4.0, 7.0, 8.0],
        },
        modalities=["audio", "video"],
    )


def _late(placement, head=None):
    return LateFusionCost(
        {"audio": [0.0, 1.0, 1.5, 4.0], "video": [0.0, 3.0, 2.0, 6.0]}, placement, head
    )


# --------------------------------------------------------------------- joint


def test_joint_configurations_are_canonical_and_latency_adds_micro_batches():
    cost = _joint()
    assert cost.modalities == ("audio", "video")
    assert cost.configurations == ("audio+video", "audio", "video")
    assert cost.max_batch == 3
    assert cost.latency({"audio+video": 1, "audio": 2}) == 10.0 + 3.0
    assert cost.latency([1, 0, 2]) == 10.0 + 7.0
    assert cost.latency((0, 0, 0)) == 0.0
    assert cost.latency({"audio+video": 2}) == 9.0  # non-monotone table used as is
    assert cost.encoder_loads({"video": 3}) == {"audio+video": 0, "audio": 0, "video": 3}


def test_joint_infers_modality_order_from_names():
    cost = JointCost({"video": [0, 1], "audio+video": [0, 2], "audio": [0, 3]})
    assert cost.modalities == ("audio", "video")
    assert cost.configurations == ("audio+video", "audio", "video")
    with pytest.raises(ValueError, match="contradictory"):
        JointCost({"a+b": [0, 1], "b+a": [0, 1]})


def test_joint_subset_of_configurations():
    cost = JointCost({"audio+video": [0, 5], "video": [0, 1]}, modalities=("audio", "video"))
    assert cost.configurations == ("audio+video", "video")
    with pytest.raises(ValueError, match="unknown configuration 'audio'"):
        cost.latency({"audio": 1})


# --------------------------------------------------------------------- late fusion


def test_late_fusion_loads_batch_configurations_together():
    cost = _late("shared")
    assert cost.configurations == ("audio+video", "audio", "video")
    split = {"audio+video": 1, "audio": 1, "video": 1}
    assert cost.encoder_loads(split) == {"audio": 2, "video": 2}
    assert cost.latency(split) == 1.5 + 2.0
    assert cost.latency({"audio": 3}) == 4.0
    assert cost.latency({"audio+video": 3}) == 4.0 + 6.0


def test_late_fusion_separate_devices_take_the_busiest_encoder_and_head_adds():
    sep = _late("separate")
    assert sep.latency({"audio+video": 1, "audio": 1, "video": 1}) == max(1.5, 2.0)
    assert sep.latency({"audio": 3}) == 4.0
    head = [0.0, 0.5, 0.25, 0.75]
    with_head = _late("separate", head)
    assert with_head.latency({"audio": 2, "video": 1}) == max(1.5, 3.0) + 0.75
    assert _late("shared", head).latency({"audio+video": 2}) == (1.5 + 2.0) + 0.25


def test_late_fusion_configuration_subset_and_modalities_order():
    cost = LateFusionCost(
        {"video": [0, 2, 3], "audio": [0, 1, 2]},
        "shared",
        modalities=["audio", "video"],
        configurations=["video", "audio+video"],
    )
    assert cost.modalities == ("audio", "video")
    assert cost.configurations == ("audio+video", "video")
    assert cost.encoder_loads([1, 1]) == {"audio": 1, "video": 2}


# --------------------------------------------------------------------- serialisation


@pytest.mark.parametrize(
    "cost",
    [_joint(), _late("shared"), _late("separate", [0.0, 0.5, 0.25, 0.75])],
    ids=["joint", "shared", "separate+head"],
)
def test_round_trip_through_json(cost):
    d = json.loads(json.dumps(cost.to_dict()))
    back = CostModel.from_dict(d)
    assert type(back) is type(cost)
    assert back == cost
    assert back.to_dict() == cost.to_dict()
    assert type(cost).from_dict(d) == cost
    for split in ([1, 1, 1], [3, 0, 0], [0, 2, 1]):
        assert back.latency(split) == cost.latency(split)


def test_from_dict_refuses_wrong_kind():
    with pytest.raises(ValueError, match="unknown kind"):
        CostModel.from_dict({"kind": "magic"})
    with pytest.raises(ValueError, match="cannot be read as JointCost"):
        JointCost.from_dict(_late("shared").to_dict())
    bad = _joint().to_dict()
    bad["max_batch"] = 7
    with pytest.raises(ValueError, match="max_batch"):
        CostModel.from_dict(bad)


# --------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "tables, message",
    [
        ({"audio": [0, 1, 2], "video": [0, 1]}, r"configuration 'video'.*missing batch size 2$"),
        ({"audio": [0, 1, None], "video": [0, 1, 2]}, r"config_latency\['audio'\]: missing latency for batch size 2"),
        ({"audio": [0, math.nan], "video": [0, 1]}, r"config_latency\['audio'\]: latency for batch size 1 is NaN"),
        ({"audio": [0, 1], "video": [0, -1.0]}, r"config_latency\['video'\]: latency for batch size 1 is negative"),
        ({"audio": [0, math.inf], "video": [0, 1]}, r"'audio'.*infinite"),
        ({"audio": [1, 1], "video": [0, 1]}, r"'audio'.*batch size 0 must be 0"),
        ({"audio": [0, "x"], "video": [0, 1]}, r"'audio'.*not a number"),
        ({"audio": [0], "video": [0]}, r"B >= 1"),
        ({"audio": [0, 1, 2, 3], "video": [0, 1]}, r"configuration 'video'.*missing batch sizes 2\.\.3"),
    ],
)
def test_joint_table_validation(tables, message):
    with pytest.raises(ValueError, match=message):
        JointCost(tables, modalities=["audio", "video"])


def test_joint_configuration_names_are_checked_against_modalities():
    with pytest.raises(ValueError, match=r"configuration 'audio\+text'.*unknown modalities \['text'\]"):
        JointCost({"audio+text": [0, 1]}, modalities=["audio", "video"])
    with pytest.raises(ValueError, match=r"'video\+audio' is not canonical.*expected 'audio\+video'"):
        JointCost({"video+audio": [0, 1]}, modalities=["audio", "video"])
    with pytest.raises(ValueError, match="repeated modality"):
        JointCost({"audio+audio": [0, 1]})
    with pytest.raises(ValueError, match="duplicate modalities"):
        JointCost({"audio": [0, 1]}, modalities=["audio", "audio"])


def test_late_fusion_validation():
    enc = {"audio": [0, 1, 2], "video": [0, 1, 2]}
    with pytest.raises(ValueError, match="placement"):
        LateFusionCost(enc, "together")
    with pytest.raises(ValueError, match=r"no latency table for modalities \['image'\]"):
        LateFusionCost(enc, "shared", modalities=["audio", "image", "video"])
    with pytest.raises(ValueError, match=r"unknown modalities \['video'\]"):
        LateFusionCost(enc, "shared", modalities=["audio"])
    with pytest.raises(ValueError, match="fusion head.*missing batch size 2$"):
        LateFusionCost(enc, "shared", [0, 1])
    with pytest.raises(ValueError, match=r"encoder 'video'.*covers n = 0\.\.1.*missing batch size 2$"):
        LateFusionCost({"audio": [0, 1, 2], "video": [0, 1]}, "shared")
    with pytest.raises(ValueError, match=r"encoder_latency\['video'\]: latency for batch size 2 is NaN"):
        LateFusionCost({"audio": [0, 1, 2], "video": [0, 1, float("nan")]}, "separate")
    with pytest.raises(ValueError, match=r"head_latency: latency for batch size 1 is negative"):
        LateFusionCost(enc, "shared", [0, -1, 2])
    with pytest.raises(ValueError, match=r"configuration 'audio\+image'"):
        LateFusionCost(enc, "shared", configurations=["audio+image"])


@pytest.mark.parametrize("make", [_joint, lambda: _late("shared")], ids=["joint", "late"])
def test_split_validation(make):
    cost = make()
    with pytest.raises(ValueError, match="unknown configuration 'text'"):
        cost.latency({"text": 1})
    with pytest.raises(ValueError, match=r"split\['audio'\]: count must be >= 0"):
        cost.latency({"audio": -1})
    with pytest.raises(ValueError, match="count must be an integer"):
        cost.latency({"audio": 1.5})
    with pytest.raises(ValueError, match="2 counts given for 3 configurations"):
        cost.latency([1, 1])
    with pytest.raises(ValueError, match="exceeds the profiled max_batch 3"):
        cost.latency({"audio": 4})
