"""`mosel solve`: build the strategy matrix from the latest latency and accuracy profiles in
the store and store it (variant = precision), recording which profile versions it came from."""

from __future__ import annotations

from mosel.cli.profile import add_store_flag
from mosel.config import mosel_home
from mosel.planning.costs import PLACEMENTS
from mosel.lifecycle.solve import MissingProfile, solve_from_store
from mosel.lifecycle.profile import PRECISIONS, TABLE_BATCHES
from mosel.planning.solver import StrategyMatrix
from mosel.launch.store_session import store_session
from mosel.tables import format_table


def register(sub) -> None:
    p = sub.add_parser("solve", help="solve the strategy matrix from the stored latency and accuracy profiles")
    add_store_flag(p)
    p.add_argument("--model", default="av-digits", help="model (default av-digits)")
    p.add_argument("--device", default="cpu", help="device kind of the latency profile to use (default cpu)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="precision of the profiles (default fp32)")
    p.add_argument("--step", type=float, default=0.002, help="accuracy-target grid step (default 0.002)")
    p.add_argument("--placement", default=None, choices=PLACEMENTS,
                   help="how the encoders are deployed (default: as recorded in the latency profile)")
    p.add_argument("--max-batch", type=int, default=None, help="largest job size (default: the profile's max_batch)")
    p.set_defaults(func=run)


def summary_table(matrix: StrategyMatrix, title: str | None = None) -> str:
    """Per job size: strategies on the Pareto row, cheapest and full-modality latency, accuracy range."""
    cost = matrix.cost_model()
    full = max(matrix.configurations, key=lambda c: (len(c.split("+")), matrix.accuracies[c]))
    sizes = [b for b in TABLE_BATCHES if b <= matrix.max_batch]
    if matrix.max_batch not in sizes:
        sizes.append(matrix.max_batch)
    rows = []
    for b in sizes:
        row = matrix.row(b)
        full_ms = cost.latency({full: b})
        cheapest = row[0]
        rows.append([b, len(row), cheapest.latency, row[-1].latency, full_ms,
                     full_ms / cheapest.latency if cheapest.latency > 0 else float("nan"),
                     cheapest.accuracy, row[-1].accuracy])
    headers = ["job size", "strategies", "cheapest ms", "most accurate ms", f"all ({full}) ms", "speedup",
               "min accuracy", "max accuracy"]
    return format_table(headers, rows, title=title)


def run(args) -> int:
    home = mosel_home()
    with store_session(args.store, home, say=print) as session:
        try:
            result = solve_from_store(session.client, args.model, device=args.device, precision=args.precision,
                                      placement=args.placement, step=args.step, max_batch=args.max_batch)
        except (MissingProfile, ValueError) as exc:
            print(f"mosel solve: {exc}")
            return 1
        for note in result.notes:
            print(f"note: {note}")
        matrix, ref, msg = result.matrix, result.ref, result.proto
        title = (f"{args.model} strategy matrix v{ref.version} [{ref.variant}]: {len(matrix.targets)} targets "
                 f"{matrix.targets[0]:.4f}..{matrix.targets[-1]:.4f}, {msg.cost_model}/{msg.placement}, "
                 f"latency profile v{msg.latency_profile_version} [{result.latency.ref.variant}], "
                 f"accuracy profile v{msg.accuracy_profile_version}")
        print(summary_table(matrix, title=title))
        total = sum(len(matrix.row(b)) for b in range(1, matrix.max_batch + 1))
        print(f"solved {matrix.max_batch} job sizes ({total} strategies) in {result.solve_ms:.0f} ms; "
              f"stored strategy matrix v{ref.version} in the {session.describe()}")
    return 0
