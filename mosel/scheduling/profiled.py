"""The base of the profile-driven policies (`aggressive`, `mosel`; see
docs/architecture.md, "The scheduler").

Both need the model's cost model and strategy matrix (`model.profiles.cost/.matrix`);
until they are loaded they behave like `agnostic` and log one warning.

Per job, the *options* are the strategies it may use, each with its per-item
configurations already fixed:
- when all items of the job have the same candidate list and the job fits the matrix
  (size <= max_batch): the matrix row for its size, restricted to strategies whose
  configurations all are candidates and whose accuracy meets the job's floor; the counts
  are laid onto the items in the matrix's configuration order;
- always, as fallbacks that also cover jobs whose items have different candidate sets (or
  jobs larger than the matrix): every item at its best candidate, and every item at its
  cheapest single-request candidate (if that meets the floor). Their latency is the cost
  model's latency of the job's split.
Accuracy is recomputed from `model.accuracy_of`, so floors are checked against the same
numbers the dispatcher reports. The best option always meets the floor (build_job refuses
floors above the best reachable accuracy).

Feedback hooks for the dispatcher (and the simulator, which calls them the same way):
`round_started(jobs, now)` commits a round to the predictor's lanes and returns its ticket
(None until the profiles are loaded); `lane_finished(ticket, lane, now, measured_s)` and
`round_finished(ticket, now, finishing_s)` refit the per-lane and finishing-step
corrections and move the backlog by the error (mosel.scheduling.predict).
"""

from __future__ import annotations

import logging
from typing import Sequence

from mosel.scheduling.agnostic import AgnosticPolicy
from mosel.scheduling.job import Job, ServedModelView
from mosel.scheduling.policy import Policy
from mosel.scheduling.predict import Predictor, RoundTicket, round_latency
from mosel.scheduling.reassign import Option, pareto

log = logging.getLogger(__name__)

FLOOR_TOLERANCE = 1e-9
# How long an answer takes back to the client, planned for by default (a loaded machine's
# loopback gRPC; see MoselPolicy.reply_margin_s).
DEFAULT_REPLY_MARGIN_S = 0.003


class ProfiledPolicy(Policy):
    name = "profiled"
    tunable = ("max_round_items", "pipeline_depth", "unit_s")

    def __init__(self, max_round_items: int = 32, unit_s: float = 1e-3, pipeline_depth: int = 1):
        self.max_round_items = int(max_round_items)
        self.pipeline_depth = int(pipeline_depth)  # rounds in flight at once (the dispatcher's)
        self.unit_s = float(unit_s)
        self.predictor: Predictor | None = None
        self.drops: list[Job] = []
        self._agnostic = AgnosticPolicy()
        self._warned = False
        self._profiles_key = None
        self._options: dict[int, list[Option]] = {}
        self._splits: dict[int, list[tuple[int, ...]]] = {}  # per job: split of each option

    def configure(self, **values) -> None:
        super().configure(**values)
        if {"max_round_items", "pipeline_depth", "unit_s"} & set(values):
            self._profiles_key = None  # the predictor models rounds of this shape: rebuild it

    def bind_pipeline_depth(self, depth: int) -> None:
        self.configure(pipeline_depth=int(depth))

    # ---- profiles ----------------------------------------------------------------
    def _ready(self, model: ServedModelView) -> bool:
        cost, matrix = model.profiles.cost, model.profiles.matrix
        if cost is None or matrix is None:
            if not self._warned:
                log.warning("%s policy: model %s has no cost model / strategy matrix yet; acting as agnostic",
                            self.name, model.name)
                self._warned = True
            return False
        key = (id(cost), id(matrix))
        if key != self._profiles_key:
            old = self.predictor
            self.predictor = Predictor(cost, self.max_round_items, unit_s=self.unit_s, depth=self.pipeline_depth)
            if old is not None:
                self.predictor.carry_feedback(old)
            self._profiles_key = key
            self._options.clear()
            self._splits.clear()
        return True

    def options(self, job: Job) -> list[Option]:
        """The job's admissible options, latency ascending, accuracy strictly rising."""
        cached = self._options.get(job.seq)
        if cached is not None:
            return cached
        model = job.model
        cost, matrix = model.profiles.cost, model.profiles.matrix
        known = set(cost.configurations)
        floor = job.min_accuracy - FLOOR_TOLERANCE
        b = job.size
        opts: list[Option] = []

        def add(assignment: list[str]) -> None:
            acc = sum(model.accuracy_of(c) for c in assignment) / b
            if acc >= floor:
                lat = round_latency(cost, self.predictor.split_of(assignment))
                opts.append(Option(lat, acc, b, tuple(assignment)))

        first = job.items[0].candidates
        if b <= matrix.max_batch and all(it.candidates == first for it in job.items) \
                and tuple(matrix.configurations) == tuple(cost.configurations):
            allowed = set(first)
            for s in matrix.row(b):
                used = [c for c, x in zip(matrix.configurations, s.counts) if x]
                if set(used) <= allowed:
                    assignment = [c for c, x in zip(matrix.configurations, s.counts) for _ in range(x)]
                    add(assignment)
        best = [next((c for c in it.candidates if c in known), it.candidates[0]) for it in job.items]
        add(best)
        cheap = [min((c for c in it.candidates if c in known), key=lambda c: cost.latency({c: 1}), default=best[i])
                 for i, it in enumerate(job.items)]
        add(cheap)
        if not opts:  # floor above what the model's accuracies give: run the best anyway
            opts.append(Option(round_latency(cost, self.predictor.split_of(best)),
                               sum(model.accuracy_of(c) for c in best) / b, b, tuple(best)))
        opts = pareto(opts)
        if len(self._options) > 8192:
            self._options.clear()
            self._splits.clear()
        self._options[job.seq] = opts
        self._splits[job.seq] = [self.predictor.split_of(o.payload) for o in opts]
        return opts

    def _cached(self, queue: Sequence[Job]) -> tuple[list[list[Option]], list[list[tuple[int, ...]]]]:
        """Per job of `queue`: its options and their splits (cached across calls)."""
        options, splits = self._options, self._splits
        opts, spl = [], []
        for job in queue:
            seq = job.seq
            o = options.get(seq)
            if o is None:
                o = self.options(job)
            opts.append(o)
            spl.append(splits[seq])
        return opts, spl

    def forget(self, job: Job) -> None:
        self._options.pop(job.seq, None)
        self._splits.pop(job.seq, None)

    @staticmethod
    def _apply(job: Job, option: Option) -> None:
        for item, config in zip(job.items, option.payload):
            item.configuration = config

    # ---- dispatcher feedback ---------------------------------------------------------
    def round_started(self, jobs: Sequence[Job], now: float) -> RoundTicket | None:
        """Commit the round about to run to the predictor's lanes; its ticket."""
        for job in jobs:
            self.forget(job)
        if self.predictor is None:
            return None
        splits = [self.predictor.split_of([it.configuration for it in job.items]) for job in jobs]
        return self.predictor.round_started(now, splits)

    def lane_finished(self, ticket: RoundTicket | None, lane: int, now: float, measured_s: float | None) -> None:
        if ticket is not None and ticket.predictor is self.predictor:  # not a replaced predictor's
            self.predictor.lane_finished(ticket, lane, now, measured_s)

    def round_finished(self, ticket: RoundTicket | None, now: float, finishing_s: float | None) -> None:
        if ticket is not None and ticket.predictor is self.predictor:
            self.predictor.round_finished(ticket, now, finishing_s)
