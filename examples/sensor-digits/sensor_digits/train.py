"""Train Sensor-Digits with mosel's trainer and evaluate every configuration.

    python -m sensor_digits.train [--size tiny|default|large] [--seed 0] [--epochs N] [--home DIR]
    sensor-digits-train ...        # the same, as the installed console script

The result lands where `mosel train --model sensor-digits` puts it ($MOSEL_HOME/models/sensor-digits/),
ready for `mosel model export --model sensor-digits`.
"""

from __future__ import annotations

import argparse
import sys

PACK = "sensor_digits.pack:SensorDigitsPack"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sensor-digits-train", description=__doc__.splitlines()[0])
    p.add_argument("--size", default="default", choices=("tiny", "default", "large"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="default: per size")
    p.add_argument("--home", default=None, help="state directory (default $MOSEL_HOME or ~/.cache/mosel)")
    p.add_argument("--data-dir", default=None, help="data directory (default $MOSEL_DATA_DIR or ../shared/data)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-eval", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    from mosel.lifecycle.evaluate import evaluate, format_table
    from mosel.lifecycle.train import format_history, train
    from mosel.models.registry import register_pack_path

    name = register_pack_path(PACK)  # a no-op when the package is installed (its entry point names it)
    summary = train(name, seed=args.seed, epochs=args.epochs, size=args.size, home=args.home, data_dir=args.data_dir,
                    device=args.device, progress=not args.no_progress)
    print(format_history(summary))
    print(f"\n{name} ({args.size}), seed {args.seed}: {summary['train_time_s']:.1f} s, saved to {summary['model_dir']}")
    if not args.no_eval:
        print("\nheld-out test split (modalities paired by class):")
        print(format_table(evaluate(name, home=args.home, data_dir=args.data_dir, device=args.device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
