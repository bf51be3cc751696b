"""Reporting a study: the Pareto front as a table, the held-out comparison as a table, and a PNG
(goodput vs accuracy: every trial, infeasible ones crossed out, the Pareto points highlighted,
the picked point and the code defaults marked). matplotlib runs on the Agg backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from mosel.tables import format_table
from tuning import space
from tuning.config import OBJECTIVES
from tuning.pareto import feasible

LABELS = {"goodput": "goodput req/s", "accuracy": "accuracy", "p99": "p99 JCT ms"}


def pareto_table(front: Sequence, objectives: Sequence[str], chosen=None, title: str | None = None) -> str:
    headers = ["trial", "pick", *space.THRESHOLD_KEYS, *(LABELS[o] for o in objectives), "floor viol."]
    rows = []
    for t in sorted(front, key=lambda t: t.values[0], reverse=OBJECTIVES[objectives[0]][1] == "maximize"):
        th = space.from_record({k: float(v) for k, v in t.params.items()})
        rows.append([t.number, "*" if chosen is not None and t.number == chosen.number else "",
                     *(th[k] for k in space.THRESHOLD_KEYS), *(float(v) for v in t.values),
                     int(t.user_attrs.get("floor_violations", 0))])
    return format_table(headers, rows, title=title)


def validation_table(validation: Mapping[str, Any], title: str | None = None) -> str:
    rows = []
    names = [("goodput_rps", "goodput req/s"), ("mean_accuracy", "accuracy"), ("p99_jct_ms", "p99 JCT ms"),
             ("mean_jct_ms", "mean JCT ms"), ("throughput_rps", "throughput req/s"), ("miss_rate", "miss rate"),
             ("floor_violations", "floor violations")]
    for key, label in names:
        a, b = validation["tuned"].get(key), validation["default"].get(key)
        rows.append([label, _cell(a), _cell(b)])
    tuned, default = space.from_record(validation["tuned_thresholds"]), space.from_record(validation["default_thresholds"])
    for key in space.THRESHOLD_KEYS:
        rows.append([key, str(_short(tuned[key])), str(_short(default[key]))])
    return format_table(["held-out", "tuned", "default"], rows, title=title)


def _short(v):
    return round(v, 4) if isinstance(v, float) else v


def _cell(v):
    return float("nan") if v is None else v


def plot(path: str | Path, trials: Sequence, front: Sequence, objectives: Sequence[str],
         default_values: Sequence[float] | None = None, chosen=None, title: str = "") -> Path:
    """Goodput (x) vs accuracy (y) of every completed trial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gx, ay = objectives.index("goodput"), objectives.index("accuracy")
    done = [t for t in trials if t.values is not None]
    ok = [t for t in done if feasible(t)]
    bad = [t for t in done if not feasible(t)]
    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=120)
    if ok:
        ax.scatter([t.values[gx] for t in ok], [t.values[ay] for t in ok], s=18, c="#9aa5b1", label="trials")
    if bad:
        ax.scatter([t.values[gx] for t in bad], [t.values[ay] for t in bad], s=22, c="#d62728", marker="x",
                   label="floor violated (infeasible)")
    if front:
        pts = sorted((t.values[gx], t.values[ay]) for t in front)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", c="#1f77b4", ms=6, lw=1.2, label="Pareto front")
    if default_values is not None:
        ax.scatter([default_values[gx]], [default_values[ay]], s=140, marker="*", c="#ff7f0e", edgecolors="k",
                   zorder=5, label="default thresholds")
    if chosen is not None:
        ax.scatter([chosen.values[gx]], [chosen.values[ay]], s=160, facecolors="none", edgecolors="#2ca02c",
                   linewidths=2.2, zorder=6, label=f"picked (trial {chosen.number})")
    ax.set_xlabel("goodput (requests in deadline with floor met, per s)")
    ax.set_ylabel("served accuracy")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
