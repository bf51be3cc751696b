"""Generate the Python gRPC stubs from protos/ (grpcio-tools).

The stubs are committed under mosel/protocol/v1/ so a plain install needs no build step;
`python -m mosel.protocol.generate` regenerates them and tests/protocol/test_generate.py
fails when the committed files drift from the protos. Never hand-edit the *_pb2*.py files.

The proto files live at protos/mosel/protocol/<api>/ so that the generated modules land
at mosel.protocol.<api> (protoc derives Python import paths from proto file paths); the
proto *package* names (`mosel.v1`) are what travels on the wire and are independent of it.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO_ROOT / "protos"
STUB_DIRS = ("mosel/protocol/v1", "mosel/protocol/kserve")  # relative to PROTO_ROOT and to the repository root alike


def proto_files() -> list[Path]:
    return sorted(p for d in STUB_DIRS for p in (PROTO_ROOT / d).glob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Write *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for every proto into out_dir/<stub dir>/."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(PROTO_ROOT)) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))
    return sorted(p for d in STUB_DIRS for p in (out_dir / d).glob("*_pb2*.py*"))


def main() -> int:
    for path in generate(REPO_ROOT):
        print(path.relative_to(REPO_ROOT))
    for d in STUB_DIRS:
        init = REPO_ROOT / d / "__init__.py"
        if not init.exists():
            init.write_text(f'"""Generated gRPC stubs of protos/{d} (see mosel.protocol.generate); never edit."""\n')
    return 0


if __name__ == "__main__":
    sys.exit(main())
