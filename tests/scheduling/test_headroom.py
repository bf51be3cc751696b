"""Miss feedback: the planning headroom that settles where the target share of jobs miss."""

from __future__ import annotations

import math
import random

import pytest

from mosel.sim import simulator as S
from mosel.scheduling.headroom import MissFeedback
from mosel.scheduling.mosel_policy import MoselPolicy

FULL = "audio+video"


def _miss_rate_under(target: float, seed: int) -> tuple[float, float]:
    """Drive the feedback with a world where a job misses with probability
    0.3 * exp(-headroom / 4 ms); returns the miss rate and the mean headroom over the second half."""
    fb = MissFeedback(target=target, step_s=0.002, cap_s=0.1, decay_s=1e9)
    rng = random.Random(seed)
    misses = n = 0
    held = 0.0
    for k in range(40_000):
        missed = rng.random() < 0.3 * math.exp(-fb.headroom_s / 0.004)
        fb.observe(k * 1e-3, int(missed), int(not missed))
        if k >= 20_000:
            misses += missed
            held += fb.headroom_s
            n += 1
    return misses / n, held / n


@pytest.mark.parametrize("target", [0.005, 0.02])
def test_headroom_settles_where_the_target_share_misses(target):
    rate, headroom = _miss_rate_under(target, seed=3)
    # the world's answer: 0.3 exp(-h / 4 ms) = target
    expected_h = 0.004 * math.log(0.3 / target)
    assert rate == pytest.approx(target, rel=0.5)
    assert headroom == pytest.approx(expected_h, rel=0.25)


def test_headroom_off_capped_and_decaying():
    off = MissFeedback(step_s=0.0)
    off.observe(0.0, 1000)
    assert off.headroom_s == 0.0 and off.missed == 1000  # still counted, never acted on
    fb = MissFeedback(step_s=0.002, cap_s=0.03, decay_s=2.0)
    fb.observe(0.0, 1000)
    assert fb.headroom_s == pytest.approx(0.03)  # capped
    assert fb.peek(2.0) == pytest.approx(0.03 / math.e) and fb.headroom_s == pytest.approx(0.03)
    assert fb.current(2.0) == pytest.approx(0.03 / math.e)  # forgets a burst that has passed
    assert fb.current(20.0) < 1e-5
    fb.observe(20.0, 0, 10)
    assert fb.headroom_s == 0.0  # never below zero


def test_invalid_settings_are_refused():
    for kwargs in ({"target": 0.0}, {"target": 1.0}, {"step_s": -1.0}, {"decay_s": 0.0}):
        with pytest.raises(ValueError):
            MissFeedback(**kwargs)
    with pytest.raises(ValueError):
        MoselPolicy().configure(miss_target=1.5)
    with pytest.raises(ValueError):
        MoselPolicy().configure(headroom_step_s=-0.001)
    policy = MoselPolicy()
    policy.configure(miss_target=0.02, headroom_step_s=0.0)
    assert policy.feedback.target == 0.02 and policy.feedback.step_s == 0.0
    with pytest.raises(ValueError):
        MissFeedback().observe(0.0, -1)


def _job(model, i, size, deadline):
    return S.make_job(model, S.SimJob(arrival=0.0, size=size, min_accuracy=0.0, deadline=deadline, id=f"h{i}"), i)


def test_mosel_degrades_earlier_while_jobs_miss():
    model = S.paper_model()
    queue_of = lambda: [_job(model, i, 4, deadline=0.16) for i in range(3)]  # noqa: E731
    calm = MoselPolicy(pipeline_depth=1)
    queue = queue_of()
    calm.plan(queue, 0.0)
    assert all(it.configuration == FULL for j in queue for it in j.items)  # fits at full accuracy
    pressed = MoselPolicy(pipeline_depth=1, headroom_cap_s=0.1)
    pressed.feedback.observe(0.0, 40)  # 40 misses: 80 ms of headroom
    queue = queue_of()
    pressed.plan(queue, 0.0)
    assert any(it.configuration != FULL for j in queue for it in j.items)
    assert pressed.drops == []


def test_every_settled_job_is_observed_once():
    model = S.paper_model()
    specs = S.paper_workload(model, rate_jobs_s=120, duration_s=2.0, seed=4)
    policy = MoselPolicy()
    res = S.simulate(specs, policy, model, noise=0.3, seed=2)
    counts = res.summary.counts
    assert counts["expired"] + counts["dropped"] + counts["late"] > 0  # the load made it miss
    # rounds report their jobs, the dispatcher its expired ones, plans their hopeless ones,
    # admission its unreachable ones: every job once
    assert policy.feedback.observed == len(specs) == sum(counts.values())
    assert policy.feedback.missed >= counts["dropped"] + counts["refused"] + counts["expired"] + counts["late"]
