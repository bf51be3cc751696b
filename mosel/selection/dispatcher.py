"""Per-model dispatcher: EDF queue -> rounds of batched encoder calls -> fusion -> answers.

Each round takes queued jobs in EDF order up to `max_round_items` requests, lets the
policy fix their configurations, sends every encoder one batch holding all requests
that use its modality (requests of different configurations share a batch), joins
the embeddings with the fused scatter op and runs the fusion head. Every accepted job
is settled exactly once: with a response, or with an error status.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import torch

from mosel import batching
from mosel.errors import DeadlineExceeded, MoselError, ResourceExhausted, Unavailable, status_of
from mosel.modalities import config_modalities
from mosel.selection.encoders import EncoderPool
from mosel.selection.jobs import Job
from mosel.selection.models import ServedModel
from mosel.selection.policies import Policy, apply_thresholds, full_configuration
from mosel.selection.stats import ServingStats
from mosel.v1 import selection_pb2

log = logging.getLogger(__name__)

# Downstream calls get the job's remaining time minus this, so our answer still fits.
DOWNSTREAM_MARGIN_S = 0.002


class Dispatcher:
    def __init__(self, model: ServedModel, encoders: EncoderPool, policy: Policy, stats: ServingStats,
                 max_round_items: int = 32, max_queue_items: int = 4096, max_wait_s: float = 0.0):
        self.model = model
        self.encoders = encoders
        self.policy = policy
        self.stats = stats
        self.max_round_items = max_round_items
        self.max_queue_items = max_queue_items
        # How long a part-filled round may wait for more requests (0: dispatch at once, as
        # the paper does); never past the earliest queued deadline.
        self.max_wait_s = max_wait_s
        self.tuning_version = 0  # tuning record in force (0 = code defaults)
        self._heap: list[tuple[tuple, Job]] = []
        self._queued_items = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._calls = ThreadPoolExecutor(max_workers=max(4, 2 * len(model.pack.modality_names)),
                                         thread_name_prefix=f"enc-{model.name}")
        self._thread = threading.Thread(target=self._loop, name=f"dispatch-{model.name}", daemon=True)
        self._thread.start()

    # ---- admission -------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        self.stats.received(job.size)
        try:
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
            self.stats.failed(exc.code.name, job.size)
            raise

    def queue_depth(self) -> int:
        with self._cond:
            return self._queued_items

    def _queue_snapshot(self) -> list[Job]:
        return [job for _, job in sorted(self._heap)]

    # ---- the loop --------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._heap and not self._stopping:
                    self._cond.wait()
                if not self._heap and self._stopping:
                    return
                self._wait_to_fill()
                try:
                    round_jobs = self._take_round(time.monotonic())
                except Exception as exc:  # noqa: BLE001 - a planning failure must not strand the queue
                    log.exception("%s: planning a round failed; failing the queued jobs", self.model.name)
                    round_jobs = []
                    for _, job in self._heap:
                        self._fail(job, exc)
                    self._heap, self._queued_items = [], 0
            if round_jobs:
                try:
                    self._run_round(round_jobs)
                except Exception as exc:  # noqa: BLE001 - a round failure must settle its jobs
                    for job in round_jobs:
                        self._fail(job, exc)

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
            self._fail(job, DeadlineExceeded("deadline passed while queued; work not started"))
        self._apply_tuning()
        queue = self._queue_snapshot()
        self.policy.plan(queue, now)
        # Jobs the policy found hopeless even at their cheapest strategy: answer now, never start.
        hopeless = {id(job) for job in getattr(self.policy, "drops", ())}
        if hopeless:
            kept = [(key, job) for key, job in self._heap if id(job) not in hopeless]
            for _, job in self._heap:
                if id(job) in hopeless:
                    self._queued_items -= job.size
                    self._fail(job, DeadlineExceeded(
                        "cannot meet the deadline even with the cheapest allowed configurations; not started"))
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

    def _run_round(self, jobs: list[Job]) -> None:
        started = time.monotonic()
        pack = self.model.pack
        modalities = pack.modality_names
        flat = [(job, item) for job in jobs for item in job.items]
        for job in jobs:
            job.started = started
        # Tell a predicting policy what is in flight, so admission sees the backlog.
        round_started = getattr(self.policy, "round_started", None)
        with self._cond:
            predicted_s = round_started(jobs, started) if round_started else None
        timeout = max(job.remaining_s(started) for job in jobs) - DOWNSTREAM_MARGIN_S
        calls = {}
        for slot, modality in enumerate(modalities):
            positions = [i for i, (_, item) in enumerate(flat) if modality in config_modalities(item.configuration)]
            if positions:
                tensors = [flat[i][1].inputs[modality] for i in positions]
                calls[slot] = (positions, self._calls.submit(self.encoders.encode, modality, tensors, timeout))
        emb = torch.zeros(len(flat), len(modalities), pack.embed_dim)
        present = torch.zeros(len(flat), len(modalities), dtype=torch.bool)
        for slot, (positions, future) in calls.items():
            embeddings, _ = future.result()
            batching.scatter_into(emb, present, torch.from_numpy(embeddings.copy()),
                                  torch.tensor(positions, dtype=torch.int64), slot)
        with torch.inference_mode():
            probs = torch.softmax(self.model.head(emb, present), dim=-1).numpy()
        finished = time.monotonic()
        round_finished = getattr(self.policy, "round_finished", None)
        if round_finished and predicted_s is not None:
            with self._cond:
                round_finished(finished, finished - started, predicted_s)
        first = 0
        for job in jobs:  # `flat` lists each job's items together, in round order
            self._answer(job, list(probs[first:first + job.size]), started, finished)
            first += job.size

    # ---- settling ---------------------------------------------------------------------
    def _answer(self, job: Job, scores: list, started: float, finished: float) -> None:
        model = self.model
        labels = model.pack.labels
        queue_us = int((started - job.received) * 1e6)
        compute_us = int((finished - started) * 1e6)
        total_us = int((finished - job.received) * 1e6)
        timing = selection_pb2.Timing(queue_us=queue_us, compute_us=compute_us, total_us=total_us)
        results, accuracies, degraded = [], [], 0
        counts: dict[str, int] = {}
        for item, probs in zip(job.items, scores):
            config = item.configuration
            acc = model.accuracy_of(config)
            is_degraded = config != full_configuration(item.candidates)
            degraded += is_degraded
            accuracies.append(acc)
            counts[config] = counts.get(config, 0) + 1
            label = int(probs.argmax())
            results.append(selection_pb2.InferResponse(
                id=item.id, model=model.name, scores=[float(p) for p in probs], label=label,
                label_name=labels[label] if label < len(labels) else str(label),
                modalities_used=list(config_modalities(config)), configuration=config,
                expected_accuracy=acc, degraded=is_degraded, timing=timing, policy=self.policy.name))
        response = selection_pb2.InferJobResponse(
            job_id=job.id, results=results,
            strategy=[selection_pb2.ConfigurationCount(configuration=c, count=n) for c, n in counts.items()],
            expected_accuracy=sum(accuracies) / len(accuracies), degraded=degraded > 0, timing=timing)
        late = finished > job.deadline
        self.stats.served_job([it.configuration for it in job.items], accuracies, degraded,
                              (finished - job.received) * 1000.0, late)
        if not job.future.done():
            job.future.set_result(response)

    def _fail(self, job: Job, exc: BaseException) -> None:
        code, message = status_of(exc)
        if code == grpc.StatusCode.INTERNAL:
            log.error("job %s failed: %r", job.id, exc)
        self.stats.failed(code.name, job.size)
        if not job.future.done():
            job.future.set_exception(exc if isinstance(exc, MoselError) else _as_error(code, message))

    # ---- lifecycle --------------------------------------------------------------------
    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish queued work, then stop the loop."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        self._calls.shutdown(wait=False)


def _as_error(code: grpc.StatusCode, message: str) -> MoselError:
    err = MoselError(message)
    err.code = code
    return err
