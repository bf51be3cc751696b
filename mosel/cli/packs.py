"""`--pack MODULE:CLASS`, the plug-in pack flag shared by the commands that take a model.

    add_pack_flag(parser)          # in register(): adds --pack (repeatable) as args.packs
    apply_pack_flags(args)         # first thing in run(): registers them (mosel.models.registry)

Installed packs (the `mosel.models` entry points) and MOSEL_PACKS need no flag.
"""

from __future__ import annotations

import argparse
import sys


def add_pack_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pack", dest="packs", action="append", default=[], metavar="MODULE:CLASS",
        help="a model pack of your own on the Python path, e.g. my_pack.model:MyPack (repeatable); "
        "installed packs are found through their mosel.models entry points",
    )


def apply_pack_flags(args: argparse.Namespace) -> list[str]:
    """Register the `--pack` specs; returns their pack names. A bad spec exits with status 2
    and a one-line message (module that does not import, missing attribute, not a pack)."""
    from mosel.models.registry import use_packs

    try:
        return use_packs(getattr(args, "packs", None) or [])
    except ValueError as exc:
        command = getattr(args, "command", None)
        print(f"{'mosel ' + command if command else 'mosel'}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def known_packs() -> str:
    """Comma-separated pack names (built in, installed, MOSEL_PACKS) for --model help texts."""
    from mosel.models.registry import pack_names

    try:
        return ", ".join(pack_names())
    except ValueError as exc:  # a bad MOSEL_PACKS must not break --help
        return f"unavailable: {exc}"


def model_help(what: str = "model pack") -> str:
    return f"{what} (known: {known_packs()}; packs of your own: --pack)"
