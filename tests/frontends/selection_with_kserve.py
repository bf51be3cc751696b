"""The real selection service (services.selection) with the KServe fronts registered in-process.

Run as `python -m tests.frontends.selection_with_kserve [selection flags] --http-ready-file F`.
It runs services.selection's own main() and only wraps its start_server, so the KServe gRPC
servicer (wrapping that process's SelectionServicer, no extra hop) lands on the same gRPC
server and the HTTP front starts beside it: what the registration lines proposed for
services/selection/__main__.py do, without editing that file.
"""

from __future__ import annotations

import sys

import services.selection.__main__ as selection
from mosel.frontends.kserve_grpc import SERVICE_NAME, KServeServicer, add_to_server
from mosel.frontends.kserve_http import start_http
from mosel.server.readiness import write_ready_file
from mosel.server.serve import Registration


def main(argv: list[str]) -> int:
    http_ready = None
    if "--http-ready-file" in argv:
        i = argv.index("--http-ready-file")
        http_ready = argv[i + 1]
        del argv[i:i + 2]
    fronts = {}
    original = selection.start_server

    def start_server_with_kserve(registrations, **kwargs):
        kserve = KServeServicer(registrations[0].servicer)
        running = original([*registrations, Registration(kserve, add_to_server, SERVICE_NAME)], **kwargs)
        http = start_http(kserve.core, host=kwargs.get("host", "127.0.0.1"), port=0)
        running.on_drain.append(lambda: kserve.set_ready(False))
        fronts["http"] = http
        write_ready_file(http_ready, http.port)
        return running

    selection.start_server = start_server_with_kserve
    code = selection.main(argv)
    if "http" in fronts:
        fronts["http"].stop()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
