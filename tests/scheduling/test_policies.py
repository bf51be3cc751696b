"""Scheduling core: prediction, reassignment, policies and the discrete-event simulator."""

from __future__ import annotations

import itertools
import logging
import random
from types import SimpleNamespace

import numpy as np
import pytest

from mosel.models.tvlt import paper_facts as paper
from mosel.errors import DeadlineExceeded
from mosel.planning.costs import LateFusionCost
from mosel.scheduling.fit import LinearFit
from mosel.scheduling.predict import NOMINAL_ANSWER_S, Predictor
from mosel.scheduling.rounds import form_rounds, lane_groups, round_latency
from mosel.scheduling.reassign import Option, reassign
from mosel.scheduling.aggressive import AggressivePolicy
from mosel.scheduling.mosel_policy import MoselPolicy
from mosel.scheduling.registry import POLICIES, make_policy
from mosel.sim import simulator as S

FULL = "audio+video"


@pytest.fixture(scope="module")
def model():
    return S.paper_model()


def _job(model, i, size, deadline, floor=0.0, arrival=0.0, candidates=None):
    return S.make_job(model, S.SimJob(arrival=arrival, size=size, min_accuracy=floor, deadline=deadline,
                                      candidates=candidates, id=f"t{i}"), i)


def test_registered():
    assert {"agnostic", "aggressive", "mosel"} <= set(POLICIES)
    assert isinstance(make_policy("mosel", budget_margin=0.8), MoselPolicy)


# ---------------------------------------------------------------- prediction


def test_round_formation_matches_dispatcher_rule():
    assert form_rounds([20, 20, 5, 8], 32) == [(0, 1), (1, 3), (3, 4)]
    assert form_rounds([40, 1], 32) == [(0, 1), (1, 2)]  # oversized job alone


def test_prediction_edf_rounds_and_backlog(model):
    cost = model.profiles.cost
    p = Predictor(cost, max_round_items=32)
    full = p.split_of([FULL])
    sizes = [20, 10, 5, 1]
    splits = [tuple(x * n for x in full) for n in sizes]
    finish = p.finish_times(sizes, splits, now=1.0)
    assert finish == sorted(finish)  # EDF order: never earlier than a job ahead
    # jobs 0 and 1 share round 1; each round's finishing step answers its requests
    r1, a1 = round_latency(cost, [30, 0, 0]) * 1e-3, 30 * NOMINAL_ANSWER_S
    r2, a2 = round_latency(cost, [6, 0, 0]) * 1e-3, 6 * NOMINAL_ANSWER_S
    assert finish[0] == finish[1] == pytest.approx(1.0 + r1 + a1)
    assert finish[2] == finish[3] == pytest.approx(1.0 + r1 + a1 + r2 + a2)  # strict rounds (depth 1)
    # a batch in flight on the lane delays everything; the lane's fit scales the queued rounds
    p.lane_free[0] = 1.5
    p.lane_fits[0].scale = 2.0
    f2 = p.finish_times(sizes, splits, now=1.0)
    assert f2[0] == pytest.approx(1.5 + 2 * r1 + a1)
    # a learned per-batch overhead is added to every queued round
    p.lane_fits[0].overhead_s = 0.01
    f3 = p.finish_times(sizes, splits, now=1.0)
    assert f3[0] == pytest.approx(1.5 + 2 * r1 + 0.01 + a1)
    assert f3[2] == pytest.approx(1.5 + 2 * (r1 + r2) + 0.02 + a1 + a2)


def test_linear_fit_learns_fixed_overhead_and_scale():
    """Live batches cost a fixed overhead the profile cannot see plus a multiple of the
    profiled time; after some batches the fit tracks both."""
    fit = LinearFit(ewma=0.2)
    rng = np.random.default_rng(0)
    for _ in range(200):
        profiled = float(rng.choice([0.001, 0.004, 0.012]))
        fit.update(profiled, 0.006 + 1.5 * profiled)
    for profiled in (0.001, 0.004, 0.012):
        assert fit(profiled) == pytest.approx(0.006 + 1.5 * profiled, rel=0.15)
    head = LinearFit()
    for _ in range(5):
        head.update(0.0, 0.002)  # nothing profiled (no head table): all of it is overhead
    assert head(0.0) == pytest.approx(0.002)


