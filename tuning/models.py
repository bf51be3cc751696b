"""Where a study's model comes from.

- `paper`: the MOSEL paper's TVLT stand-in (mosel.models.tvlt.paper_facts: joint cost model on the stand-in
  latency table, the paper's accuracies). Not a registered model: nothing is read from or
  written to the profile store.
- any other name (`av-digits`, ...): the latest strategy matrix of that model in the profile
  store (mosel.launch.store_session: a running store, or a temporary one on the default database)
  and the latest latency and accuracy profiles. The cost model is the stored matrix's own
  (`cost_json`, so placement and precision are those the matrix was solved for); the
  accuracies are the latest accuracy profile's. The versions are kept so the TuningRecord
  says what the thresholds were tuned on.

Either way the result is a `TuningModel`, whose `sim_model(grid_step)` is a
mosel.sim.simulator.SimModel with the matrix re-solved for that step (cached per step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from mosel.sim.simulator import SimModel
from tuning.space import MatrixCache

PAPER = "paper"


@dataclass
class TuningModel:
    name: str  # the model's name in the store / simulator ("tvlt" for the paper stand-in)
    source: str  # what --model said
    cost: Any
    accuracies: dict[str, float]
    max_batch: int
    registered: bool
    unit_s: float = 1e-3
    strategy_matrix_version: int = 0
    latency_profile_version: int = 0
    accuracy_profile_version: int = 0
    _cache: MatrixCache | None = field(default=None, repr=False)
    _models: dict[float, SimModel] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self._cache is None:
            self._cache = MatrixCache(self.cost, self.accuracies, self.max_batch)

    @property
    def solves(self) -> int:
        return self._cache.solves

    def sim_model(self, grid_step: float) -> SimModel:
        key = round(float(grid_step), 9)
        if key not in self._models:
            self._models[key] = SimModel(self.name, self.cost, self._cache.get(key), self.accuracies)
        return self._models[key]

    def describe(self) -> str:
        if not self.registered:
            return f"{self.source} ({self.name} stand-in profile, mosel.models.tvlt.paper_facts)"
        return (f"{self.name} (strategy matrix v{self.strategy_matrix_version}, latency profile "
                f"v{self.latency_profile_version}, accuracy profile v{self.accuracy_profile_version})")


def paper_model() -> TuningModel:
    from mosel.models.tvlt import paper_facts as paper

    return TuningModel(name=paper.MODEL, source=PAPER, cost=paper.joint_cost(), accuracies=dict(paper.ACCURACIES),
                       max_batch=paper.MAX_BATCH, registered=False)


def from_store(client, name: str) -> TuningModel:
    """The latest matrix + profiles of `name` in the store behind `client` (LookupError if absent)."""
    import grpc

    from mosel.protocol.records import accuracies_from_profile, matrix_from_proto

    def latest(fetch, what: str, hint: str):
        try:
            return fetch(name)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise LookupError(f"no {what} for {name!r} in the profile store; run `{hint}`") from None
            raise

    msg = latest(client.get_strategy_matrix, "strategy matrix", f"mosel solve --model {name}")
    accuracy = latest(client.get_accuracy_profile, "accuracy profile", f"mosel eval --model {name}")
    matrix = matrix_from_proto(msg)
    accuracies = accuracies_from_profile(accuracy)
    missing = [c for c in matrix.configurations if c not in accuracies]
    if missing:
        raise LookupError(f"accuracy profile v{accuracy.ref.version} of {name!r} lacks {missing}")
    accuracies = {c: accuracies[c] for c in matrix.configurations}
    return TuningModel(name=name, source=name, cost=matrix.cost_model(), accuracies=accuracies,
                       max_batch=matrix.max_batch, registered=True,
                       strategy_matrix_version=int(msg.ref.version),
                       latency_profile_version=int(msg.latency_profile_version),
                       accuracy_profile_version=int(accuracy.ref.version))


def load_model(name: str, store: str | None = None, home=None, say=None) -> TuningModel:
    """`paper`, or a registered model read through store_session(store, home)."""
    if name == PAPER:
        return paper_model()
    from mosel.launch.store_session import store_session

    with store_session(store, home, say=say) as session:
        return from_store(session.client, name)


def versions(model: TuningModel) -> Mapping[str, int]:
    return {"strategy_matrix_version": model.strategy_matrix_version,
            "latency_profile_version": model.latency_profile_version,
            "accuracy_profile_version": model.accuracy_profile_version}
