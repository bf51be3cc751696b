"""Tuning studies (tuning/, `mosel tune`): small studies on the paper stand-in model, the
constraint that keeps floor-violating trials off the front, the pick rule, held-out
validation, worker processes on a real PostgreSQL, and the TuningRecord hand-off to a real
profile store process."""

from __future__ import annotations

import json

import grpc
import optuna
import pytest

from mosel.models.tvlt import paper_facts as paper
from mosel.cli.main import main as cli_main
from mosel.protocol.records import matrix_to_proto
from mosel.modalities import all_configurations
from mosel.planning.solver import solve_matrix
from mosel.launch.stack import Stack
from mosel.store.client import ProfileStoreClient
from mosel.protocol.v1 import profile_store_pb2 as pb
from tests.pg import postgres_server, postgres_url  # noqa: F401  (fixtures)
from tuning import config as C
from tuning import evaluate as E
from tuning import pareto as P
from tuning import space
from tuning import study as T
from tuning import workers as W
from tuning.models import from_store, paper_model

SHORT = "paper:rate=40,duration=3"
TWO = C.DEFAULT_OBJECTIVES
DIRS = ["maximize", "maximize"]


def _config(tmp_path, **kw) -> C.TuneConfig:
    kw.setdefault("storage", f"sqlite:///{tmp_path / 'optuna.db'}")
    kw.setdefault("population", 4)
    return C.TuneConfig(model="paper", workload=SHORT, **kw)


# ----------------------------------------------------------------------------- names, space


def test_study_name_is_deterministic_and_distinguishes_its_inputs():
    a = C.study_name("paper", "paper", TWO, 0)
    assert a == C.study_name("paper", "paper:rate=40,duration=30,delta=17", ["goodput", "accuracy"], 0)
    assert a == C.TuneConfig(model="paper", workload="paper:delta=17", seed=0).study_name
    assert a == "tune-paper-paper-rate40-duration30-delta17-goodput+accuracy-s0"
    others = {C.study_name("paper", "paper", TWO, 1), C.study_name("av-digits", "paper", TWO, 0),
              C.study_name("paper", "paper:rate=50", TWO, 0), C.study_name("paper", "paper", TWO + ("p99",), 0)}
    assert a not in others and len(others) == 4
    # replays at another pipeline depth than the service default are another study
    assert C.TuneConfig(model="paper", workload="paper:delta=17", seed=0, pipeline_depth=1).study_name == a + "-depth1"
    with pytest.raises(ValueError):
        C.TuneConfig(pipeline_depth=0)
    with pytest.raises(ValueError):
        C.WorkloadSpec.parse("paper:rate=fast")
    with pytest.raises(ValueError):
        C.WorkloadSpec.parse("trace:rate=1")


def test_defaults_are_the_code_defaults_and_records_round_trip():
    from mosel.scheduling.mosel_policy import MoselPolicy

    p = MoselPolicy()
    d = space.DEFAULT_THRESHOLDS
    assert (d["budget_margin"], d["lookahead"], d["upgrade_hysteresis"], d["max_round_items"]) == \
        (p.budget_margin, p.lookahead, p.upgrade_hysteresis, p.max_round_items)
    assert d["grid_step"] == 0.002
    rec = space.to_record(d)
    assert set(rec) == set(space.THRESHOLD_KEYS) and space.from_record(rec) == d
    cache = space.MatrixCache(paper.joint_cost(), paper.ACCURACIES, 32)
    assert cache.get(0.005) is cache.get(0.005) and cache.solves == 1
    assert len(cache.get(0.001).targets) > len(cache.get(0.005).targets) and cache.solves == 2


# ----------------------------------------------------------------------------- study + constraints