def _late_fusion(placement, head=None):
    audio = [0.0] + [1.0 + 0.1 * n for n in range(1, 33)]
    video = [0.0] + [4.0 + 0.5 * n for n in range(1, 33)]
    return LateFusionCost({"audio": audio, "video": video}, placement, head)


def test_lanes_follow_placement():
    assert Predictor(_late_fusion("separate")).lanes == [("audio",), ("video",)]
    assert Predictor(_late_fusion("shared")).lanes == [("audio", "video")]
    assert lane_groups(None, ["audio", "video"]) == [("audio", "video")]
    assert Predictor(paper.joint_cost()).lanes == [("model",)]


def test_per_encoder_lanes_pipeline_rounds():
    """Encoders on separate devices: the next round's audio batch runs while this round's
    video batch is still running; on one device the costs add up."""
    cost = _late_fusion("separate", head=[0.0] + [0.5] * 32)
    p = Predictor(cost, max_round_items=4, depth=2)
    av, a = p.split_of(["audio+video"]), p.split_of(["audio"])
    sizes, splits = [4, 4], [tuple(4 * x for x in av), tuple(4 * x for x in a)]
    f = p.finish_times(sizes, splits, now=0.0)
    video4, audio4 = (4.0 + 2.0) * 1e-3, (1.0 + 0.4) * 1e-3
    done = 0.5e-3 + 4 * NOMINAL_ANSWER_S  # finishing step: head, then 4 answers
    assert f[0] == pytest.approx(video4 + done)  # max(audio, video) + finishing
    assert f[1] == pytest.approx(2 * audio4 + done)  # audio lane only, behind round 1's audio
    assert f[1] < f[0]
    strict = Predictor(cost, max_round_items=4, depth=1).finish_times(sizes, splits, now=0.0)
    assert strict[1] == pytest.approx(f[0] + audio4 + done)  # depth 1 waits for round 1
    shared = Predictor(_late_fusion("shared", head=[0.0] + [0.5] * 32), max_round_items=4, depth=2)
    g = shared.finish_times(sizes, splits, now=0.0)
    assert g[0] == pytest.approx(video4 + audio4 + done)
    assert g[1] == pytest.approx(video4 + 2 * audio4 + done)


def test_backlog_moves_with_measured_batches():
    cost = _late_fusion("separate")
    p = Predictor(cost, max_round_items=4, depth=2)
    split = tuple(4 * x for x in p.split_of(["audio+video"]))
    t1 = p.round_started(0.0, [split])
    t2 = p.round_started(0.0, [split])
    assert p.lane_free[1] == pytest.approx(2 * 6.0e-3)
    # round 1's video batch ran 3 ms longer than predicted: round 2's video moves with it
    p.lane_finished(t1, 1, now=9.0e-3, measured_s=9.0e-3)
    assert p.lane_free[1] == pytest.approx(15.0e-3)
    assert t2.finish == pytest.approx(15.0e-3 + 4 * NOMINAL_ANSWER_S)  # then its finishing step
    assert p.lane_fits[1].samples == 1
    p.lane_finished(t1, 0, now=1.4e-3, measured_s=1.4e-3)
    p.round_finished(t1, now=9.5e-3, finishing_s=0.5e-3)
    assert p.in_flight == [t2]
    assert p.head_fit(4 * NOMINAL_ANSWER_S) == pytest.approx(0.5e-3)  # the finishing step, as measured
    # a failed or skipped batch frees its lane without teaching the fit anything
    p.lane_finished(t2, 0, now=10.0e-3, measured_s=None)
    assert p.lane_fits[0].samples == 1 and p.lane_free[0] == pytest.approx(10.0e-3)
    # a predictor for a new profile carries the backlog and takes the old tickets' feedback
    q = Predictor(cost, max_round_items=4, depth=2)
    q.carry_feedback(p)
    assert q.in_flight == [t2] and t2.predictor is q and q.lane_free == p.lane_free
    q.round_finished(t2, now=11.0e-3, finishing_s=None)  # failed round: gone, head fit unchanged
    assert q.in_flight == [] and q.head_fit.samples == 1


# ---------------------------------------------------------------- reassignment


def _brute(options, budgets):
    best = None
    for combo in itertools.product(*options):
        t, ok = 0.0, True
        for o, b in zip(combo, budgets):
            t += o.latency
            if t > b + 1e-12:
                ok = False
                break
        if ok:
            v = sum(o.value for o in combo)
            best = v if best is None else max(best, v)
    return best


