"""`mosel train --model NAME`: train a model pack, save it, evaluate it on the test split."""

from __future__ import annotations

import argparse
import sys

from mosel.cli.packs import add_pack_flag, apply_pack_flags, model_help

SIZES = ("tiny", "default", "large")  # the built-in pack's presets; other packs may name others


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model pack (encoders + fusion head) and save it",
        description="Train a model pack with modality dropout, save checkpoint.pt and manifest.json under "
        "$MOSEL_HOME/models/NAME/, then evaluate every configuration on the held-out test split "
        "(writes accuracy.json).",
    )
    p.add_argument("--model", default="av-digits", help=model_help())
    add_pack_flag(p)
    p.add_argument("--seed", type=int, default=0, help="random seed (training is deterministic for a seed)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: per size preset)")
    p.add_argument("--size", default="default", metavar="PRESET",
                   help=f"size preset of the pack (default: default; the built-in pack has {', '.join(SIZES)}: "
                   "tiny for tests, large for GPUs)")
    p.add_argument("--width", type=int, default=None, help="override the preset's width knob")
    p.add_argument("--depth", type=int, default=None, help="override the preset's depth knob")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    p.add_argument("--modality-dropout", choices=("all", "random"), default=None,
                   help="all: train the fusion head on every configuration each batch (default); "
                   "random: full set + one random subset per sample")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument("--data-dir", default=None, help="data directory (default: $MOSEL_DATA_DIR or ../shared/data)")
    p.add_argument("--home", default=None, help="state directory (default: $MOSEL_HOME or ~/.cache/mosel)")
    p.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mosel.lifecycle.evaluate import evaluate, format_table
    from mosel.cli.eval import split_caption
    from mosel.lifecycle.train import format_history, train

    apply_pack_flags(args)
    size = {"preset": args.size, "width": args.width, "depth": args.depth}
    try:
        summary = train(
            args.model, seed=args.seed, epochs=args.epochs, size=size, home=args.home, data_dir=args.data_dir,
            progress=not args.no_progress, batch_size=args.batch_size, lr=args.lr, device=args.device,
            modality_dropout=args.modality_dropout,
        )
    except (KeyError, ValueError, FileNotFoundError, TypeError, NotImplementedError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"mosel train: {message}", file=sys.stderr)
        return 2
    print(format_history(summary))
    print(
        f"\nmodel {summary['model']}  size {summary['size']}  seed {summary['seed']}  "
        f"train time {summary['train_time_s']:.1f} s\nsaved to {summary['model_dir']}"
    )
    if not args.no_eval:
        rows = evaluate(args.model, home=args.home, data_dir=args.data_dir, device=args.device)
        print(f"\n{split_caption(args.model, args.home)}:")
        print(format_table(rows))
    return 0