def test_small_study_front_never_holds_a_floor_violating_trial(tmp_path):
    config = _config(tmp_path)
    T.prepare_study(config)  # trial 0 = the defaults (budget_margin 0.91)

    # Make every trial with budget_margin >= 0.85 (the defaults included) break floors.
    def violations(thresholds, summary):
        return summary.floor_violations + (7 if thresholds["budget_margin"] >= 0.85 else 0)

    study = T.run_trials(config, 6, model=paper_model(), violations=violations)
    trials = study.get_trials()
    assert len(trials) == 6 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert trials[0].params["budget_margin"] == pytest.approx(0.91)
    bad = [t for t in trials if t.user_attrs["floor_violations"] > 0]
    assert trials[0] in bad and P.constraints(trials[0]) == [7.0]
    assert all(t.constraints["floor_violations"] == t.user_attrs["floor_violations"] for t in trials)

    # Without the constraint the defaults (the most accurate run here) would be on the front.
    unconstrained = [t for t in trials
                     if not any(P.dominates(o.values, t.values, DIRS) for o in trials if o is not t)]
    assert any(t.number in {b.number for b in bad} for t in unconstrained)

    front = P.pareto_front(trials, DIRS)
    assert front and all(P.feasible(t) and t.user_attrs["floor_violations"] == 0 for t in front)
    assert {t.number for t in study.best_trials} <= {t.number for t in trials if P.feasible(t)}
    for rule in (P.DEFAULT_PICK, "accuracy", "goodput", "accuracy|goodput>=0"):
        chosen = P.PickRule.parse(rule).choose(front, TWO)
        assert chosen.user_attrs["floor_violations"] == 0 and chosen.number != 0


# ----------------------------------------------------------------------------- pick rule


def _trial(number, goodput, accuracy, violations=0):
    t = optuna.trial.create_trial(values=[goodput, accuracy], params={"budget_margin": 0.9},
                                  distributions={"budget_margin": optuna.distributions.FloatDistribution(0.6, 1.0)},
                                  user_attrs={"floor_violations": violations},
                                  constraints={"floor_violations": float(violations)})
    t.number = number
    return t


def test_pick_rule():
    trials = [_trial(0, 100.0, 0.730), _trial(1, 90.0, 0.738), _trial(2, 80.0, 0.741), _trial(3, 120.0, 0.745, 4),
              _trial(4, 70.0, 0.735)]
    front = P.pareto_front(trials, DIRS)
    assert [t.number for t in front] == [0, 1, 2]  # 3 breaks floors, 4 is dominated
    pick = lambda rule: P.PickRule.parse(rule).choose(front, TWO).number  # noqa: E731
    assert pick(P.DEFAULT_PICK) == 1  # accuracy >= 0.741 - 0.005
    assert pick("goodput|accuracy>=best-0.02") == 0
    assert pick("goodput|accuracy>=0.74") == 2
    assert pick("goodput") == 0 and pick("accuracy") == 2
    assert pick("accuracy|goodput>=85") == 1
    assert pick("goodput|accuracy>=best") == 2
    for bad in ("speed", "goodput|accuracy=0.7", "goodput|latency>=3"):
        with pytest.raises(P.PickError):
            P.PickRule.parse(bad)
    with pytest.raises(P.PickError):
        P.PickRule.parse("goodput|accuracy>=0.75").choose(front, TWO)  # nothing meets it
    with pytest.raises(P.PickError):
        P.PickRule.parse("p99").choose(front, TWO)  # not an objective of this study
    with pytest.raises(P.PickError):
        P.PickRule.parse("goodput").choose([trials[3]], TWO)  # only an infeasible trial


# ----------------------------------------------------------------------------- held-out validation


def test_heldout_workload_is_unseen_and_validation_compares_both(tmp_path):
    config = _config(tmp_path)
    model = paper_model()
    seen = E.study_evaluator(config, model).specs
    held = E.heldout_evaluator(config, model).specs
    assert held and all(0.0 <= j.arrival < 3.0 for j in held)
    assert {round(j.arrival, 9) for j in seen}.isdisjoint({round(j.arrival, 9) for j in held})

    same = T.validate(config, model, dict(space.DEFAULT_THRESHOLDS))
    assert same["tuned"]["goodput_rps"] == same["default"]["goodput_rps"] > 0
    assert same["tuned_beats_default"] is False and "do NOT beat" in same["verdict"]
    other = dict(space.DEFAULT_THRESHOLDS, budget_margin=0.7, max_round_items=8)
    v = T.validate(config, model, other)
    assert v["tuned_thresholds"]["budget_margin"] == 0.7 and v["default_thresholds"]["budget_margin"] == 0.91
    assert v["tuned"]["goodput_rps"] != v["default"]["goodput_rps"]
    assert v["tuned_beats_default"] == (v["tuned"]["goodput_rps"] > v["default"]["goodput_rps"])
    json.loads(T.validation_json(v))