@pytest.mark.parametrize("seed", range(60))
def test_reassign_equals_brute_force(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 6)
    options, cheapest = [], []
    for _ in range(n):
        size = rng.randint(1, 8)
        k = rng.randint(1, 4)
        opts = [Option(rng.uniform(1, 20), rng.uniform(0.6, 0.8), size) for _ in range(k)]
        options.append(opts)
        cheapest.append(min(o.latency for o in opts))
    budgets, t = [], 0.0
    for c in cheapest:  # all-cheapest feasible, with random room above it
        t += c
        budgets.append(t + rng.uniform(0, 25))
    budgets = [max(budgets[: i + 1]) if rng.random() < 0.2 else b for i, b in enumerate(budgets)]
    res = reassign(options, budgets)
    assert res.exact and not res.infeasible
    want = _brute(options, budgets)
    assert res.value == pytest.approx(want, abs=1e-9)
    t = 0.0
    for o, b in zip(res.choice, budgets):
        t += o.latency
        assert t <= b + 1e-9
    greedy = reassign(options, budgets, force_greedy=True)
    assert greedy.value <= want + 1e-9  # feasible, never better than the optimum
    t = 0.0
    for o, b in zip(greedy.choice, budgets):
        t += o.latency
        assert t <= b + 1e-9


def test_reassign_reports_unreachable_jobs():
    a = [Option(10, 0.7, 1), Option(20, 0.74, 1)]
    res = reassign([a, a, a], budgets=[15, 16, 40])
    assert res.infeasible == [1]  # even at cheapest: 10 + 10 > 16
    assert res.choice[1] is None
    assert res.choice[0].latency == 10 and res.choice[2].latency == 20  # 10 + 20 <= 40


# ---------------------------------------------------------------- policies


def test_admission_refuses_unreachable_deadline(model):
    pol = MoselPolicy()
    queue = [_job(model, i, 8, deadline=5.0) for i in range(10)]
    tight = _job(model, 99, 1, deadline=0.004)  # < one b=1 audio batch (6.1 ms)
    with pytest.raises(DeadlineExceeded):
        pol.admit(tight, [], 0.0)
    urgent = _job(model, 98, 1, deadline=0.5)
    pol.admit(urgent, queue, 0.0)  # EDF puts it first: reachable
    late = _job(model, 97, 4, deadline=5.0 + 1e-3)  # behind 80 requests: fine at cheapest within 5 s
    pol.admit(late, queue, 0.0)
    behind = _job(model, 96, 4, deadline=0.05)
    pol.predictor.lane_free[0] = 0.2  # a batch in flight until t = 0.2
    with pytest.raises(DeadlineExceeded):
        pol.admit(behind, [], 0.0)


def test_floors_respected_and_candidates_mapped(model):
    rng = random.Random(3)
    for name in ("agnostic", "aggressive", "mosel"):
        pol = make_policy(name)
        jobs = []
        for i in range(40):
            size = rng.randint(1, 12)
            floor = rng.uniform(0.70, 0.7432)
            cands = ["audio+video", "audio"] if i % 5 == 0 else None
            jobs.append(_job(model, i, size, deadline=rng.uniform(0.01, 0.4), floor=floor, candidates=cands))
        jobs.sort(key=lambda j: j.edf_key())
        pol.plan(jobs, 0.0)
        for job in jobs:
            configs = [it.configuration for it in job.items]
            assert all(c in it.candidates for c, it in zip(configs, job.items))
            acc = sum(model.accuracy_of(c) for c in configs) / job.size
            assert acc >= job.min_accuracy - 1e-9, (name, job.id)


def test_policies_without_profiles_act_agnostic(caplog):
    bare = SimpleNamespace(name="bare", profiles=SimpleNamespace(cost=None, matrix=None),
                           accuracy_of=lambda c: 0.5, configurations=[FULL, "audio", "video"])
    for cls in (AggressivePolicy, MoselPolicy):
        pol = cls()
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                job = S.make_job(bare, S.SimJob(0.0, 3, 0.0, 1.0), 0)
                pol.admit(job, [], 0.0)
                pol.plan([job], 0.0)
                assert [it.configuration for it in job.items] == [FULL] * 3
        assert sum(cls.name in r.getMessage() for r in caplog.records) == 1
        caplog.clear()


