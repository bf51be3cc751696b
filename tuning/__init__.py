"""Optuna studies over the online scheduler's thresholds, replayed on the simulator.

- tuning.space:  the search space and the threshold names a TuningRecord stores;
- tuning.models: where a study's model comes from (`paper`, or a registered model's stored
                 profiles and matrix);
- tuning.study:  workload specs, the objective, storage, study naming, worker processes,
                 the Pareto front, the pick rule, held-out validation, the TuningRecord;
- tuning.report: tables and the Pareto PNG.

Command line: `mosel tune` (mosel.cli.tune). Live view: `optuna-dashboard <storage URL>`.
"""