def test_cli_prints_front_and_heldout_side_by_side(tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli_main(["tune", "--model", "paper", "--workload", SHORT, "--trials", "5", "--population", "4",
                   "--storage", f"journal:{tmp_path / 'journal.log'}", "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "Pareto front" in text and "held-out" in text and "tuned" in text and "default" in text
    assert "not stored: --model paper" in text
    assert ("beat the defaults on held-out goodput" in text)
    assert (out / "pareto.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["study"] == C.study_name("paper", SHORT, TWO, 0)
    assert set(summary["validation"]) >= {"tuned", "default", "verdict", "tuned_beats_default"}


# ----------------------------------------------------------------------------- scale-out on PostgreSQL


def test_two_worker_processes_share_one_study_on_postgres(postgres_url):  # noqa: F811
    config = C.TuneConfig(model="paper", workload=SHORT, storage=postgres_url, population=4)
    T.prepare_study(config)
    codes = W.spawn_workers(config, 7, 2, progress=False)  # 4 + 3 trials
    assert codes == [0, 0]
    trials = T.open_study(config).get_trials()
    assert len(trials) == 7
    assert sorted(t.number for t in trials) == list(range(7))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t._trial_id for t in trials}) == 7
    assert sum(1 for t in trials if t.params == {k: v for k, v in space.DEFAULT_THRESHOLDS.items()}) >= 1


# ----------------------------------------------------------------------------- hand-off to the store

MODEL = "tvlt-sim"


def _manifest() -> pb.ModelManifest:
    from mosel.protocol.v1 import tensor_pb2

    mods = [pb.ModalityManifest(name=m, spec=tensor_pb2.TensorSpec(dtype="float32", shape=[-1, 16], sequence=True,
                                                                   max_steps=64))
            for m in paper.MODALITIES]
    return pb.ModelManifest(name=MODEL, modalities=mods, configurations=all_configurations(list(paper.MODALITIES)),
                            labels=["neg", "pos"], embed_dim=16, manifest_json="{}")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    stack = Stack(home=tmp_path_factory.mktemp("tuning-store"))
    client = ProfileStoreClient(stack.start_store())
    client.wait_ready(30)
    yield client
    client.close()
    assert stack.stop() == {"profile_store": 0}


def test_tuning_record_passes_the_store_validation(store, tmp_path):
    store.register_model(_manifest())
    lat = store.put_latency_profile(pb.LatencyProfile(
        model=MODEL, cost_model="joint", max_batch=paper.MAX_BATCH, device="cpu", precision="fp32",
        series=[pb.LatencySeries(unit=c, median_ms=t) for c, t in paper.LATENCY_MS.items()]))
    acc = store.put_accuracy_profile(pb.AccuracyProfile(model=MODEL, precision="fp32", split="test", configurations=[
        pb.ConfigurationAccuracy(configuration=c, accuracy=a, samples=1000) for c, a in paper.ACCURACIES.items()]))
    matrix = solve_matrix(paper.joint_cost(), paper.ACCURACIES, max_batch=paper.MAX_BATCH)
    mref = store.put_strategy_matrix(matrix_to_proto(matrix, MODEL, latency_version=lat.version,
                                                     accuracy_version=acc.version))

    model = from_store(store, MODEL)
    assert model.registered and model.strategy_matrix_version == mref.version
    assert model.latency_profile_version == lat.version and model.accuracy_profile_version == acc.version
    config = C.TuneConfig(model=MODEL, workload=SHORT, storage=f"journal:{tmp_path / 'j.log'}", population=4)
    T.prepare_study(config)
    study = T.run_trials(config, 3, model=model)
    front = P.pareto_front(study.get_trials(), config.directions)
    chosen = P.PickRule.parse(P.DEFAULT_PICK).choose(front, config.objectives)
    validation = T.validate(config, model, P.thresholds_of(chosen))
    record = T.make_record(model, config.study_name, config.objectives, chosen, validation)
    ref = store.put_tuning(record)
    got = store.get_tuning(MODEL)
    assert got.ref.version == ref.version and got.study == config.study_name
    assert set(got.thresholds) == set(space.THRESHOLD_KEYS)
    assert space.from_record(got.thresholds) == P.thresholds_of(chosen)
    assert got.strategy_matrix_version == mref.version and got.latency_profile_version == lat.version
    assert dict(got.objectives) == pytest.approx({"goodput_rps": chosen.values[0], "mean_accuracy": chosen.values[1]})
    stored = json.loads(got.validation_json)
    assert {"tuned", "default", "verdict"} <= set(stored)

    # The store really validates: a record without thresholds is refused.
    bad = pb.TuningRecord()
    bad.CopyFrom(record)
    bad.thresholds.clear()
    with pytest.raises(grpc.RpcError) as err:
        store.put_tuning(bad)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