def test_mosel_drops_hopeless_and_degrades_under_pressure(model):
    pol = MoselPolicy()
    hopeless = _job(model, 0, 4, deadline=0.001)
    queue = [hopeless] + [_job(model, i, 4, deadline=0.09) for i in range(1, 4)]
    pol.plan(queue, 0.0)
    assert pol.drops == [hopeless]
    # the others fit only if degraded: 12 requests at full ~ 113 ms, audio-only ~ 47 ms
    kept = [j for j in queue if j is not hopeless]
    assert any(it.configuration != FULL for j in kept for it in j.items)
    p = pol.predictor
    splits = [p.split_of([it.configuration for it in j.items]) for j in kept]
    finish = p.finish_times([j.size for j in kept], splits, 0.0)
    assert all(f <= j.deadline for f, j in zip(finish, kept))


# ---------------------------------------------------------------- simulator


def _check_outcomes(result, specs):
    assert len(result.outcomes) == len(specs)
    assert sorted(o.id for o in result.outcomes) == sorted(s.id for s in specs)
    assert sum(result.summary.counts.values()) == len(specs)
    for o in result.outcomes:
        assert o.status in S.STATUSES
        if o.status in ("expired", "dropped", "refused"):
            assert o.started is None and o.finish is None  # expired work never started
        else:
            assert o.started is not None and o.finish is not None and o.started >= o.arrival


def test_simulator_mosel_beats_agnostic_under_overload(model):
    specs = S.paper_workload(model, rate_jobs_s=80, duration_s=4.0, seed=5)
    results = {}
    for name in ("agnostic", "aggressive", "mosel"):
        res = S.simulate(specs, make_policy(name), model, noise=0.05, seed=1)
        _check_outcomes(res, specs)
        assert res.summary.floor_violations == 0
        results[name] = res.summary
    ag, mo = results["agnostic"], results["mosel"]
    assert ag.miss_rate > 0.8  # agnostic cannot sustain this load
    assert mo.miss_rate < ag.miss_rate - 0.2
    assert mo.goodput_rps > 3 * ag.goodput_rps
    assert mo.counts["late"] + mo.counts["expired"] < 0.05 * mo.jobs
    assert mo.p99_jct_ms < ag.p99_jct_ms


def test_simulator_expired_not_started(model):
    # a 32-request job occupies the server; a tiny job with a 10 ms deadline expires queued
    specs = [S.SimJob(0.0, 32, 0.0, 10.0, id="big"), S.SimJob(0.001, 1, 0.0, 0.011, id="small")]
    res = S.simulate(specs, make_policy("agnostic"), model)
    _check_outcomes(res, specs)
    small = next(o for o in res.outcomes if o.id == "small")
    assert small.status == "expired" and small.started is None
    res = S.simulate(specs, make_policy("mosel"), model)  # mosel refuses it at arrival
    _check_outcomes(res, specs)
    assert next(o for o in res.outcomes if o.id == "small").status == "refused"


def test_upgrade_after_burst_drains(model):
    burst = S.paper_workload(model, rate_jobs_s=150, duration_s=1.0, seed=7)
    quiet = [S.SimJob(3.0 + 0.2 * k, 2, 0.70, 3.0 + 0.2 * k + 0.2, id=f"q{k}") for k in range(10)]
    specs = burst + quiet
    res = S.simulate(specs, make_policy("mosel"), model)
    _check_outcomes(res, specs)
    during = [o for o in res.outcomes if o.id.startswith("j") and o.finish is not None]
    assert any(c != FULL for o in during for c in o.configurations)  # degraded in the burst
    after = [o for o in res.outcomes if o.id.startswith("q")]
    assert all(o.status == "served" and o.configurations == [FULL] * 2 for o in after)


def test_reassign_beats_greedy_where_greedy_is_suboptimal():
    base = Option(1.0, 0.50, 100)
    options = [[base, Option(7.0, 0.566, 100)], [base, Option(6.0, 0.55, 100)], [base, Option(6.0, 0.55, 100)]]
    budgets = [13.0, 13.0, 13.0]
    greedy = reassign(options, budgets, force_greedy=True)
    best = reassign(options, budgets)
    assert greedy.value == pytest.approx(156.6)  # the best-ratio upgrade blocks the other two
    assert best.value == pytest.approx(_brute(options, budgets)) == pytest.approx(160.0)


# ---------------------------------------------------------------- fast paths (issue #5)


