"""The live dispatcher with in-process fake encoders: EDF order, expired work never
started, exactly one answer per job, tuned thresholds applied, oversize jobs."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
import torch

from mosel.errors import DeadlineExceeded, MoselError
from mosel.models.registry import get_pack
from mosel.engine.dispatcher import Dispatcher
from mosel.scheduling.job import Item, Job
from mosel.engine.served_model import ServedModel
from mosel.scheduling.agnostic import AgnosticPolicy
from mosel.scheduling.policy import apply_thresholds
from mosel.scheduling.registry import make_policy
from mosel.engine.stats import ServingStats


class FakeEncoders:
    """Records every batch; optionally blocks until released, to hold a round in flight."""

    def __init__(self, dim: int, gate: threading.Event | None = None):
        self.dim = dim
        self.gate = gate
        self.calls: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        self.down: set[str] = set()  # modalities reported with no replica up

    def down_modalities(self):
        return set(self.down)

    def encode(self, modality, tensors, timeout_s, digest=""):
        if self.gate is not None:
            self.gate.wait(10)
        with self.lock:
            self.calls.append((modality, len(tensors)))
        return np.ones((len(tensors), self.dim), np.float32), 1


@pytest.fixture
def model():
    pack = get_pack("av-digits", preset="tiny")
    served = ServedModel("av-digits", pack, pack.build_fusion_head().eval(), manifest={})
    served.update_profiles(accuracy={c: 0.9 - 0.05 * i for i, c in enumerate(served.configurations)})
    return served


def make_job(model, size: int, budget_s: float, name: str) -> Job:
    now = time.monotonic()
    items = [Item(id=f"{name}-{i}", inputs={m: None for m in model.pack.modality_names},
                  candidates=list(model.configurations), index=i) for i in range(size)]
    return Job(id=name, model=model, items=items, received=now, deadline=now + budget_s, min_accuracy=0.0)


def test_edf_order_expired_not_started_and_one_answer_each(model):
    gate = threading.Event()
    encoders = FakeEncoders(model.pack.embed_dim, gate)
    d = Dispatcher(model, encoders, AgnosticPolicy(), ServingStats(), max_round_items=4)
    try:
        blocker = make_job(model, 4, 5.0, "blocker")  # holds the first round in flight
        d.submit(blocker)
        while blocker.started is None:  # its round is in flight, held at the encoders
            time.sleep(0.01)
        late = make_job(model, 2, 5.0, "late")
        soon = make_job(model, 2, 2.0, "soon")
        expiring = make_job(model, 1, 0.05, "expiring")
        for job in (late, soon, expiring):
            d.submit(job)
        time.sleep(0.3)  # `expiring` passes its deadline while the blocker's round is in flight
        gate.set()
        answers = [j.future.result(10) for j in (blocker, soon, late)]
        with pytest.raises(DeadlineExceeded):
            expiring.future.result(10)
        assert [len(a.results) for a in answers] == [4, 2, 2]
        # EDF: `soon` (earlier deadline) was dispatched before `late`, in one round of 4.
        assert soon.started <= late.started
        # The expired job never reached an encoder: 2 rounds x 3 modalities, none of size 1.
        assert len(encoders.calls) == 6 and all(n == 4 for _, n in encoders.calls)
        for job in (blocker, soon, late, expiring):
            assert job.future.done()
    finally:
        d.stop()


def test_a_job_larger_than_a_round_runs_alone(model):
    d = Dispatcher(model, FakeEncoders(model.pack.embed_dim), AgnosticPolicy(), ServingStats(), max_round_items=2)
    try:
        job = make_job(model, 5, 5.0, "big")
        d.submit(job)
        assert len(job.future.result(10).results) == 5
    finally:
        d.stop()


def test_tuned_thresholds_reach_the_policy_and_the_round_size(model):
    policy = make_policy("mosel", max_round_items=32)
    d = Dispatcher(model, FakeEncoders(model.pack.embed_dim), policy, ServingStats(), max_round_items=32)
    try:
        model.update_profiles(thresholds={"budget_margin": 0.8, "lookahead": 7.0, "max_round_items": 16,
                                          "grid_step": 0.005}, tuning_version=3)
        job = make_job(model, 1, 5.0, "one")
        d.submit(job)
        job.future.result(10)
        assert d.tuning_version == 3
        assert policy.budget_margin == 0.8 and policy.lookahead == 7 and isinstance(policy.lookahead, int)
        assert policy.max_round_items == 16 and d.max_round_items == 16
    finally:
        d.stop()


def test_apply_thresholds_ignores_what_a_policy_does_not_have():
    assert apply_thresholds(AgnosticPolicy(), {"budget_margin": 0.5}) == {}


def test_fusion_gets_only_the_modalities_each_request_used(model):
    seen = {}

    class Head(torch.nn.Module):
        def forward(self, emb, present):
            seen["present"] = present.clone()
            return torch.zeros(emb.shape[0], 10)

    model = ServedModel(model.name, model.pack, Head(), manifest={})
    model.update_profiles(accuracy={c: 0.9 for c in model.configurations})
    d = Dispatcher(model, FakeEncoders(model.pack.embed_dim), AgnosticPolicy(), ServingStats())
    try:
        job = make_job(model, 2, 5.0, "mixed")
        job.items[1].candidates = ["audio"]
        d.submit(job)
        answer = job.future.result(10)
        assert [r.configuration for r in answer.results] == ["audio+image+video", "audio"]
        assert seen["present"].tolist() == [[True, True, True], [True, False, False]]
    finally:
        d.stop()


@pytest.mark.parametrize("wait_s, rounds", [(0.0, 2), (1.0, 1)])
def test_batch_wait_lets_a_part_filled_round_gather_requests(model, wait_s, rounds):
    gate = threading.Event()
    encoders = FakeEncoders(model.pack.embed_dim)
    d = Dispatcher(model, encoders, AgnosticPolicy(), ServingStats(), max_round_items=2, max_wait_s=wait_s)
    try:
        first = make_job(model, 1, 5.0, "first")
        d.submit(first)
        time.sleep(0.2)
        second = make_job(model, 1, 5.0, "second")
        d.submit(second)
        first.future.result(10), second.future.result(10)
        sizes = [n for m, n in encoders.calls if m == "audio"]
        assert len(sizes) == rounds and sum(sizes) == 2
    finally:
        gate.set()
        d.stop()


def test_batch_wait_spends_at_most_half_of_a_jobs_budget(model):
    encoders = FakeEncoders(model.pack.embed_dim)
    d = Dispatcher(model, encoders, AgnosticPolicy(), ServingStats(), max_round_items=8, max_wait_s=5.0)
    try:
        job = make_job(model, 1, 1.0, "urgent")
        d.submit(job)
        job.future.result(10)
        assert 0.45 <= job.started - job.received < 0.9
    finally:
        d.stop()


def test_a_failing_plan_fails_the_queue_instead_of_stranding_it(model):
    class Broken(AgnosticPolicy):
        def plan(self, queue, now):
            raise RuntimeError("bad matrix")

    d = Dispatcher(model, FakeEncoders(model.pack.embed_dim), Broken(), ServingStats())
    try:
        job = make_job(model, 2, 5.0, "stranded")
        d.submit(job)
        with pytest.raises(MoselError, match="internal error") as info:  # no internals on the wire
            job.future.result(10)
        assert info.value.code == grpc.StatusCode.INTERNAL
        assert d.queue_depth() == 0
    finally:
        d.stop()


# ---------------------------------------------------------------- per-encoder lanes, pipelining


class GatedEncoders(FakeEncoders):
    """Holds the calls of some modalities until their gate opens; can fail one modality."""

    def __init__(self, dim, gated=(), fail=None):
        super().__init__(dim)
        self.gates = {m: threading.Event() for m in gated}
        self.fail = fail
        self.started: list[str] = []

    def encode(self, modality, tensors, timeout_s, digest=""):
        with self.lock:
            self.started.append(modality)
        if modality in self.gates:
            self.gates[modality].wait(10)
        if modality == self.fail:
            raise MoselError(f"{modality} encoder broke")
        return super().encode(modality, tensors, timeout_s)


class RecordingPolicy(AgnosticPolicy):
    """Agnostic, plus the feedback hooks: every committed round must be reported once."""

    def __init__(self):
        self.started, self.finished, self.lanes = [], [], []

    def round_started(self, jobs, now):
        token = object()
        self.started.append(token)
        return token

    def lane_finished(self, ticket, lane, now, measured_s):
        self.lanes.append((ticket, lane, measured_s))

    def round_finished(self, ticket, now, finishing_s):
        self.finished.append((ticket, finishing_s))


def _separate(model):
    from mosel.planning.costs import LateFusionCost

    tables = {m: [0.0] + [1.0 + n for n in range(1, 33)] for m in model.pack.modality_names}
    model.update_profiles(cost=LateFusionCost(tables, "separate"))


@pytest.mark.parametrize("depth", [1, 2])
def test_a_later_round_uses_a_free_encoder_while_another_is_busy(model, depth):
    """Encoders on separate devices each have their own queue: with two rounds in flight an
    audio-only job is answered while the round before it still waits on the video encoder."""
    _separate(model)
    encoders = GatedEncoders(model.pack.embed_dim, gated=["video"])
    d = Dispatcher(model, encoders, AgnosticPolicy(), ServingStats(), max_round_items=1, pipeline_depth=depth)
    try:
        full = make_job(model, 1, 5.0, "full")
        d.submit(full)
        while "video" not in encoders.started:
            time.sleep(0.01)
        quick = make_job(model, 1, 5.0, "quick")
        quick.items[0].candidates = ["audio"]
        d.submit(quick)
        if depth == 2:
            assert quick.future.result(5).results[0].configuration == "audio"
            assert not full.future.done()  # still held at the video encoder
        else:
            time.sleep(0.3)
            assert not quick.future.done()  # strict rounds: waits for the round in flight
        encoders.gates["video"].set()
        assert full.future.result(5).results[0].configuration == "audio+image+video"
        quick.future.result(5)
    finally:
        encoders.gates["video"].set()
        d.stop()


def test_a_round_expiring_behind_a_busy_encoder_is_not_started(model):
    _separate(model)
    encoders = GatedEncoders(model.pack.embed_dim, gated=["video"])
    policy = RecordingPolicy()
    d = Dispatcher(model, encoders, policy, ServingStats(), max_round_items=1, pipeline_depth=2)
    try:
        full = make_job(model, 1, 5.0, "full")
        d.submit(full)
        while "video" not in encoders.started:
            time.sleep(0.01)
        short = make_job(model, 1, 0.2, "short")  # its video batch waits behind the held one
        d.submit(short)
        time.sleep(0.4)
        encoders.gates["video"].set()
        full.future.result(5)
        with pytest.raises(DeadlineExceeded):
            short.future.result(5)
        assert encoders.started.count("video") == 1  # the expired batch never reached the encoder
        # both rounds were reported back (the expired one without a time), so no stale backlog
        assert [t for t, _ in policy.finished] == policy.started and len(policy.started) == 2
        assert policy.finished[1][1] is None
        assert sum(1 for t, _, m in policy.lanes if t is policy.started[1] and m is None) >= 1
    finally:
        encoders.gates["video"].set()
        d.stop()


def test_one_failing_encoder_fails_its_rounds_once_and_others_go_on(model):
    _separate(model)
    encoders = GatedEncoders(model.pack.embed_dim, fail="image")
    policy = RecordingPolicy()
    d = Dispatcher(model, encoders, policy, ServingStats(), max_round_items=1, pipeline_depth=2)
    try:
        jobs = [make_job(model, 1, 5.0, f"j{i}") for i in range(6)]
        for i, job in enumerate(jobs):
            if i % 2:
                job.items[0].candidates = ["audio+video", "audio"]  # never needs the image encoder
            d.submit(job)
        for i, job in enumerate(jobs):
            if i % 2:
                assert job.future.result(5).results[0].configuration == "audio+video"
            else:  # its round's image batch failed: the whole round fails, once
                with pytest.raises(MoselError, match="image encoder broke"):
                    job.future.result(5)
        assert encoders.started.count("image") == 3
        d.stop()
        assert sorted(map(id, (t for t, _ in policy.finished))) == sorted(map(id, policy.started))
        assert sum(1 for _, took in policy.finished if took is None) == 3  # the failed rounds
    finally:
        d.stop()


def test_a_modality_with_no_encoder_up_is_planned_around(model):
    """Video down: jobs are served from audio and image, marked degraded with the reason;
    a job that can only use video, or whose floor needs it, is refused UNAVAILABLE at once."""
    from mosel.engine.dispatcher import ModalityUnavailable

    encoders = FakeEncoders(model.pack.embed_dim)
    encoders.down = {"video"}
    stats = ServingStats()
    d = Dispatcher(model, encoders, AgnosticPolicy(), stats)
    try:
        job = make_job(model, 2, 5.0, "no-video")
        d.submit(job)
        answer = job.future.result(10)
        assert all(r.configuration == "audio+image" and r.degraded for r in answer.results)
        assert {r.degraded_reason for r in answer.results} == {"unavailable:video"}
        assert all(m != "video" for m, _ in encoders.calls)
        assert stats.snapshot()["requests_degraded_unavailable"] == 2

        video_only = make_job(model, 1, 5.0, "video-only")
        video_only.items[0].candidates = ["video"]
        with pytest.raises(ModalityUnavailable, match="needs \\['video'\\]"):
            d.submit(video_only)
        high_floor = make_job(model, 1, 5.0, "floor")
        high_floor.min_accuracy = model.accuracy_of(model.full_configuration)  # only the full set reaches it
        with pytest.raises(ModalityUnavailable, match="slo.min_accuracy"):
            d.submit(high_floor)
        assert stats.snapshot()["errors"]["UNAVAILABLE"] == 2

        encoders.down = set()  # back: the full configuration again, not degraded
        job = make_job(model, 1, 5.0, "back")
        d.submit(job)
        result = job.future.result(10).results[0]
        assert result.configuration == model.full_configuration and not result.degraded and result.degraded_reason == ""
    finally:
        d.stop()
