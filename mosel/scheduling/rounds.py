"""Rounds and lanes (docs/architecture.md, "The scheduler"): how the dispatcher groups queued
jobs into rounds, which lanes a model's encoder work runs on, and what a round costs by its
profile.

The dispatcher (mosel.engine.dispatcher) forms *rounds* (`form_rounds`): queued jobs in EDF
order are taken while the round holds at most `max_round_items` requests; a job is never
split and round formation stops at the first job that does not fit (no skipping ahead). A
job larger than max_round_items runs alone in one round. Round formation depends only on
job sizes, never on the chosen configurations.

A committed round puts one batch on each *lane* its requests use. A lane is a queue of
encoder work that runs one batch at a time (`lane_groups`):
- LateFusionCost, placement "separate": one lane per encoder (each on its own device), so
  a round's audio batch can run while the previous round's video batch is still running;
- LateFusionCost, placement "shared": one lane for all encoders (they share a device and
  their costs add up);
- JointCost (and any other cost model): one lane for the whole model.

A batch past the profiled max_batch is costed as ceil(n / B) batches: q * L(B) + L(r)
(`table_at`).
"""

from __future__ import annotations

from typing import Sequence

from mosel.planning.costs import CostModel, JointCost, LateFusionCost


def table_at(table: Sequence[float], n: int) -> float:
    """L(n), extended past the table's end as full batches of the largest size."""
    if n <= 0:
        return 0.0
    top = len(table) - 1
    if n <= top:
        return table[n]
    q, r = divmod(n, top)
    return q * table[top] + table[r]


def round_latency(cost: CostModel, counts: Sequence[int]) -> float:
    """Latency (cost units) of one round whose combined split is `counts` (aligned to
    `cost.configurations`) run on its own: the additive cost the strategy options use."""
    if isinstance(cost, JointCost):
        total = 0.0
        for c, n in zip(cost.configurations, counts):
            if n:
                total += table_at(cost.config_latency[c], n)
        return total
    if isinstance(cost, LateFusionCost):
        loads = cost.loads(counts)
        if max(loads) <= cost.max_batch and sum(counts) <= cost.max_batch:
            return cost.latency_of_loads(loads, sum(counts))
        parts = [table_at(cost.encoder_latency[m], n) for m, n in zip(cost.modalities, loads)]
        total = sum(parts) if cost.placement == "shared" else max(parts)
        if cost.head_latency is not None:
            total += table_at(cost.head_latency, sum(counts))
        return total
    return float(cost.latency(tuple(counts)))


def lane_groups(cost: CostModel | None, modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """The lanes (groups of modalities whose batches run one after another) of a model:
    one per encoder for late fusion on separate devices, otherwise one for all. Without a
    cost model (not profiled yet) all `modalities` form one lane. Lanes are numbered in
    this order by the predictor and the dispatcher alike."""
    if isinstance(cost, LateFusionCost) and cost.placement == "separate":
        return [(m,) for m in cost.modalities]
    return [tuple(modalities)]


def form_rounds(sizes: Sequence[int], max_round_items: int) -> list[tuple[int, int]]:
    """[start, end) index ranges of the rounds the dispatcher forms from jobs of `sizes`
    (EDF order): greedy, never splitting a job, stopping at the first job that does not fit."""
    rounds = []
    i, n = 0, len(sizes)
    while i < n:
        j, items = i, 0
        while j < n and items + sizes[j] <= max_round_items:
            items += sizes[j]
            j += 1
        if j == i:  # a job larger than a round: predicted to run alone
            j = i + 1
        rounds.append((i, j))
        i = j
    return rounds