@pytest.mark.parametrize("seed", range(20))
def test_incremental_prediction_equals_full(model, seed):
    rng = random.Random(seed)
    lanes = seed % 2 == 1  # odd seeds: late fusion on separate devices, pipelined
    cost = _late_fusion("separate", head=[0.0] + [0.3] * 32) if lanes else model.profiles.cost
    depth = rng.choice([1, 2, 3]) if lanes else 1

    def predictor():
        return Predictor(cost, max_round_items=32, depth=depth)

    p = predictor()
    p.lane_free = [rng.choice([-1.0, 0.3]) for _ in p.lane_free]
    for fit in p.lane_fits:
        fit.scale = rng.uniform(0.7, 1.5)
    configs = list(cost.configurations)
    n = rng.randint(1, 60)
    sizes = [max(1, int(rng.gauss(1, 6))) for _ in range(n)]
    sizes[rng.randrange(n)] = rng.choice([sizes[0], 40])  # sometimes an oversized job

    def rand_splits():
        return [p.split_of([rng.choice(configs) for _ in range(s)]) for s in sizes]

    base_splits = rand_splits()
    base = p.finish_times(sizes, base_splits, now=0.1)
    ref = predictor()  # fresh caches: the same numbers from scratch
    ref.lane_free = list(p.lane_free)
    for mine, theirs in zip(ref.lane_fits, p.lane_fits):
        mine.scale = theirs.scale
    assert base == ref.finish_times(sizes, base_splits, now=0.1)
    for _ in range(5):
        first = rng.randrange(n + 1)
        new = base_splits[:first] + rand_splits()[first:]
        full = ref.finish_times(sizes, new, now=0.1)
        assert p.finish_from(sizes, new, 0.1, base, first) == full  # bit for bit
        upto = rng.randint(1, n)
        part = p.finish_from(sizes, new, 0.1, base, first, upto=upto)
        assert part[:upto] == full[:upto]
        assert p.finish_times(sizes, new, 0.1, upto=upto)[:upto] == full[:upto]
    # the hopeless fast path agrees with the removal loop
    deadlines = [f + rng.uniform(-0.02, 0.05) for f in base]
    assert p.hopeless(sizes, base_splits, deadlines, 0.1) == ref.hopeless(sizes, base_splits, deadlines, 0.1)


def _brute_options(options, budgets):
    return _brute(options, budgets)


@pytest.mark.parametrize("seed", range(40))
def test_reassign_dp_exact_with_ties_and_single_options(seed):
    # integer latencies and few accuracy levels: many exact ties in time and value
    rng = random.Random(1000 + seed)
    n = rng.randint(1, 7)
    options, t, budgets = [], 0.0, []
    for _ in range(n):
        size = rng.randint(1, 4)
        k = rng.choice([1, 1, 2, 3, 5])
        opts = [Option(float(rng.randint(1, 6)), rng.choice([0.66, 0.7232, 0.7432]), size) for _ in range(k)]
        options.append(opts)
        t += min(o.latency for o in opts)
        budgets.append(t + rng.randint(0, 8))
    res = reassign(options, budgets, time_cap_s=None)
    want = _brute_options(options, budgets)
    assert res.exact and res.value == pytest.approx(want, abs=1e-9)
    pres = reassign([__import__("mosel.scheduling.reassign", fromlist=["pareto"]).pareto(o) for o in options],
                    budgets, presorted=True, time_cap_s=None)
    assert pres.value == pytest.approx(want, abs=1e-9)


def test_mosel_plan_matches_reference_on_bench_queues(model):
    """Warm calls (cached options, splits, rounds and round latencies) give the same plan
    as a fresh policy with empty caches, and repeated calls do not drift."""
    from mosel.bench.scheduler import _queue
    for n in (8, 64):
        jobs = _queue(model, n, 0, "reassign")
        pol = MoselPolicy()
        pol.plan(jobs, 0.0)
        pol.plan(jobs, 0.0)  # the first call's degradations switch on the upgrade hysteresis
        first = [it.configuration for j in jobs for it in j.items]
        assert pol.last_exact
        for _ in range(3):
            pol.plan(jobs, 0.0)
        assert [it.configuration for j in jobs for it in j.items] == first
        fresh = MoselPolicy()
        fresh._ready(model)
        fresh._degraded = set(pol._degraded)
        fresh.plan(jobs, 0.0)
        assert [it.configuration for j in jobs for it in j.items] == first


