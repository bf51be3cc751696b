"""The exact frontier DPs of the offline solver (docs/architecture.md, "The offline path").

For every job size b = 1..B both give the Pareto frontier of (accuracy sum, latency) over
all integer splits of b, in one pass; the solver reads each target's optimum off it.
Accuracy sums are integers: the accuracies scaled by a common denominator (`A`).

- JointCost (`joint_frontiers`): latency is separable, sum_c L_c(x_c). A DP over
  configurations keeps, for every number n of requests assigned so far, the Pareto
  frontier of (accuracy sum, latency) of the partial splits; a partial split dominated in
  both is never part of a better completion, so the final frontier for n = b holds the
  answer for every target.
- LateFusionCost (`late_frontiers`): latency depends on the split only through the
  encoder loads (load_m, m = 1..M) and b. A DP over configurations on the dense state
  (n, load_1, .., load_M) (numpy, int64 keys; Python ints when they could overflow)
  computes, for each state, the largest accuracy sum reachable (ties: fewer
  configurations). Latency is then a function of the state, so the frontier for b is
  the Pareto frontier over load vectors, and the split is recovered by backtracking
  (the last tie-break is deterministic but unspecified). Size: (B+1)^(M+1) states, e.g.
  1.2 M for 3 modalities at B = 32 (`late_state_bytes`).

Latency is summed exactly as the cost model sums it, so a frontier point's latency is
the identical float `cost.latency(split)` gives.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mosel.planning.costs import JointCost, LateFusionCost


class Frontier:
    """Pareto frontier of one job size: accuracy sums S (scaled ints) ascending, latencies
    ascending, and a way to get the split of each point."""

    __slots__ = ("S", "L", "_counts", "_resolve")

    def __init__(self, S: list[int], L: list[float], counts: list[Any], resolve=None):
        self.S, self.L, self._counts, self._resolve = S, L, counts, resolve

    def counts(self, i: int) -> tuple[int, ...]:
        c = self._counts[i]
        return tuple(c) if self._resolve is None else self._resolve(c)


def _prune(cands: list[tuple]) -> list[tuple]:
    """Keep the Pareto-optimal entries (negS, L, nconf, counts): sorted by accuracy sum
    descending, then latency, nconf, counts; an entry survives only if it is strictly
    faster than every entry with at least its accuracy."""
    cands.sort()
    out = []
    best = math.inf
    for e in cands:
        if e[1] < best:
            out.append(e)
            best = e[1]
    return out


def joint_frontiers(cost: JointCost, A: list[int], B: int) -> list[Frontier | None]:
    """Frontier of every job size 1..B (index 0 is None) for a joint-fusion cost."""
    F: list[list[tuple]] = [[(0, 0.0, 0, ())]] + [[] for _ in range(B)]
    for c, a in zip(cost.configurations, A):
        table = cost.config_latency[c]
        new: list[list[tuple]] = []
        for n in range(B + 1):
            cands: list[tuple] = [(s, l, k, cnt + (0,)) for s, l, k, cnt in F[n]]
            for x in range(1, n + 1):
                src = F[n - x]
                if src:
                    da, dl = a * x, table[x]
                    cands.extend((s - da, l + dl, k + 1, cnt + (x,)) for s, l, k, cnt in src)
            new.append(_prune(cands))
        F = new
    out: list[Frontier | None] = [None]
    for b in range(1, B + 1):
        entries = F[b][::-1]  # accuracy ascending
        out.append(Frontier([-e[0] for e in entries], [e[1] for e in entries], [e[3] for e in entries]))
    return out


def late_state_bytes(cost: LateFusionCost, B: int) -> int:
    """About the memory `late_frontiers(cost, A, B)` holds: per state, three int64 arrays
    (the best sums, those with the configuration in use, a temporary) and two flags per
    configuration (the choices kept for backtracking)."""
    return (B + 1) ** (len(cost.modalities) + 1) * (3 * 8 + 2 * len(cost.configurations))


def late_frontiers(cost: LateFusionCost, A: list[int], B: int) -> list[Frontier | None]:
    """Frontier of every job size 1..B (index 0 is None) for a late-fusion cost; check
    `late_state_bytes` first, the state grows as (B+1)^(M+1)."""
    M = len(cost.modalities)
    C = len(cost.configurations)
    W = C + 1  # key = S * W - (configurations used): max S first, then fewest configurations
    max_key = max(A) * W * B
    bound = 4 * (max_key + C + 1)
    dtype: Any = np.int64 if bound < 2**62 else object
    NEG = -bound
    infeasible_below = NEG // 2
    shape = (B + 1,) * (M + 1)

    V = np.full(shape, NEG, dtype=dtype)
    V[(0,) * (M + 1)] = 0
    choices: list[tuple[np.ndarray, np.ndarray]] = []
    for ci in range(C):
        enc = set(cost.config_encoders[ci])
        first, more = A[ci] * W - 1, A[ci] * W
        dst = tuple(slice(1, None) if m in enc else slice(None) for m in range(M))
        src = tuple(slice(None, -1) if m in enc else slice(None) for m in range(M))
        U = np.full(shape, NEG, dtype=dtype)  # best with x_c >= 1
        from_u = np.zeros(shape, dtype=bool)  # U[n, l] extends U[n-1, l - e_c] (else starts from V)
        for n in range(1, B + 1):
            start = V[(n - 1,) + src] + first
            cont = U[(n - 1,) + src] + more
            take = cont > start
            U[(n,) + dst] = np.where(take, cont, start)
            from_u[(n,) + dst] = take
        use_u = U > V  # ties keep x_c = 0
        V = np.where(use_u, U, V)
        choices.append((use_u, from_u))
        del U

    encoders = cost.config_encoders

    def backtrack(state: tuple[int, ...]) -> tuple[int, ...]:
        n, loads = state[0], list(state[1:])
        counts = [0] * C
        for ci in range(C - 1, -1, -1):
            use_u, from_u = choices[ci]
            x = 0
            if use_u[(n, *loads)]:
                while True:
                    cont = bool(from_u[(n, *loads)])
                    x += 1
                    n -= 1
                    for m in encoders[ci]:
                        loads[m] -= 1
                    if not cont:
                        break
            counts[ci] = x
        if n != 0 or any(loads):
            raise RuntimeError(f"late-fusion backtrack did not reach the empty state from {state}")
        return tuple(counts)

    # Latency of every load vector, summed exactly as LateFusionCost.latency_of_loads does.
    grid = None
    for m in range(M):
        table = np.asarray(cost.encoder_latency[cost.modalities[m]], dtype=np.float64)
        table = table.reshape(tuple(B + 1 if i == m else 1 for i in range(M)))
        if grid is None:
            grid = table
        elif cost.placement == "shared":
            grid = grid + table
        else:
            grid = np.maximum(grid, table)
    grid = np.broadcast_to(grid, (B + 1,) * M)

    out: list[Frontier | None] = [None]
    for b in range(1, B + 1):
        box = (slice(0, b + 1),) * M
        keys = V[(b,) + box].ravel()
        lat = grid[box].ravel()
        if cost.head_latency is not None:
            lat = lat + cost.head_latency[b]
        idx = np.flatnonzero(keys > infeasible_below)
        k = keys[idx]
        L = lat[idx]
        S = (k + C) // W
        nconf = S * W - k
        s_rank = S if dtype is np.int64 else np.unique(S, return_inverse=True)[1].reshape(-1)
        order = np.lexsort((nconf.astype(np.int64), L, -np.asarray(s_rank, dtype=np.int64)))
        Ls = L[order]
        keep = np.empty(len(order), dtype=bool)
        keep[0] = True
        keep[1:] = Ls[1:] < np.minimum.accumulate(Ls)[:-1]
        sel = order[keep][::-1]  # accuracy ascending
        flat = idx[sel]
        loads = np.unravel_index(flat, (b + 1,) * M)
        states_sel = [(b,) + tuple(int(v[i]) for v in loads) for i in range(len(flat))]
        out.append(
            Frontier([int(s) for s in S[sel]], [float(x) for x in L[sel]], states_sel, backtrack)
        )
    return out

