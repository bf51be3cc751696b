"""Per-model dispatcher: EDF queue -> rounds -> per-encoder lanes -> fusion -> answers.

Each round takes queued jobs in EDF order up to `max_round_items` requests and lets the
policy fix their configurations. The round then puts one batch on each *lane* its
requests use (mosel.scheduling.rounds.lane_groups: one lane per encoder when the
encoders sit on separate devices, else one lane for all): a lane is a queue that runs one
batch at a time, and a batch holds every request of the round that uses the lane's
modalities (requests of different configurations share a batch). When all of a round's
batches are back, the finishing step joins the embeddings with the fused scatter op,
runs the fusion head and answers. Up to `pipeline_depth` rounds are in flight at once, so
one round's audio batch can run while the round before is still on the video encoder,
and the next round's encoder work overlaps this round's fusion and answers.

The policy is told what is committed and how long each batch and finishing step took
(`round_started` / `lane_finished` / `round_finished`), which is how its predictor sees
the live backlog of every encoder, and of every queued job that expired (`job_expired`).
Every accepted job is settled exactly once: with a response, or with an error status.

Longer than ~400 lines on purpose: the queue, the lanes and the finishing step share one lock
and one round record, and splitting them would spread that invariant over several modules.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import torch

from mosel.ops import batching
from mosel.errors import DeadlineExceeded, MoselError, ResourceExhausted, Unavailable, status_of
from mosel.modalities import config_modalities
from mosel.scheduling.predict import Predictor, lane_groups
from mosel.engine.encoder_pool import EncoderPool
from mosel.scheduling.job import Job
from mosel.engine.served_model import ServedModel
from mosel.scheduling.policy import Policy, apply_thresholds, full_configuration
from mosel.engine.stats import ServingStats
from mosel.protocol.v1 import selection_pb2

log = logging.getLogger(__name__)

# Downstream calls get the job's remaining time minus this, so our answer still fits.
DOWNSTREAM_MARGIN_S = 0.002
# Why admission refused a job, for the refusal counters (by exception type).
class ModalityUnavailable(Unavailable):
    """A job that cannot be served (at its floor) without a modality that has no encoder up."""


_ADMISSION_REASONS = {ResourceExhausted: "queue_full", DeadlineExceeded: "deadline_unreachable",
                      Unavailable: "draining", ModalityUnavailable: "modality_unavailable"}
# Forgetting rate of the measured costs GetStats reports: about the last 50-100 batches
# (the policy's own predictor forgets faster, to follow load changes).
METER_EWMA = 0.02


@dataclass
class _Round:
    """A committed round on its way through the lanes."""

    jobs: list
    flat: list  # (job, item) in round order
    ticket: object  # the policy's RoundTicket, or None
    committed: float
    pending: set  # lanes still to report
    groups: list  # the lanes, as numbered in `pending`
    measure: object = None  # the meter's ticket, or None
    state: object = None  # the ServedModel's ModelState when committed: the weights of this round
    profiles: object = None  # ... and its Profiles then (the accuracies its answers report)
    parts: dict = field(default_factory=dict)  # modality slot -> (positions, embeddings)
    error: BaseException | None = None


class Dispatcher:
    def __init__(self, model: ServedModel, encoders: EncoderPool, policy: Policy, stats: ServingStats,
                 max_round_items: int = 32, max_queue_items: int = 4096, max_wait_s: float = 0.0,
                 pipeline_depth: int = 1):
        if pipeline_depth < 1:
            raise ValueError(f"pipeline_depth must be >= 1, got {pipeline_depth}")
        self.model = model
        self.encoders = encoders
        self.policy = policy
        self.stats = stats
        self.max_round_items = max_round_items
        self.max_queue_items = max_queue_items
        # How long a part-filled round may wait for more requests (0: dispatch at once, as
        # the paper does); never past the earliest queued deadline.
        self.max_wait_s = max_wait_s
        self.pipeline_depth = int(pipeline_depth)
        policy.bind_pipeline_depth(self.pipeline_depth)
        self._slots = {m: i for i, m in enumerate(model.pack.modality_names)}  # modality -> fusion input slot
        self.tuning_version = 0  # tuning record in force (0 = code defaults)
        self._heap: list[tuple[tuple, Job]] = []
        self._queued_items = 0
        self._in_flight = 0  # rounds committed and not yet answered
        self._cond = threading.Condition()
        self._stopping = False
        self._calls = ThreadPoolExecutor(max_workers=max(4, 2 * len(model.pack.modality_names)),
                                         thread_name_prefix=f"enc-{model.name}")
        self._lanes: dict[tuple[str, ...], ThreadPoolExecutor] = {}  # one worker each: FIFO, one batch at a time
        self._finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"finish-{model.name}")
        # The measured cost of every lane and of the finishing step, whatever the policy:
        # a predictor fed the same reports as the policy's, read by GetStats.
        self._meter: Predictor | None = None
        self._thread = threading.Thread(target=self._loop, name=f"dispatch-{model.name}", daemon=True)
        self._thread.start()

    # ---- admission -------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        self.stats.received(job.size)
        try:
            down = self.encoders.down_modalities()
            if down:
                self._without(job, down)
            with self._cond:
                if self._stopping:
                    raise Unavailable("selection service is draining")
                if self._queued_items + job.size > self.max_queue_items:
                    raise ResourceExhausted(
                        f"queue full ({self._queued_items} requests queued, limit {self.max_queue_items})")
                self.policy.admit(job, [queued for _, queued in self._heap], time.monotonic())
                heapq.heappush(self._heap, (job.edf_key(), job))
                self._queued_items += job.size
                self._cond.notify()
        except MoselError as exc:
            self.stats.failed(exc.code.name, job.size, _ADMISSION_REASONS.get(type(exc), ""))
            raise

    def _without(self, job: Job, down: set[str]) -> None:
        """Plan `job` without the modalities that have no encoder up; UNAVAILABLE only when an
        item cannot be served at all, or not at its job's floor."""
        for item in job.items:
            kept = [c for c in item.candidates if not set(config_modalities(c)) & down]
            if not kept:
                raise ModalityUnavailable(f"items[{item.index}]: every configuration it may use needs "
                                  f"{sorted(down & set(config_modalities(full_configuration(item.candidates))))}, "
                                  "which has no encoder up")
            item.unavailable = tuple(m for m in config_modalities(full_configuration(item.candidates)) if m in down)
            item.candidates = kept
        best = sum(self.model.accuracy_of(it.candidates[0]) for it in job.items) / job.size
        if job.min_accuracy > best + 1e-12:
            raise ModalityUnavailable(f"slo.min_accuracy: {job.min_accuracy:.4f} needs {sorted(down)}, which has no encoder "
                              f"up; without it the best is {best:.4f}")

    def queue_depth(self) -> int:
        with self._cond:
            return self._queued_items

    def _queue_snapshot(self) -> list[Job]:
        return [job for _, job in sorted(self._heap)]

    # ---- the loop --------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not (self._heap and self._in_flight < self.pipeline_depth):
                    if self._stopping and not self._heap and not self._in_flight:
                        return
                    self._cond.wait()
                self._wait_to_fill()
                try:
                    round_jobs = self._take_round(time.monotonic())
                except Exception as exc:  # noqa: BLE001 - a planning failure must not strand the queue
                    log.exception("%s: planning a round failed; failing the queued jobs", self.model.name)
                    round_jobs = []
                    for _, job in self._heap:
                        self._fail(job, exc, "planning_failed")
                    self._heap, self._queued_items = [], 0
                if not round_jobs:
                    continue
                committed = time.monotonic()
                for job in round_jobs:
                    job.started = committed
                # Tell a predicting policy what joins the lanes, so admission sees the backlog.
                ticket = self.policy.round_started(round_jobs, committed)
                self._in_flight += 1
                measure = self._measure_start(round_jobs, committed)
            try:
                self._commit(round_jobs, ticket, committed, measure)
            except Exception as exc:  # noqa: BLE001 - a round failure must settle its jobs
                for job in round_jobs:
                    self._fail(job, exc, "round_failed")
                self._round_done(_Round(round_jobs, [], ticket, committed, pending=set(), groups=[], measure=measure,
                                        error=exc), committed)

    def _wait_to_fill(self) -> None:
        """With a batch wait, hold a part-filled round until it fills, its oldest request has
        waited max_wait_s, or the most urgent job has used half its budget (called with the
        lock held)."""
        if self.max_wait_s <= 0:
            return
        while self._heap and not self._stopping and self._queued_items < self.max_round_items:
            oldest = min(job.received for _, job in self._heap)
            urgent = self._heap[0][1]
            limit = min(oldest + self.max_wait_s, urgent.received + 0.5 * (urgent.deadline - urgent.received))
            remaining = limit - time.monotonic()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _take_round(self, now: float) -> list[Job]:
        """Pop expired jobs (answer DEADLINE_EXCEEDED, never start them) and the next round."""
        while self._heap and self._heap[0][1].deadline <= now:
            _, job = heapq.heappop(self._heap)
            self._queued_items -= job.size
            self._fail(job, DeadlineExceeded("deadline passed while queued; work not started"), "expired_in_queue")
            self.policy.job_expired(job, now)
        self._apply_tuning()
        queue = self._queue_snapshot()
        self.policy.plan(queue, now)
        # Jobs the policy found hopeless even at their cheapest strategy: answer now, never start.
        hopeless = {id(job) for job in self.policy.drops}
        if hopeless:
            kept = [(key, job) for key, job in self._heap if id(job) not in hopeless]
            for _, job in self._heap:
                if id(job) in hopeless:
                    self._queued_items -= job.size
                    self._fail(job, DeadlineExceeded(
                        "cannot meet the deadline even with the cheapest allowed configurations; not started"),
                        "hopeless")
            heapq.heapify(kept)
            self._heap = kept
        taken, items = [], 0
        # A job larger than a round (possible after tuning lowers the round size) runs alone.
        while self._heap and (not taken or items + self._heap[0][1].size <= self.max_round_items):
            _, job = heapq.heappop(self._heap)
            self._queued_items -= job.size
            items += job.size
            taken.append(job)
        return taken

    def _apply_tuning(self) -> None:
        """Bring tuned thresholds from the store into force once per new tuning version."""
        profiles = self.model.profiles
        if profiles.tuning_version == self.tuning_version:
            return
        self.tuning_version = profiles.tuning_version
        applied = apply_thresholds(self.policy, profiles.thresholds)
        if "max_round_items" in profiles.thresholds:
            self.max_round_items = max(1, int(profiles.thresholds["max_round_items"]))
            applied["max_round_items"] = self.max_round_items
        log.info("%s: tuning v%d in force: %s", self.model.name, self.tuning_version, applied)

    # ---- lanes --------------------------------------------------------------------------
    def _lane_groups(self, ticket) -> list[tuple[str, ...]]:
        """The lanes a round runs on: the predictor's (so lane numbers agree), else those
        of the loaded cost model, else one lane for all encoders."""
        predictor = getattr(ticket, "predictor", None)
        if predictor is not None and all(m in self.model.pack.modality_names for g in predictor.lanes for m in g):
            return predictor.lanes
        cost = self.model.profiles.cost
        return lane_groups(cost, self.model.pack.modality_names)

    def _lane(self, group: tuple[str, ...]) -> ThreadPoolExecutor:
        lane = self._lanes.get(group)
        if lane is None:
            lane = self._lanes[group] = ThreadPoolExecutor(max_workers=1,
                                                          thread_name_prefix=f"lane-{self.model.name}-{'+'.join(group)}")
        return lane

    def _commit(self, jobs: list[Job], ticket, committed: float, measure=None) -> None:
        """Queue the round's batches on its lanes."""
        flat = [(job, item) for job in jobs for item in job.items]
        rnd = _Round(jobs, flat, ticket, committed, pending=set(), groups=self._lane_groups(ticket), measure=measure,
                     state=self.model.state, profiles=self.model.profiles)
        work = []
        for k, group in enumerate(rnd.groups):
            batches = {}
            for modality in group:
                positions = [i for i, (_, item) in enumerate(flat) if modality in config_modalities(item.configuration)]
                if positions:
                    batches[modality] = positions
            if batches:
                rnd.pending.add(k)
                work.append((k, group, batches))
        if not work:
            raise MoselError("round uses no encoder")
        for k, group, batches in work:
            self._lane(group).submit(self._run_lane, rnd, k, batches)

    def _run_lane(self, rnd: _Round, lane: int, batches: dict[str, list[int]]) -> None:
        """One lane's batch of the round: call its encoders, report, hand on when last."""
        started = time.monotonic()
        measured = None
        try:
            if rnd.error is None:
                live = [job for job in rnd.jobs if job.deadline > started]
                if not live:  # every job expired while the batch waited: never start it
                    raise DeadlineExceeded("deadline passed while waiting for the encoder; work not started")
                timeout = max(job.remaining_s(started) for job in live) - DOWNSTREAM_MARGIN_S
                slots = self._slots
                calls = {}
                for modality, positions in batches.items():
                    tensors = [rnd.flat[i][1].inputs[modality] for i in positions]
                    if len(batches) == 1:
                        embeddings, compute_us = self.encoders.encode(modality, tensors, timeout, rnd.state.digest)
                        rnd.parts[slots[modality]] = (positions, embeddings)
                        self.stats.encoded(modality, len(positions), compute_us / 1e6)
                    else:  # encoders sharing a lane still run their calls side by side
                        calls[modality] = (positions, self._calls.submit(self.encoders.encode, modality, tensors, timeout,
                                                                         rnd.state.digest))
                for modality, (positions, future) in calls.items():
                    embeddings, compute_us = future.result()
                    rnd.parts[slots[modality]] = (positions, embeddings)
                    self.stats.encoded(modality, len(positions), compute_us / 1e6)
                measured = time.monotonic() - started
        except Exception as exc:  # noqa: BLE001 - settled by the finishing step
            rnd.error = rnd.error or exc
        with self._cond:
            now = time.monotonic()
            # reported also when the batch failed or was skipped (measured None): the lane is free
            self.policy.lane_finished(rnd.ticket, lane, now, measured)
            if rnd.measure is not None and rnd.measure.predictor.lanes == rnd.groups:
                rnd.measure.predictor.lane_finished(rnd.measure, lane, now, measured)
            rnd.pending.discard(lane)
            last = not rnd.pending
        if last:
            self._finisher.submit(self._finish_round, rnd)

    def _finish_round(self, rnd: _Round) -> None:
        """Fusion head and answers (one round at a time), then free the pipeline slot."""
        started = time.monotonic()
        try:
            if rnd.error is not None:
                raise rnd.error
            pack = rnd.state.pack
            emb = torch.zeros(len(rnd.flat), len(pack.modality_names), pack.embed_dim)
            present = torch.zeros(len(rnd.flat), len(pack.modality_names), dtype=torch.bool)
            for slot, (positions, embeddings) in rnd.parts.items():
                batching.scatter_into(emb, present, torch.from_numpy(embeddings.copy()),
                                      torch.tensor(positions, dtype=torch.int64), slot)
            with torch.inference_mode():
                probs = torch.softmax(rnd.state.head(emb, present), dim=-1).numpy()
            finished = time.monotonic()
            first = 0
            for job in rnd.jobs:  # `flat` lists each job's items together, in round order
                self._answer(job, list(probs[first:first + job.size]), rnd.committed, finished, rnd)
                first += job.size
        except Exception as exc:  # noqa: BLE001 - every job of the round gets its answer
            for job in rnd.jobs:
                self._fail(job, exc, "round_failed")
        finally:
            self._round_done(rnd, started)

    def _round_done(self, rnd: _Round, finishing_started: float) -> None:
        """Report the round (every committed round once, a failed one without a time) and
        free its pipeline slot."""
        with self._cond:
            now = time.monotonic()
            took = now - finishing_started if rnd.error is None else None
            self.policy.round_finished(rnd.ticket, now, took)
            if rnd.measure is not None:
                rnd.measure.predictor.round_finished(rnd.measure, now, took)
            self._in_flight -= 1
            self._cond.notify_all()

    # ---- measured costs -------------------------------------------------------------------
    def _measure_start(self, jobs: list[Job], committed: float):
        """Commit the round to the meter (called with the lock held); its ticket, or None
        while the model has no latency profile."""
        cost = self.model.profiles.cost
        if cost is None:
            return None
        meter = self._meter
        if meter is None or meter.cost is not cost:
            meter = Predictor(cost, self.max_round_items, depth=self.pipeline_depth, ewma=METER_EWMA)
            if self._meter is not None:
                meter.carry_feedback(self._meter)
            self._meter = meter
        try:
            return meter.round_started(committed, [meter.split_of([it.configuration for it in job.items])
                                                   for job in jobs])
        except ValueError:  # a configuration the profile does not cover: not measured
            return None

    def measured_costs(self) -> dict | None:
        """The meter's fits ({"lanes": {name: fit}, "finishing": fit, "depth": n}), or None."""
        with self._cond:
            if self._meter is None:
                return None
            fits = self._meter.fits()
        return {"lanes": fits["lanes"], "finishing": fits["finish"], "depth": self.pipeline_depth}

    # ---- settling ---------------------------------------------------------------------
    def _answer(self, job: Job, scores: list, started: float, finished: float, rnd: _Round) -> None:
        model = self.model
        labels = rnd.state.pack.labels
        queue_us = int((started - job.received) * 1e6)
        compute_us = int((finished - started) * 1e6)
        total_us = int((finished - job.received) * 1e6)
        timing = selection_pb2.Timing(queue_us=queue_us, compute_us=compute_us, total_us=total_us)
        results, accuracies, degraded, unavailable = [], [], 0, 0
        counts: dict[str, int] = {}
        for item, probs in zip(job.items, scores):
            config = item.configuration
            acc = rnd.profiles.accuracy.get(config, 0.0)
            if item.unavailable:
                reason = "unavailable:" + ",".join(item.unavailable)
                unavailable += 1
            else:
                reason = "load" if config != full_configuration(item.candidates) else ""
            is_degraded = bool(reason)
            degraded += is_degraded
            accuracies.append(acc)
            counts[config] = counts.get(config, 0) + 1
            label = int(probs.argmax())
            results.append(selection_pb2.InferResponse(
                id=item.id, model=model.name, scores=[float(p) for p in probs], label=label,
                label_name=labels[label] if label < len(labels) else str(label),
                modalities_used=list(config_modalities(config)), configuration=config,
                expected_accuracy=acc, degraded=is_degraded, timing=timing, policy=self.policy.name,
                degraded_reason=reason))
        response = selection_pb2.InferJobResponse(
            job_id=job.id, results=results,
            strategy=[selection_pb2.ConfigurationCount(configuration=c, count=n) for c, n in counts.items()],
            expected_accuracy=sum(accuracies) / len(accuracies), degraded=degraded > 0, timing=timing)
        late = finished > job.deadline
        self.stats.served_job([it.configuration for it in job.items], accuracies, degraded,
                              (finished - job.received) * 1000.0, late, queue_ms=(started - job.received) * 1000.0,
                              unavailable=unavailable)
        if not job.future.done():
            job.future.set_result(response)

    def _fail(self, job: Job, exc: BaseException, reason: str = "") -> None:
        code, message = status_of(exc)
        if code == grpc.StatusCode.INTERNAL:
            log.error("job %s failed: %r", job.id, exc)
        self.stats.failed(code.name, job.size, reason)
        if not job.future.done():
            job.future.set_exception(exc if isinstance(exc, MoselError) else _as_error(code, message))

    # ---- lifecycle --------------------------------------------------------------------
    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish queued and in-flight work, then stop the loop."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        for lane in self._lanes.values():
            lane.shutdown(wait=False)
        self._finisher.shutdown(wait=False)
        self._calls.shutdown(wait=False)


def _as_error(code: grpc.StatusCode, message: str) -> MoselError:
    err = MoselError(message)
    err.code = code
    return err
