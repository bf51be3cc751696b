"""Flags every service shares, so `python -m services.<name> --help` reads alike."""

from __future__ import annotations

import argparse
import logging
import sys

from mosel.server.channels import DEFAULT_MAX_MESSAGE_BYTES


def common_parser(description: str, default_port: int, store_client: bool = True) -> argparse.ArgumentParser:
    """Shared flags; `store_client=False` for the profile store itself (it has no upstream)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=default_port, help=f"port to bind, 0 = any free (default {default_port})")
    if store_client:
        parser.add_argument("--profile-store", default="127.0.0.1:50051", metavar="HOST:PORT",
                            help="profile store address (default 127.0.0.1:50051)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default cpu)")
    parser.add_argument("--log-level", default="INFO", help="stderr log level (default INFO)")
    parser.add_argument("--max-message-mb", type=int, default=DEFAULT_MAX_MESSAGE_BYTES // (1024 * 1024),
                        help="gRPC message size limit, both directions (default 64)")
    parser.add_argument("--grace-s", type=float, default=30.0,
                        help="on SIGTERM, seconds to let in-flight calls finish (default 30)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: services share cores; OpenMP spinning "
                             "threads of several processes on the same cores slow each other down badly)")
    parser.add_argument("--ready-file", default=None,
                        help="write the bound port to this file once SERVING (for supervisors)")
    return parser


def apply_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


def setup_logging(level: str, service: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s",
    )
