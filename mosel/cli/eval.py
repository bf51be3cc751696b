"""`mosel eval --model NAME`: accuracy of every modality configuration on the test split."""

from __future__ import annotations

import argparse
import sys

from mosel.cli.packs import add_pack_flag, apply_pack_flags, model_help


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a trained model in every modality configuration",
        description="Accuracy of each modality configuration on the held-out test split with a Wilson 95% "
        "interval; writes accuracy.json beside the checkpoint (the accuracy profile).",
    )
    p.add_argument("--model", default="av-digits", help=model_help("trained model pack"))
    add_pack_flag(p)
    p.add_argument("--data-dir", default=None, help="data directory (default: $MOSEL_DATA_DIR or ../shared/data)")
    p.add_argument("--home", default=None, help="state directory (default: $MOSEL_HOME or ~/.cache/mosel)")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from mosel.lifecycle.evaluate import evaluate, format_table
    from mosel.models.checkpoint import CheckpointError

    apply_pack_flags(args)
    try:
        rows = evaluate(args.model, home=args.home, data_dir=args.data_dir, device=args.device)
    except (CheckpointError, KeyError, FileNotFoundError, NotImplementedError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"mosel eval: {message}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{args.model}: {split_caption(args.model, args.home)}")
        print(format_table(rows))
    return 0


def split_caption(model: str, home=None) -> str:
    """"held-out test split", plus the protocol the pack's data description names, if any."""
    from mosel.models.checkpoint import CheckpointError, load_manifest

    try:
        protocol = (load_manifest(model, home).get("data_split") or {}).get("protocol")
    except (CheckpointError, AttributeError):
        protocol = None
    return f"held-out test split -- {protocol}" if protocol else "held-out test split"
