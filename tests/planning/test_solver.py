"""Offline solver (mosel.planning.solver, .frontiers, .targets) and the strategy matrix
(mosel.planning.matrix): exactness against brute force, the paper's case, lookups,
serialisation, validation."""

from __future__ import annotations

import json
import random
from bisect import bisect_right
from fractions import Fraction

import pytest

from mosel.models.tvlt import paper_facts as paper
from mosel.planning.costs import JointCost, LateFusionCost
from mosel.modalities import all_configurations
from mosel.planning.matrix import Strategy, StrategyMatrix
from mosel.planning.solver import solve_matrix
from mosel.planning.targets import default_targets


def dec(x: float) -> Fraction:
    """The documented accuracy semantics: a float means the decimal it prints as."""
    return Fraction(repr(float(x)))


def splits(b: int, k: int):
    if k == 1:
        yield (b,)
        return
    for x in range(b + 1):
        for rest in splits(b - x, k - 1):
            yield (x,) + rest


def brute_force(cost, accuracies, b):
    """Every integer split of b: (exact accuracy sum, latency, configurations used, split)."""
    acc = [dec(accuracies[c]) for c in cost.configurations]
    return [
        (sum(a * x for a, x in zip(acc, s)), cost.latency(s), sum(1 for x in s if x), s)
        for s in splits(b, len(acc))
    ]


def best_by_need(outcomes):
    """For brute-force outcomes: a function need -> best feasible outcome, ranked by
    (latency, -accuracy sum, configurations used), via a prefix minimum over outcomes
    sorted by accuracy sum, highest first."""
    ranked = sorted(outcomes, key=lambda o: -o[0])
    neg_sums = [-o[0] for o in ranked]
    prefix, best = [], None
    for o in ranked:
        if best is None or (o[1], -o[0], o[2]) < (best[1], -best[0], best[2]):
            best = o
        prefix.append(best)

    def lookup(need):
        k = bisect_right(neg_sums, -need)  # outcomes with sum >= need
        assert k > 0, "brute force found no feasible split"
        return prefix[k - 1]

    return lookup


def assert_cell_exact(cost, accuracies, matrix, outcomes_by_b, check_ties):
    acc = [dec(accuracies[c]) for c in cost.configurations]
    lookups = {b: best_by_need(o) for b, o in outcomes_by_b.items()}
    for b, alpha, s in matrix.cells():
        need = dec(alpha) * b
        assert sum(s.counts) == b and all(x >= 0 for x in s.counts)
        got_sum = sum(a * x for a, x in zip(acc, s.counts))
        assert got_sum >= need, (b, alpha, s)
        assert s.accuracy >= alpha  # the float view never undercuts the target either
        assert s.accuracy == float(got_sum / b)
        assert s.latency == cost.latency(s.counts)
        best = lookups[b](need)
        assert s.latency == best[1], (b, alpha, s, best)
        assert got_sum == best[0], (b, alpha, s, best)  # highest accuracy at that latency
        if check_ties:
            assert s.num_configurations == best[2], (b, alpha, s, best)


def assert_rows_pareto(matrix):
    for b in range(1, matrix.max_batch + 1):
        row = matrix.row(b)
        assert row[0].target == matrix.targets[0]
        for lo, hi in zip(row, row[1:]):
            assert hi.accuracy > lo.accuracy
            assert hi.latency > lo.latency  # strictly: an equal-latency one would dominate
            assert hi.target > lo.target


def random_case(seed):
    rng = random.Random(seed)
    m = rng.choice([2, 3])
    mods = ["audio", "image", "video"][:m]
    kind = ["joint", "shared", "separate"][seed % 3]
    max_b = rng.randint(4, 12) if m == 2 else rng.randint(3, 8)
    integer = rng.random() < 0.5  # integer latencies: many exact ties, tie-breaks checked

    def table():
        if integer:
            return [0.0] + [float(rng.randint(0, 6)) for _ in range(max_b)]
        return [0.0] + [rng.uniform(0.0, 10.0) for _ in range(max_b)]  # noisy, non-monotone

    configs = all_configurations(mods)
    acc_pool = [round(rng.uniform(0.4, 0.99), 3) for _ in range(3)]
    accuracies = {c: rng.choice(acc_pool + [round(rng.uniform(0.4, 0.99), 4)]) for c in configs}
    if kind == "joint":
        cost = JointCost({c: table() for c in configs}, modalities=mods)
    else:
        head = table() if rng.random() < 0.5 else None
        cost = LateFusionCost({x: table() for x in mods}, kind, head)
    step = rng.choice([0.002, 0.01, 0.03])
    return cost, accuracies, max_b, step, integer


