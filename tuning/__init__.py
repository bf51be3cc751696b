"""Optuna studies over the online scheduler's thresholds, replayed on the simulator.

- tuning.space:    the search space and the threshold names a TuningRecord stores;
- tuning.models:   where a study's model comes from (`paper`, or a registered model's stored
                   profiles and matrix);
- tuning.config:   objectives, workload specs, the study's configuration and name, a
                   worker's command line;
- tuning.evaluate: replaying a workload under thresholds, the objective, the constraint;
- tuning.pareto:   feasibility, the Pareto front, the pick rule;
- tuning.study:    storage, opening and running a study, held-out validation, the
                   TuningRecord, the worker entry point (`python -m tuning.study`);
- tuning.workers:  worker processes on one machine (and the scale-out to several);
- tuning.report:   tables and the Pareto PNG.

Command line: `mosel tune` (mosel.cli.tune). Live view: `optuna-dashboard <storage URL>`.
"""
