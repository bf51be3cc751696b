"""`mosel` command line. Each subcommand lives in its own module under mosel.cli
and registers itself with `register(subparsers)`; this file only wires them together."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules that provide subcommands, in the order `mosel --help` lists them.
COMMAND_MODULES = [
    "mosel.cli.up",
    "mosel.cli.demo",
    "mosel.cli.train",
    "mosel.cli.eval",
    "mosel.cli.model",
    "mosel.cli.profile",
    "mosel.cli.solve",
    "mosel.cli.tune",
    "mosel.cli.bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mosel", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", help="stderr log level (default INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # not written yet: skip, do not hide real import errors
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
