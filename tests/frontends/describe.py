"""Print, as JSON, the services, messages and enums of some protobuf modules (run as a script).

    python -m tests.frontends.describe ours      # mosel.protocol.kserve
    python -m tests.frontends.describe triton    # tritonclient.grpc's generated modules

Each side runs in its own process: both define the `inference` package, and one protobuf
pool cannot hold the two copies.
"""

from __future__ import annotations

import json
import sys


def _type_name(f) -> str:
    if f.message_type is not None:
        return f.message_type.full_name
    if f.enum_type is not None:
        return f.enum_type.full_name
    return str(f.type)


def describe(files) -> dict:
    messages, enums, services = {}, {}, {}

    def walk(m):
        messages[m.full_name] = {
            f.name: {"number": f.number, "type": _type_name(f), "repeated": f.is_repeated,
                     "oneof": f.containing_oneof.name if f.containing_oneof is not None else None}
            for f in m.fields
        }
        for e in m.enum_types:
            enums[e.full_name] = {v.name: v.number for v in e.values}
        for n in m.nested_types:
            walk(n)

    for fd in files:
        for m in fd.message_types_by_name.values():
            walk(m)
        for e in fd.enum_types_by_name.values():
            enums[e.full_name] = {v.name: v.number for v in e.values}
        for s in fd.services_by_name.values():
            services[s.full_name] = {
                me.name: {"input": me.input_type.full_name, "output": me.output_type.full_name,
                          "client_streaming": me.client_streaming, "server_streaming": me.server_streaming}
                for me in s.methods
            }
    return {"messages": messages, "enums": enums, "services": services}


def main(which: str) -> None:
    if which == "ours":
        from mosel.protocol.kserve import grpc_service_pb2, model_config_pb2
    else:
        from tritonclient.grpc import model_config_pb2
        from tritonclient.grpc import service_pb2 as grpc_service_pb2
    print(json.dumps(describe([grpc_service_pb2.DESCRIPTOR, model_config_pb2.DESCRIPTOR])))


if __name__ == "__main__":
    main(sys.argv[1])
