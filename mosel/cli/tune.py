"""`mosel tune`: an Optuna study over the online scheduler's thresholds, replayed on the simulator.

    mosel tune --model paper|av-digits --workload paper[:rate=R,duration=S,delta=D] --trials N
               [--workers N] [--worker-index K] [--storage URL] [--study NAME] [--seed S] [--p99]
               [--pick RULE] [--no-store] [--out DIR]

Each trial runs MoselPolicy with the trial's thresholds (tuning.space) on the workload through
mosel.sim.simulator; objectives: maximise goodput and served accuracy (and minimise p99 JCT with
--p99); NSGA-II; trials that break an accuracy floor are infeasible and never on the front.
Then: the Pareto front as a table, a PNG (goodput vs accuracy) in --out (default
$MOSEL_HOME/tuning/<study>/), a point picked by --pick, and a held-out check of that point
against the code defaults (another seed, a later segment). Unless --no-store, the pick goes to
the profile store as a TuningRecord (registered models only; `--model paper` is skipped).

--pick RULE: `TARGET[|COND[,COND...]]`; TARGET is goodput, accuracy or p99 (the first two are
maximised, p99 minimised); COND is NAME>=VALUE or NAME<=VALUE with VALUE a number, `best`, or
`best-D`/`best+D` (best = best value of NAME on the Pareto front). Default
`goodput|accuracy>=best-0.005`: highest goodput among Pareto points whose accuracy is within
0.005 of the most accurate one.

Storage: `sqlite:///$MOSEL_HOME/tuning/optuna.db` by default, `--storage
postgresql+psycopg://user@host:5432/db` to share a study between machines, or
`--storage journal:/path/study.log` (Optuna JournalStorage on a file). The study name is
derived from (model, workload, objectives, seed), so identical commands join one study.
Per machine, against a shared database (each machine its own --worker-index):

    mosel tune --model av-digits --trials 200 --workers 8 --worker-index 0 \\
        --storage postgresql+psycopg://mosel@db-host:5432/optuna --no-store

and afterwards the same command with `--trials 0` on one machine reports, validates, stores.

Watch a study live: `optuna-dashboard sqlite:///$MOSEL_HOME/tuning/optuna.db` (same URL as
--storage; for a journal file, its path). `pip install optuna-dashboard` first.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import optuna

from mosel.config import mosel_home
from mosel.engine.settings import SelectionSettings
from mosel.store.settings import DEFAULT_ADDRESS
from tuning import report, space
from tuning.config import DEFAULT_NOISE, DEFAULT_OBJECTIVES, TuneConfig
from tuning.evaluate import objective_values, study_evaluator
from tuning.models import PAPER, from_store, paper_model
from tuning.pareto import DEFAULT_PICK, PickError, PickRule, feasible, pareto_front, thresholds_of
from tuning.study import make_record, open_study, prepare_study, run_trials, validate, validation_json
from tuning.workers import spawn_workers


def register(sub) -> None:
    p = sub.add_parser("tune", help="tune the scheduler's thresholds with Optuna on the simulator")
    p.add_argument("--model", default=PAPER, help="`paper` (the paper's stand-in profile) or a registered model, "
                                                  "e.g. av-digits (profiles and matrix from the store)")
    p.add_argument("--workload", default="paper",
                   help="paper[:rate=R,duration=S,delta=D]: Poisson jobs/s, virtual seconds, deadline slack ms "
                        "(default paper:rate=40,duration=30,delta=17)")
    p.add_argument("--trials", type=int, default=50, help="trials to run now (split among workers; default 50)")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    p.add_argument("--worker-index", type=int, default=0,
                   help="first worker index of this machine (offsets the sampler seed; give each machine its own)")
    p.add_argument("--storage", default=None, help="optuna storage URL (default sqlite:///$MOSEL_HOME/tuning/optuna.db; "
                                                   "postgresql+psycopg://..., journal:PATH)")
    p.add_argument("--study", default=None, help="study name (default: derived from model, workload, objectives, seed)")
    p.add_argument("--seed", type=int, default=0, help="workload and sampler seed (default 0)")
    p.add_argument("--p99", action="store_true", help="also minimise p99 job completion time")
    p.add_argument("--noise", type=float, default=DEFAULT_NOISE,
                   help=f"log-normal sigma of round latency noise in the simulator (default {DEFAULT_NOISE})")
    SelectionSettings.add_arguments(p, only=("pipeline_depth",), help={
        "pipeline_depth": "rounds in flight in the selection service the pick is for (its --pipeline-depth; "
                          "default {default})"})
    p.add_argument("--population", type=int, default=None,
                   help="NSGA-II population size (default: trials/3 clamped to 4..50)")
    p.add_argument("--pick", default=DEFAULT_PICK, help=f"pick rule (default {DEFAULT_PICK!r}; see `mosel tune` doc)")
    p.add_argument("--no-store", action="store_true", help="do not write the TuningRecord to the profile store")
    p.add_argument("--store", default=None, metavar="HOST:PORT",
                   help=f"profile store address (default: {DEFAULT_ADDRESS} if serving, else a temporary store)")
    p.add_argument("--out", default=None, help="output directory (default $MOSEL_HOME/tuning/<study>/)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        rule = PickRule.parse(args.pick)
        objectives = DEFAULT_OBJECTIVES + (("p99",) if args.p99 else ())
        population = args.population or max(4, min(50, args.trials // 3))
        config = TuneConfig(model=args.model, workload=args.workload, seed=args.seed, objectives=objectives,
                            noise=args.noise, storage=args.storage, study=args.study, store=args.store,
                            population=population, pipeline_depth=args.pipeline_depth)
    except ValueError as exc:
        print(f"mosel tune: {exc}")
        return 2
    if args.trials < 0 or args.workers < 1:
        print("mosel tune: --trials must be >= 0 and --workers >= 1")
        return 2
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    with contextlib.ExitStack() as stack:
        session = None
        if args.model == PAPER:
            model = paper_model()
        else:
            from mosel.launch.store_session import store_session

            session = stack.enter_context(store_session(args.store, mosel_home(), say=print))
            config.store = session.address
            try:
                model = from_store(session.client, args.model)
            except LookupError as exc:
                print(f"mosel tune: {exc}")
                return 1
        return _tune(args, config, model, rule, session)


def _tune(args, config: TuneConfig, model, rule: PickRule, session) -> int:
    name = config.study_name
    print(f"study {name} on {config.storage_url}")
    print(f"model {model.describe()}; workload {config.workload}, seed {config.seed}, noise {config.noise}; "
          f"objectives {', '.join(config.objectives)}")
    prepare_study(config)
    started = time.perf_counter()
    if args.workers > 1:
        codes = spawn_workers(config, args.trials, args.workers, first_index=args.worker_index,
                              progress=not args.no_progress)
        if any(codes):
            print(f"mosel tune: worker exit codes {codes}")
            return 1
    elif args.trials:
        run_trials(config, args.trials, worker_index=args.worker_index, progress=not args.no_progress, model=model)
    elapsed = time.perf_counter() - started

    study = open_study(config)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    infeasible = [t for t in complete if not feasible(t)]
    print(f"{args.trials} trials run in {elapsed:.1f} s; the study holds {len(trials)} trials "
          f"({len(complete)} complete, {len(infeasible)} infeasible: floor violated)")
    front = pareto_front(trials, config.directions)
    default_values = objective_values(study_evaluator(config, model).evaluate(space.DEFAULT_THRESHOLDS),
                                      config.objectives)
    try:
        chosen = rule.choose(front, config.objectives)
    except PickError as exc:
        print(f"mosel tune: {exc}")
        return 1

    print()
    print(report.pareto_table(front, config.objectives, chosen,
                              title=f"Pareto front ({len(front)} points; * = picked by {rule.text!r})"))
    print("defaults on the study workload: " + ", ".join(
        f"{report.LABELS[o]} {v:.4f}" for o, v in zip(config.objectives, default_values)))

    out = Path(args.out) if args.out else mosel_home() / "tuning" / name
    png = report.plot(out / "pareto.png", trials, front, config.objectives, default_values, chosen,
                      title=f"{name}\n{len(complete)} trials, workload {config.workload}")
    validation = validate(config, model, thresholds_of(chosen))
    print()
    print(report.validation_table(validation, title=(
        f"held-out workload (seed {validation['heldout']['seed']}, segment "
        f"{validation['heldout']['segment_s'][0]:g}-{validation['heldout']['segment_s'][1]:g} s, "
        f"{validation['heldout']['jobs']} jobs): picked trial {chosen.number} vs defaults")))
    print(validation["verdict"])
    summary = {"study": name, "storage": config.storage_url, "config": json.loads(config.to_json()),
               "trials": len(trials), "pareto": [{"trial": t.number, "thresholds": thresholds_of(t),
                                                  "values": dict(zip(config.objectives, t.values))} for t in front],
               "picked": chosen.number, "pick_rule": rule.text, "default_values": dict(zip(config.objectives, default_values)),
               "validation": validation}
    (out / "summary.json").write_text(validation_json(summary) + "\n")
    print(f"wrote {png} and {out / 'summary.json'}")

    if args.no_store:
        print("not stored (--no-store)")
        return 0
    if not model.registered or session is None:
        print(f"not stored: --model {args.model} is not a registered model (the profile store keeps tuning for "
              "registered models only)")
        return 0
    record = make_record(model, name, config.objectives, chosen, validation)
    ref = session.client.put_tuning(record)
    print(f"stored tuning v{ref.version} for {model.name} in the {session.describe()} "
          f"(tuned on strategy matrix v{model.strategy_matrix_version}, latency profile v{model.latency_profile_version})")
    return 0
