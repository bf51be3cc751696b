"""Jobs as the scheduler sees them: a group of requests (items) sharing one deadline and one
accuracy floor. Built from wire requests by mosel.engine.requests, or by the simulator.

The scheduler reads the model a job belongs to only through `ServedModelView`, so it
depends on nothing of the engine or the wire.
"""

from __future__ import annotations

import itertools
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mosel.planning.costs import CostModel
    from mosel.planning.solver import StrategyMatrix

_seq = itertools.count()


class ProfilesView(Protocol):
    """The store records a policy plans with (None until loaded)."""

    @property
    def cost(self) -> CostModel | None: ...

    @property
    def matrix(self) -> StrategyMatrix | None: ...


class ServedModelView(Protocol):
    """What the scheduler needs of a served (or simulated) model."""

    name: str
    configurations: list[str]

    @property
    def profiles(self) -> ProfilesView: ...

    def accuracy_of(self, configuration: str) -> float: ...


@dataclass
class Item:
    id: str
    inputs: dict[str, Any]  # modality -> its input (a wire tensor when served; unused in simulation)
    candidates: list[str]  # configurations this item may use, best accuracy first
    configuration: str = ""  # chosen by the policy
    index: int = 0  # position in its job
    unavailable: tuple[str, ...] = ()  # modalities it would have used, left out because no encoder was up


@dataclass
class Job:
    id: str
    model: ServedModelView
    items: list[Item]
    received: float  # time.monotonic()
    deadline: float  # time.monotonic()
    min_accuracy: float
    priority: int = 0
    seq: int = field(default_factory=lambda: next(_seq))
    future: Future = field(default_factory=Future)
    started: float | None = None  # when its first batch was dispatched

    @property
    def size(self) -> int:
        return len(self.items)

    def remaining_s(self, now: float | None = None) -> float:
        return self.deadline - (time.monotonic() if now is None else now)

    def edf_key(self) -> tuple:
        return (self.deadline, -self.priority, self.seq)
