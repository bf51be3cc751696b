"""`mosel bench <name>`: benchmarks. Each lives in mosel.bench.<name> and registers
itself with `register(subparsers)`."""

from __future__ import annotations

import importlib

BENCH_MODULES = [
    "mosel.bench.kernels",
    "mosel.bench.solver",
    "mosel.bench.scheduler",
    "mosel.bench.fronts",
    "mosel.bench.artifacts",
    "mosel.bench.paper",
]


def register(sub) -> None:
    parser = sub.add_parser("bench", help="run a benchmark and print a table")
    bench_sub = parser.add_subparsers(dest="bench", metavar="BENCH")
    for name in BENCH_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(bench_sub)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