@pytest.mark.parametrize("seed", range(24))
def test_random_profiles_match_brute_force(seed):
    cost, accuracies, max_b, step, integer = random_case(seed)
    matrix = solve_matrix(cost, accuracies, max_batch=max_b, step=step)
    outcomes = {b: brute_force(cost, accuracies, b) for b in range(1, max_b + 1)}
    assert_cell_exact(cost, accuracies, matrix, outcomes, check_ties=integer)
    assert_rows_pareto(matrix)


def test_three_modalities_at_batch_twelve_both_placements_and_joint():
    rng = random.Random(7)
    mods = ["audio", "image", "video"]
    configs = all_configurations(mods)
    accuracies = {c: round(rng.uniform(0.6, 0.95), 3) for c in configs}
    tables = {x: [0.0] + [float(rng.randint(0, 9)) for _ in range(12)] for x in mods}
    costs = [
        LateFusionCost(tables, "shared"),
        LateFusionCost(tables, "separate", [0.0] + [0.5] * 12),
        JointCost({c: [0.0] + [float(rng.randint(1, 20)) for _ in range(12)] for c in configs}, modalities=mods),
    ]
    for cost in costs:
        matrix = solve_matrix(cost, accuracies, max_batch=12, step=0.01)
        outcomes = {b: brute_force(cost, accuracies, b) for b in (1, 2, 7, 12)}
        sub = [(b, a, s) for b, a, s in matrix.cells() if b in outcomes]

        class View:  # only the checked job sizes
            def cells(self):
                return iter(sub)

        assert_cell_exact(cost, accuracies, View(), outcomes, check_ties=True)


def test_four_modalities_small_batches():
    rng = random.Random(3)
    mods = ["a", "b", "c", "d"]
    configs = all_configurations(mods)
    assert len(configs) == 15
    accuracies = {c: round(0.5 + 0.1 * len(c.split("+")) + rng.uniform(-0.08, 0.08), 3) for c in configs}
    enc = {x: [0.0] + [float(rng.randint(0, 5)) for _ in range(4)] for x in mods}
    for cost in (
        LateFusionCost(enc, "shared"),
        LateFusionCost(enc, "separate"),
        JointCost({c: [0.0] + [float(rng.randint(0, 9)) for _ in range(4)] for c in configs}, modalities=mods),
    ):
        matrix = solve_matrix(cost, accuracies, max_batch=4, step=0.01)
        outcomes = {b: brute_force(cost, accuracies, b) for b in range(1, 5)}
        assert_cell_exact(cost, accuracies, matrix, outcomes, check_ties=True)


def test_configuration_subset_is_respected():
    cost = LateFusionCost(
        {"audio": [0, 3, 3, 4, 9], "video": [0, 2, 5, 5, 6]},
        "separate",
        configurations=["audio+video", "video"],
    )
    accuracies = {"audio+video": 0.9, "video": 0.7}
    matrix = solve_matrix(cost, accuracies, max_batch=4, step=0.01)
    outcomes = {b: brute_force(cost, accuracies, b) for b in range(1, 5)}
    assert_cell_exact(cost, accuracies, matrix, outcomes, check_ties=True)


def test_accuracy_constraint_is_exact_in_decimal_not_float():
    # 0.57 + 0.50 == 2 * 0.535 in decimal, but 0.57 + 0.5 < 2 * 0.535 in binary floats:
    # a float comparison without tolerance would refuse the cheap split (1, 1, 0).
    assert 0.57 + 0.5 < 2 * 0.535
    cost = JointCost(
        {"audio+video": [0, 5.0, 20.0], "audio": [0, 1.0, 2.0], "video": [0, 0.5, 1.0]},
        modalities=["audio", "video"],
    )
    accuracies = {"audio+video": 0.57, "audio": 0.50, "video": 0.45}
    matrix = solve_matrix(cost, accuracies, max_batch=2, targets=[0.45, 0.535])
    s = matrix.cheapest(2, 0.535)
    assert s.counts == (1, 1, 0)
    assert s.accuracy == 0.535 and s.latency == 6.0
    assert s.target == 0.535


def test_huge_denominators_take_the_exact_python_int_path():
    # 17 significant digits at 1e-5: scaled accuracy sums would overflow int64.
    rng = random.Random(11)
    accuracies = {
        "audio+video": 9.8765432109876543e-01,
        "audio": 1.2345678901234567e-05,
        "video": 0.5,
    }
    enc = {x: [0.0] + [float(rng.randint(0, 5)) for _ in range(5)] for x in ("audio", "video")}
    for cost in (LateFusionCost(enc, "shared"), LateFusionCost(enc, "separate")):
        matrix = solve_matrix(cost, accuracies, max_batch=5, step=0.05)
        outcomes = {b: brute_force(cost, accuracies, b) for b in range(1, 6)}
        assert_cell_exact(cost, accuracies, matrix, outcomes, check_ties=True)