@pytest.mark.parametrize("name", ["agnostic", "mosel"])
def test_simulator_round_overhead_and_scale(model, name):
    # one job alone: its JCT is exactly one round, scale * profiled + overhead (profiled:
    # the model's latency, then the finishing step's nominal answer cost per request)
    size = 5
    profiled_s = model.profiles.cost.latency({FULL: size}) * 1e-3 + size * NOMINAL_ANSWER_S
    specs = [S.SimJob(arrival=0.25, size=size, min_accuracy=paper.ACCURACIES[FULL], deadline=1e6, id="one")]
    base = S.simulate(specs, make_policy(name), model).outcomes[0]
    assert base.status == "served" and base.configurations == [FULL] * size
    assert base.finish - base.arrival == pytest.approx(profiled_s, rel=1e-12)
    for overhead, scale in ((0.0, 1.0), (0.004, 1.0), (0.0, 2.5), (0.0123, 0.4)):
        o = S.simulate(specs, make_policy(name), model, round_overhead_s=overhead, scale=scale).outcomes[0]
        assert o.status == "served" and o.started == 0.25
        assert o.finish - o.arrival == pytest.approx(scale * profiled_s + overhead, rel=1e-12, abs=1e-15)
    # the defaults are today's simulator, bit for bit
    assert S.simulate(specs, make_policy(name), model, round_overhead_s=0.0, scale=1.0).outcomes[0].finish == base.finish
    with pytest.raises(ValueError):
        S.simulate(specs, make_policy(name), model, round_overhead_s=-1e-3)
    with pytest.raises(ValueError):
        S.simulate(specs, make_policy(name), model, scale=0.0)


def test_simulator_overhead_delays_queue(model):
    # two single-request jobs at t=0: the second waits for the first round, so with overhead h
    # and scale s it finishes after two rounds of (s * L(1) + h) each (rounds hold one job here)
    one_s = model.profiles.cost.latency({FULL: 1}) * 1e-3 + NOMINAL_ANSWER_S
    specs = [S.SimJob(0.0, 1, 0.0, 1e6, id="a"), S.SimJob(0.0, 1, 0.0, 1e6, id="b")]
    res = S.simulate(specs, make_policy("agnostic"), model, max_round_items=1, round_overhead_s=0.01, scale=2.0)
    fin = sorted(o.finish for o in res.outcomes)
    assert fin == pytest.approx([2.0 * one_s + 0.01, 2 * (2.0 * one_s + 0.01)], rel=1e-12)
    assert res.summary.rounds == 2


# ---------------------------------------------------------------- lanes in the simulator


def _lane_model(placement):
    cost = _late_fusion(placement, head=[0.0] + [0.2] * 32)
    acc = {"audio+video": 0.95, "audio": 0.85, "video": 0.8}
    from mosel.planning.solver import solve_matrix

    return S.SimModel("lanes", cost, solve_matrix(cost, acc, max_batch=32, step=0.01), acc)


@pytest.mark.parametrize("placement, depth, policy", [("separate", 2, "mosel"), ("separate", 3, "aggressive"),
                                                     ("shared", 2, "mosel"), ("separate", 1, "mosel")])
def test_predictor_matches_the_simulated_lanes_exactly(placement, depth, policy):
    """With exact profiles (no noise, no overheads) every round ends exactly when the
    policy's predictor said it would once its encoder batches are done (at commit already,
    with strict rounds): predictor and simulator model the same lanes."""
    model = _lane_model(placement)
    pol = make_policy(policy)
    tickets, at_commit, when_ready, actual = [], {}, {}, {}  # tickets kept alive: ids stay unique
    started, lane_done, finished = pol.round_started, pol.lane_finished, pol.round_finished

    def on_start(jobs, now):
        ticket = started(jobs, now)
        tickets.append(ticket)
        at_commit[id(ticket)] = ticket.finish
        return ticket

    def on_lane(ticket, lane, now, seconds):
        lane_done(ticket, lane, now, seconds)
        when_ready[id(ticket)] = ticket.finish  # the last report is the one with every batch done

    def on_finish(ticket, now, seconds):
        actual[id(ticket)] = now
        finished(ticket, now, seconds)

    pol.round_started, pol.lane_finished, pol.round_finished = on_start, on_lane, on_finish
    rng = random.Random(5)
    specs, t = [], 0.0
    for i in range(300):
        t += rng.expovariate(200.0)
        b = rng.randint(1, 6)
        specs.append(S.SimJob(arrival=t, size=b, min_accuracy=rng.uniform(0.8, 0.95), deadline=t + 0.03, id=f"j{i}"))
    res = S.simulate(specs, pol, model, pipeline_depth=depth)
    assert res.summary.rounds == len(actual) == len(tickets) > 100
    for ticket in tickets:
        assert actual[id(ticket)] == pytest.approx(when_ready[id(ticket)], abs=1e-12)
        if depth == 1:  # strict rounds: known exactly from the moment it is committed
            assert actual[id(ticket)] == pytest.approx(at_commit[id(ticket)], abs=1e-12)
    assert sum(res.summary.counts.values()) == len(specs)


