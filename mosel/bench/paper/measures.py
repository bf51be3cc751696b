"""What `mosel bench paper` sweeps and how it judges a run: the policies, floor spreads and
rate grids, the miss target, the paper's job-size distribution, the agnostic capacity the
rates are multiples of, and the max sustained throughput of a sweep (simulated or live)."""

from __future__ import annotations

import math

from mosel.sim import workload as W

POLICIES = ("agnostic", "aggressive", "mosel")
DELTAS = (0.03, 0.06, 0.09, 0.12)
RATE_FACTORS = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)
QUICK_RATE_FACTORS = (0.01, 0.05, 0.2, 1.0, 1.5)
BURSTY_FACTORS = (0.25, 0.5, 1.0)
LIVE_FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0)
QUICK_LIVE_FACTORS = (0.5, 1.5)
MISS_TARGET = 0.01
# live vs simulation agreement: on-time fraction within 0.15 (absolute) and mean JCT within a
# factor of 2.5. Judged on the calibrated simulator (see the module doc); what calibration
# still cannot model: the policy's decision time (not in the simulator's clock), the
# dispatcher's own thread competing with the encoders for this machine's 2 cores, and costs
# that change with load (the fits are taken at one rate).
REPLAY_TOLERANCE = {"served_fraction_abs": 0.15, "mean_jct_ratio": 2.5}
# the calibration trace of each policy: same rate and length as the compared trace, another seed
CALIBRATION_SEED_OFFSET = 1000


def size_distribution(max_size: int = W.MAX_JOB_SIZE) -> dict[int, float]:
    """Exact P(size = k) of min(max_size, max(1, int(Normal(1, 6)))) (int truncates to 0)."""
    def cdf(x: float) -> float:
        return 0.5 * (1.0 + math.erf((x - 1.0) / (6.0 * math.sqrt(2.0))))

    probs = {1: cdf(2.0)}  # int(x) <= 1  <=>  x < 2
    for k in range(2, max_size):
        probs[k] = cdf(k + 1.0) - cdf(float(k))
    probs[max_size] = 1.0 - cdf(float(max_size))
    return probs


def mean_job_size(max_size: int = W.MAX_JOB_SIZE) -> float:
    return sum(k * p for k, p in size_distribution(max_size).items())


def agnostic_capacity(model, unit_s: float = 1e-3) -> float:
    """Jobs per second the agnostic server sustains: 1 / E[full-modality latency(size)]."""
    mean_ms = sum(p * W.full_latency_ms(model, k) for k, p in size_distribution().items())
    return 1.0 / (mean_ms * unit_s)



def max_sustained(points: list[dict]) -> dict | None:
    ok = [p for p in points if p["miss_rate"] <= MISS_TARGET and p["floor_violations"] == 0]
    return max(ok, key=lambda p: p["goodput_rps"]) if ok else None



def finite(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x



def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) and math.isfinite(a) and math.isfinite(b) else None
