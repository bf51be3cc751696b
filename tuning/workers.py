"""Running a study's trials in several processes: one machine starts N workers
(`mosel tune ... --workers N`), each `python -m tuning.study` (WorkerSettings) on the same
storage and study, with the trials split between them; the parent shows one progress bar fed
from the storage.

Several machines: run the same command on each, against one shared database, giving each
machine its own `--worker-index` (it only offsets the sampler seed):

    mosel tune --model av-digits --trials 200 --workers 8 --worker-index K \\
        --storage postgresql+psycopg://mosel@db-host:5432/optuna --no-store

then, once they are done, `mosel tune ... --trials 0` (same arguments) on any one of them
reports the front, validates the pick and stores it.
"""

from __future__ import annotations

import os
import time

import optuna

from mosel.config import repo_root
from mosel.launch.stack import spawn
from tuning.config import TuneConfig, WorkerSettings
from tuning.study import open_study


def split_trials(n_trials: int, workers: int) -> list[int]:
    workers = max(1, int(workers))
    base, extra = divmod(int(n_trials), workers)
    return [base + (1 if i < extra else 0) for i in range(workers)]


def worker_command(config: TuneConfig, n_trials: int, worker_index: int) -> list[str]:
    return WorkerSettings(config=config.to_json(), trials=n_trials, worker_index=worker_index).command()


def spawn_workers(config: TuneConfig, n_trials: int, workers: int, first_index: int = 0,
                  progress: bool = True) -> list[int]:
    """Run the trials in `workers` separate processes on the study's storage; returns their exit
    codes. The parent shows one progress bar fed from the storage."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo_root()), env.get("PYTHONPATH", "")]))
    study = open_study(config)
    done0 = _finished(study)
    procs = []
    for i, n in enumerate(split_trials(n_trials, workers)):
        if n > 0:
            # spawn: a worker gets SIGTERM when `mosel tune` dies, even killed
            procs.append(spawn(worker_command(config, n, first_index + i), env=env, cwd=str(repo_root())))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_trials, desc=f"{config.study_name} ({len(procs)} workers)", unit="trial")
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(0.5)
            if bar is not None:
                bar.n = min(n_trials, _finished(study) - done0)
                bar.refresh()
        if bar is not None:
            bar.n = min(n_trials, _finished(study) - done0)
            bar.refresh()
    finally:
        if bar is not None:
            bar.close()
        for p in procs:
            if p.poll() is None:
                p.terminate()
    return [p.wait() for p in procs]


def _finished(study: optuna.Study) -> int:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))