# --------------------------------------------------------------------- the paper's case


@pytest.fixture(scope="module")
def paper_matrix():
    return solve_matrix(paper.joint_cost(), paper.ACCURACIES, max_batch=paper.MAX_BATCH)


def test_paper_grid():
    targets = default_targets(paper.ACCURACIES, paper.TARGET_STEP)
    assert len(targets) == paper.NUM_TARGETS == 42
    assert targets[:3] == [0.66, 0.662, 0.664]
    assert targets[-3:] == [0.738, 0.74, 0.7432]
    assert targets == [float(dec(0.66) + k * dec(0.002)) for k in range(41)] + [0.7432]


def test_paper_matrix_shape_monotone_and_exact(paper_matrix):
    m = paper_matrix
    assert m.configurations == ("audio+video", "audio", "video")
    assert m.max_batch == 32 and len(m.targets) == 42
    assert len([b for b in range(1, 33) if m.row(b)]) == 32
    assert sum(1 for _ in m.cells()) == 1344
    assert_rows_pareto(m)
    cost = paper.joint_cost()
    outcomes = {b: brute_force(cost, paper.ACCURACIES, b) for b in range(1, 33)}
    assert_cell_exact(cost, paper.ACCURACIES, m, outcomes, check_ties=True)


def test_paper_top_target_runs_all_modalities(paper_matrix):
    top = paper_matrix.targets[-1]
    assert top == 0.7432
    for b in range(1, 33):
        s = paper_matrix.cheapest(b, top)
        assert s.counts == (b, 0, 0)
        assert s.accuracy == 0.7432
        assert paper_matrix.row(b)[-1] is s
        assert s.latency == paper.LATENCY_MS["audio+video"][b]
    assert all(s.counts == (b, 0, 0) for b, a, s in paper_matrix.cells() if a == top)


def test_paper_latency_table_model():
    for c, table in paper.LATENCY_MS.items():
        assert len(table) == 33 and table[0] == 0.0
        assert all(x < y for x, y in zip(table, table[1:]))  # this stand-in is increasing
    # cost follows tokens: video (1568) costs more than audio (1020), both less than both
    for n in range(1, 33):
        assert paper.LATENCY_MS["audio"][n] < paper.LATENCY_MS["video"][n] < paper.LATENCY_MS["audio+video"][n]


# --------------------------------------------------------------------- lookups


def _lookup_matrices():
    out = [solve_matrix(paper.joint_cost(), paper.ACCURACIES)]
    for seed in (1, 2, 5):
        cost, accuracies, max_b, step, _ = random_case(seed)
        out.append(solve_matrix(cost, accuracies, max_batch=max_b, step=step))
    return out


def test_cheapest_and_most_accurate_within_match_linear_scans():
    rng = random.Random(0)
    for m in _lookup_matrices():
        for b in range(1, m.max_batch + 1):
            row = m.row(b)
            alphas = [s.accuracy for s in row] + list(m.targets)
            alphas += [rng.uniform(m.targets[0] - 0.1, row[-1].accuracy) for _ in range(30)]
            for alpha in alphas:
                expect = next(s for s in row if s.accuracy >= alpha)
                assert m.cheapest(b, alpha) is expect
            with pytest.raises(ValueError, match="exceeds the best achievable"):
                m.cheapest(b, row[-1].accuracy + 1e-9)
            budgets = [s.latency for s in row] + [row[0].latency - 1e-9, row[-1].latency * 2]
            budgets += [rng.uniform(0, row[-1].latency * 1.2) for _ in range(30)]
            for t in budgets:
                fits = [s for s in row if s.latency <= t]
                assert m.most_accurate_within(b, t) is (fits[-1] if fits else None)


def test_cells_agree_with_cheapest_on_the_grid(paper_matrix):
    for b, alpha, s in paper_matrix.cells():
        assert paper_matrix.cheapest(b, alpha) is s
        assert s.target <= alpha


def test_job_size_outside_the_matrix_is_refused(paper_matrix):
    with pytest.raises(ValueError, match="exceeds the matrix's max_batch 32"):
        paper_matrix.cheapest(33, 0.7)
    with pytest.raises(ValueError, match="must be >= 1"):
        paper_matrix.row(0)
    with pytest.raises(ValueError, match="expected an integer"):
        paper_matrix.most_accurate_within(2.0, 10.0)


