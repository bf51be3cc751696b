"""The PNG curves of `mosel bench paper`: simulated goodput and misses per delta, simulated
JCT and accuracy, and the live runs. matplotlib runs on the Agg backend."""

from __future__ import annotations

from pathlib import Path

from mosel.bench.paper.measures import MISS_TARGET, POLICIES

def write_plots(report: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    sim = report["simulation"]
    deltas = list(sim["poisson"])
    colors = {"agnostic": "tab:gray", "aggressive": "tab:orange", "mosel": "tab:blue"}
    fig, axes = plt.subplots(2, len(deltas), figsize=(4.2 * len(deltas), 7.5), squeeze=False)
    for i, key in enumerate(deltas):
        for name in POLICIES:
            pts = sim["poisson"][key][name]
            x = [p["offered_rps"] for p in pts]
            axes[0][i].plot(x, [p["goodput_rps"] for p in pts], "o-", color=colors[name], label=name, ms=3)
            axes[1][i].plot(x, [p["miss_rate"] for p in pts], "o-", color=colors[name], label=name, ms=3)
        axes[0][i].set_title(f"delta = {key}")
        axes[0][i].set_ylabel("goodput (req/s, on time, floor met)")
        axes[1][i].set_ylabel("deadline miss rate")
        axes[1][i].axhline(MISS_TARGET, color="red", lw=0.8, ls="--")
        for ax in (axes[0][i], axes[1][i]):
            ax.set_xscale("log")
            ax.set_xlabel("offered load (req/s)")
            ax.grid(alpha=0.3)
        axes[0][i].legend(fontsize=8)
    fig.suptitle("Simulation, TVLT latency by architecture + published accuracy: throughput and misses")
    fig.tight_layout()
    fig.savefig(out / "sim_throughput.png", dpi=110)
    plt.close(fig)
    files.append("sim_throughput.png")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    key = deltas[0]
    for name in POLICIES:
        pts = sim["poisson"][key][name]
        x = [p["offered_rps"] for p in pts]
        axes[0].plot(x, [p["mean_jct_ms"] or float("nan") for p in pts], "o-", color=colors[name], label=f"{name} mean", ms=3)
        axes[0].plot(x, [p["p99_jct_ms"] or float("nan") for p in pts], "x--", color=colors[name], label=f"{name} p99", ms=3)
        axes[1].plot(x, [p["accuracy"] or float("nan") for p in pts], "o-", color=colors[name], label=name, ms=3)
    axes[0].set_title(f"JCT of finished jobs (delta = {key})")
    axes[0].set_ylabel("ms")
    axes[1].set_title(f"served accuracy (delta = {key})")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("offered load (req/s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_yscale("log")
    fig.tight_layout()
    fig.savefig(out / "sim_jct_accuracy.png", dpi=110)
    plt.close(fig)
    files.append("sim_jct_accuracy.png")

    live = report.get("live")
    if live and live.get("runs"):
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        for name in POLICIES:
            pts = live["runs"][name]
            x = [p["offered_rps"] for p in pts]
            axes[0].plot(x, [p["goodput_rps"] for p in pts], "o-", color=colors[name], label=name)
            axes[1].plot(x, [p["miss_rate"] for p in pts], "o-", color=colors[name], label=name)
            axes[2].plot(x, [p["mean_jct_ms"] if p["mean_jct_ms"] == p["mean_jct_ms"] else float("nan") for p in pts],
                         "o-", color=colors[name], label=f"{name} mean")
            axes[2].plot(x, [p["p99_jct_ms"] for p in pts], "x--", color=colors[name], label=f"{name} p99")
        axes[0].set_ylabel("goodput (req/s)")
        axes[1].set_ylabel("miss rate")
        axes[2].set_ylabel("JCT (ms, client side)")
        for ax in axes:
            ax.set_xlabel("offered load (req/s)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle("Live AV-Digits over gRPC (open loop)")
        fig.tight_layout()
        fig.savefig(out / "live.png", dpi=110)
        plt.close(fig)
        files.append("live.png")
    return files
