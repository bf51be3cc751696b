"""The MOSEL paper's constants (EMNLP 2024), in one place.

Facts from the paper and its code: TVLT (ViT-Base sized, 12 layers, 768 wide) on CMU-MOSEI
binary sentiment; accuracy per modality configuration; video is 8 frames x 196 patches =
1568 tokens, audio at most 1020 tokens; job sizes b = 1..32; targets step 0.002.

The latency table is NOT a measurement. It is a TVLT-like stand-in derived from a stated
model, for benchmarks and tests until real profiles (`mosel profile`, the profile store)
replace it:

    L_c(0) = 0
    L_c(n) = OVERHEAD_MS + MS_PER_TOKEN * T_c * (FILL * n + (1 - FILL) * sqrt(n)),  n >= 1

- T_c: tokens per request of configuration c, the sum of its modalities' tokens
  (audio+video 2588, audio 1020, video 1568). Cost is taken proportional to tokens, i.e.
  the attention term (quadratic in sequence length) is ignored.
- OVERHEAD_MS: fixed per-batch cost (launches, data movement, the classifier head).
- The bracket is n at batch 1 and tends to FILL * n: each request costs its full token price
  alone and FILL (75%) of it in a large batch, a mild saturation as the device fills up.
  The table is increasing and slightly concave: roughly linear in the batch size.
- Unit: milliseconds; values rounded to 1 microsecond.
"""

from __future__ import annotations

import math

from mosel.planning.costs import JointCost

MODEL = "tvlt"
MODALITIES = ("audio", "video")
ACCURACIES = {"audio+video": 0.7432, "audio": 0.7233, "video": 0.6600}
TOKENS = {"audio": 1020, "video": 1568}

MAX_BATCH = 32
TARGET_STEP = 0.002
NUM_TARGETS = 42  # 0.660, 0.662, ..., 0.740, 0.7432 (see mosel.planning.targets.default_targets)
DEADLINE_SLACK_MS = 17.0  # synthetic workloads; 55 ms in trace runs

# Assumptions of the stand-in latency model (see the module doc).
OVERHEAD_MS = 2.0
MS_PER_TOKEN = 0.004
FILL = 0.75
LATENCY_UNIT = "ms"


def config_tokens(configuration: str) -> int:
    return sum(TOKENS[m] for m in configuration.split("+"))


def model_latency_ms(tokens: int, n: int) -> float:
    """The stand-in model above, for a batch of n requests of `tokens` tokens each."""
    if n < 0:
        raise ValueError(f"batch size must be >= 0, got {n}")
    if n == 0:
        return 0.0
    work = FILL * n + (1.0 - FILL) * math.sqrt(n)
    return round(OVERHEAD_MS + MS_PER_TOKEN * tokens * work, 3)


LATENCY_MS: dict[str, list[float]] = {
    c: [model_latency_ms(config_tokens(c), n) for n in range(MAX_BATCH + 1)] for c in ACCURACIES
}


def joint_cost() -> JointCost:
    """The paper's joint-fusion cost model on the stand-in latency table."""
    return JointCost(LATENCY_MS, modalities=MODALITIES)
