"""Opening and running a tuning study (Optuna, replayed on the simulator), checking its pick
on a held-out workload and recording it for the profile store; also the entry point of one
worker process (`python -m tuning.study`, tuning.workers starts them).

Sampler: NSGAIISampler(seed=seed + 7919 * worker_index, population_size=...). The first
trial of a new study is the code defaults (enqueued), so the front is always compared with
them.

Storage: `sqlite:///<MOSEL_HOME>/tuning/optuna.db` by default; any SQLAlchemy URL
(`postgresql+psycopg://user@host:5432/db`; a plain `postgresql://` URL is rewritten to the
psycopg 3 driver), or `journal:<path>` for Optuna's JournalStorage on a file (safe for
several processes on one machine without a database).

Dashboard: `optuna-dashboard sqlite:///$MOSEL_HOME/tuning/optuna.db` (or the --storage URL,
or the journal file path) shows the same studies live; optuna-dashboard is a separate
`pip install optuna-dashboard`.

Held-out validation: the chosen thresholds and the defaults are replayed on a workload the
study never saw (tuning.config: another seed, a later segment).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Mapping, Sequence

import optuna

from tuning import space
from tuning.config import HELDOUT_SEED_OFFSET, OBJECTIVES, TuneConfig, WorkerSettings
from mosel.server.parent_watch import watch_parent
from tuning.evaluate import heldout_evaluator, json_safe, make_objective, metrics, study_evaluator
from tuning.models import TuningModel, load_model
from tuning.pareto import thresholds_of

SAMPLER_SEED_STRIDE = 7919


def make_storage(url: str):
    """An optuna storage for `url` (see the module doc)."""
    if url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = url[len("journal:"):]
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": 60}  # several worker processes wait for the file lock
    if url.startswith("postgresql"):
        engine_kwargs["pool_pre_ping"] = True
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)



def open_study(config: TuneConfig, worker_index: int = 0) -> optuna.Study:
    sampler = optuna.samplers.NSGAIISampler(seed=config.seed + SAMPLER_SEED_STRIDE * worker_index,
                                            population_size=config.population)
    return optuna.create_study(study_name=config.study_name, storage=make_storage(config.storage_url),
                               directions=config.directions, sampler=sampler, load_if_exists=True)


def prepare_study(config: TuneConfig) -> optuna.Study:
    """Create (or load) the study; a new one gets the code defaults as its first trial."""
    study = open_study(config)
    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(dict(space.DEFAULT_THRESHOLDS))
    return study


def run_trials(config: TuneConfig, n_trials: int, worker_index: int = 0, progress: bool = False,
               model: TuningModel | None = None, violations=None) -> optuna.Study:
    """Run n_trials trials of the study in this process."""
    model = model or load_model(config.model, config.store)
    study = open_study(config, worker_index)
    objective = make_objective(study_evaluator(config, model), config.objectives, violations)
    if n_trials > 0:
        study.optimize(objective, n_trials=n_trials, show_progress_bar=progress)
    return study



def validate(config: TuneConfig, model: TuningModel, chosen: Mapping[str, Any]) -> dict[str, Any]:
    """Chosen thresholds vs the code defaults on the held-out workload (see the module doc)."""
    ev = heldout_evaluator(config, model)
    tuned = metrics(ev.evaluate(chosen))
    default = metrics(ev.evaluate(space.DEFAULT_THRESHOLDS))
    gain = tuned["goodput_rps"] - default["goodput_rps"]
    beats = gain > 1e-9
    if beats:
        verdict = (f"tuned thresholds beat the defaults on held-out goodput: {tuned['goodput_rps']:.2f} vs "
                   f"{default['goodput_rps']:.2f} req/s ({gain:+.2f})")
    else:
        verdict = (f"tuned thresholds do NOT beat the defaults on held-out goodput: {tuned['goodput_rps']:.2f} vs "
                   f"{default['goodput_rps']:.2f} req/s ({gain:+.2f}); the study may have overfit its workload")
    if tuned["floor_violations"]:
        verdict += f"; tuned thresholds violated {tuned['floor_violations']} floors on the held-out workload"
    out = {
        "workload": config.workload,
        "heldout": {"seed": config.seed + HELDOUT_SEED_OFFSET, "segment_s": [config.workload_spec.duration,
                                                                            2 * config.workload_spec.duration],
                    "jobs": len(ev.specs), "noise": config.noise},
        "tuned_thresholds": space.to_record(chosen),
        "default_thresholds": space.to_record(space.DEFAULT_THRESHOLDS),
        "tuned": tuned,
        "default": default,
        "goodput_gain_rps": gain,
        "tuned_beats_default": beats,
        "verdict": verdict,
    }
    return json_safe(out)



def validation_json(validation: Mapping[str, Any]) -> str:
    return json.dumps(json_safe(validation), sort_keys=True, allow_nan=False)


def make_record(model: TuningModel, study: str, objectives: Sequence[str], chosen: optuna.trial.FrozenTrial,
                validation: Mapping[str, Any]):
    """The TuningRecord handed to the profile store (model must be registered)."""
    from mosel.protocol.v1 import profile_store_pb2 as pb

    return pb.TuningRecord(
        model=model.name,
        thresholds=space.to_record(thresholds_of(chosen)),
        strategy_matrix_version=model.strategy_matrix_version,
        latency_profile_version=model.latency_profile_version,
        study=study,
        objectives={OBJECTIVES[o][0]: float(v) for o, v in zip(objectives, chosen.values)},
        validation_json=validation_json(validation),
    )


def main(argv: list[str] | None = None) -> int:
    worker = WorkerSettings.parse(argv)
    watch_parent()  # a worker dies with `mosel tune`, even a killed one
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_trials(worker.tune_config, worker.trials, worker_index=worker.worker_index, progress=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
