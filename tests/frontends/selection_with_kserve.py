"""The real selection service (services.selection), which serves the KServe gRPC front on its
own port, started with `--http-port` on a free port that is reported through a ready file.

Run as `python -m tests.frontends.selection_with_kserve [selection flags] --http-ready-file F`.
"""

from __future__ import annotations

import sys

import services.selection.__main__ as selection
from mosel.launch.stack import free_port
from mosel.server.readiness import write_ready_file


def main(argv: list[str]) -> int:
    http_ready = None
    if "--http-ready-file" in argv:
        i = argv.index("--http-ready-file")
        http_ready = argv[i + 1]
        del argv[i:i + 2]
    port = free_port()
    # The front's tests wait for the gRPC ready file first; the HTTP server is up before it.
    write_ready_file(http_ready, port)
    return selection.main([*argv, "--http-port", str(port)])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