def test_as_split(paper_matrix):
    s = paper_matrix.cheapest(5, 0.73)
    split = paper_matrix.as_split(s)
    assert sum(split.values()) == 5 and all(v > 0 for v in split.values())
    assert paper.joint_cost().latency(split) == s.latency


# --------------------------------------------------------------------- serialisation


def test_matrix_round_trip_through_json():
    for m in _lookup_matrices():
        m.source = {"profile": "test-profile", "version": 3}
        text = json.dumps(m.to_dict())
        back = StrategyMatrix.from_dict(json.loads(text))
        assert back == m
        assert back.source == {"profile": "test-profile", "version": 3}
        assert back.targets == m.targets
        assert list(back.cells()) == list(m.cells())
        assert back.cost_model() == m.cost_model()
        for b in range(1, m.max_batch + 1):
            assert back.row(b) == m.row(b)


def test_from_dict_refuses_tampered_rows(paper_matrix):
    good = json.loads(json.dumps(paper_matrix.to_dict()))

    def tampered(edit):
        d = json.loads(json.dumps(good))
        edit(d)
        return d

    cases = [
        (lambda d: d.update(format="other/9"), "format"),
        (lambda d: d["rows"][2][0].update(counts=[0, 2, 0]), "not a split of 3"),
        (lambda d: d["rows"][0][-1].update(accuracy=0.75), "does not match counts"),
        (lambda d: d["rows"][0].reverse(), "strictly increase|first strategy"),
        (lambda d: d["rows"].pop(), "rows must be a list of 32"),
        (lambda d: d["rows"][4][0].update(target=0.6601), "not on the target grid"),
        (lambda d: d["rows"][0][0].update(target=0.7432), "miss target|strictly increase|first strategy"),
        (lambda d: d["rows"][1][0].pop("latency"), "missing field"),
    ]
    for edit, message in cases:
        with pytest.raises(ValueError, match=message):
            StrategyMatrix.from_dict(tampered(edit))


def test_strategy_round_trip():
    s = Strategy((1, 0, 2), 0.7, 12.5, 0.69)
    assert Strategy.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    with pytest.raises(ValueError, match="non-negative integers"):
        Strategy.from_dict({"counts": [1, -1], "accuracy": 0.7, "latency": 1, "target": 0.7})


# --------------------------------------------------------------------- inputs


def test_default_targets_endpoints():
    assert default_targets({"a": 0.7, "b": 0.7}) == [0.7]
    assert default_targets([0.7, 0.701]) == [0.7, 0.701]  # gap below one step: both ends
    assert default_targets([0.7, 0.71]) == [0.7, 0.702, 0.704, 0.706, 0.708, 0.71]  # exact multiple
    assert default_targets([0.7, 0.7111]) == [0.7, 0.702, 0.704, 0.706, 0.708, 0.7111]
    with pytest.raises(ValueError, match="step"):
        default_targets([0.6, 0.7], step=0)


def test_given_targets_are_sorted_deduplicated_and_bounded():
    cost = paper.joint_cost()
    m = solve_matrix(cost, paper.ACCURACIES, max_batch=4, targets=[0.73, 0.5, 0.73, 0.7432])
    assert m.targets == (0.5, 0.73, 0.7432)
    with pytest.raises(ValueError, match="above the best configuration accuracy"):
        solve_matrix(cost, paper.ACCURACIES, max_batch=4, targets=[0.7, 0.75])
    with pytest.raises(ValueError, match="finite"):
        solve_matrix(cost, paper.ACCURACIES, max_batch=4, targets=[float("nan")])


def test_solver_input_validation():
    cost = paper.joint_cost()
    with pytest.raises(ValueError, match=r"no accuracy for configurations \['video'\]"):
        solve_matrix(cost, {"audio+video": 0.7, "audio": 0.6})
    with pytest.raises(ValueError, match=r"unknown configurations \['text'\]"):
        solve_matrix(cost, dict(paper.ACCURACIES, text=0.5))
    with pytest.raises(ValueError, match=r"accuracies\['audio'\]"):
        solve_matrix(cost, dict(paper.ACCURACIES, audio=float("nan")))
    with pytest.raises(ValueError, match="exceeds the cost model's latency tables"):
        solve_matrix(cost, paper.ACCURACIES, max_batch=33)
    with pytest.raises(ValueError, match="max_batch"):
        solve_matrix(cost, paper.ACCURACIES, max_batch=0)
    big = LateFusionCost({m: [0.0] * 33 for m in "abcdef"}, "shared")
    with pytest.raises(ValueError, match="GiB of state"):
        solve_matrix(big, {c: 0.5 for c in big.configurations}, max_batch=32)