def test_pipelining_separate_encoders_serves_more():
    """On separate devices, later rounds use idle encoders: the same trace runs with a lower
    mean JCT at depth 2 than with strict rounds."""
    model = _lane_model("separate")
    rng = random.Random(8)
    specs, t = [], 0.0
    for i in range(400):
        t += rng.expovariate(200.0)  # below saturation: with overload, early commits shrink batches
        b = rng.randint(1, 4)
        cands = ["audio"] if i % 2 else None  # half the jobs only ever need the audio encoder
        specs.append(S.SimJob(arrival=t, size=b, min_accuracy=0.0, deadline=t + 0.05, candidates=cands, id=f"j{i}"))
    strict = S.simulate(specs, make_policy("agnostic"), model, max_round_items=8, pipeline_depth=1).summary
    piped = S.simulate(specs, make_policy("agnostic"), model, max_round_items=8, pipeline_depth=2).summary
    assert piped.mean_jct_ms < strict.mean_jct_ms
    assert piped.miss_rate <= strict.miss_rate


def test_simulated_transit_and_per_lane_costs():
    model = _lane_model("separate")
    spec = [S.SimJob(arrival=1.0, size=2, min_accuracy=0.0, deadline=1.1, id="one")]
    base = S.simulate(spec, make_policy("agnostic"), model).outcomes[0]
    costs = [S.StepCost(0.002, 1.0), S.StepCost(0.001, 2.0)]
    o = S.simulate(spec, make_policy("agnostic"), model, lane_costs=costs, finish_cost=S.StepCost(0.0005),
                   transit_s=0.004).outcomes[0]
    audio, video = (1.0 + 0.2) * 1e-3, (4.0 + 1.0) * 1e-3
    done = 0.2e-3 + 2 * NOMINAL_ANSWER_S  # finishing step: head and two answers
    assert base.finish == pytest.approx(1.0 + max(audio, video) + done)
    assert o.started == pytest.approx(1.002)  # reached the service after half its transit
    assert o.finish == pytest.approx(1.002 + max(0.002 + audio, 0.001 + 2 * video) + 0.5e-3 + done + 0.002)
    with pytest.raises(ValueError, match="lanes"):
        S.simulate(spec, make_policy("agnostic"), model, lane_costs=costs[:1])
    with pytest.raises(ValueError):
        S.StepCost(scale=0.0)


def test_the_predictor_learns_each_lanes_true_cost():
    """Per-lane corrections from measured batches: after a run on lanes with hidden fixed
    costs and scales, the policy's fits have found them."""
    model = _lane_model("separate")
    rng = random.Random(2)
    specs, t = [], 0.0
    for i in range(600):
        t += rng.expovariate(150.0)
        specs.append(S.SimJob(arrival=t, size=rng.randint(1, 8), min_accuracy=0.0, deadline=t + 1.0, id=f"j{i}"))
    pol = make_policy("mosel")
    truth = [S.StepCost(0.003, 1.5), S.StepCost(0.0005, 0.8)]
    S.simulate(specs, pol, model, lane_costs=truth, finish_cost=S.StepCost(0.001, 1.0), pipeline_depth=2)
    fits = pol.predictor.lane_fits
    for fit, true in zip(fits, truth):
        assert fit.overhead_s == pytest.approx(true.overhead_s, abs=2e-4)
        assert fit.scale == pytest.approx(true.scale, rel=0.05)
    assert pol.predictor.head_fit(0.2e-3) == pytest.approx(0.001 + 0.2e-3, rel=0.05)
