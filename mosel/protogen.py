"""Generate the Python gRPC stubs from protos/ (grpcio-tools).

The stubs are committed under mosel/v1/ so a plain install needs no build step;
`python -m mosel.protogen` regenerates them and tests/test_protos.py fails when the
committed files drift from the protos. Never hand-edit mosel/v1/*_pb2*.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent.parent / "protos"


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / "mosel" / "v1").glob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Write *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for every proto into out_dir/mosel/v1/."""
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
    return sorted((out_dir / "mosel" / "v1").glob("*_pb2*.py*"))


def main() -> int:
    target = Path(__file__).resolve().parent.parent
    for path in generate(target):
        print(path.relative_to(target))
    init = target / "mosel" / "v1" / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated gRPC stubs of package mosel.v1 (see mosel.protogen)."""\n')
    return 0


if __name__ == "__main__":
    sys.exit(main())
