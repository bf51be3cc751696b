"""The committed stubs under mosel/protocol/v1 must be exactly what the protos generate."""

from pathlib import Path

from mosel.protocol import generate as protogen

ROOT = Path(__file__).resolve().parents[2]


def test_committed_stubs_match_protos(tmp_path):
    generated = protogen.generate(tmp_path)
    assert generated, "protoc produced nothing"
    for path in generated:
        committed = ROOT / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} missing: run `python -m mosel.protocol.generate`"
        assert committed.read_text() == path.read_text(), (
            f"{committed.name} drifted from protos/: run `python -m mosel.protocol.generate` and commit"
        )
    committed_names = {p.relative_to(ROOT) for d in protogen.STUB_DIRS for p in (ROOT / d).glob("*_pb2*.py*")}
    assert committed_names == {p.relative_to(tmp_path) for p in generated}, "stale stub files without a proto"


def test_every_message_field_is_documented():
    """The wire contract is documented field by field: every field has a comment
    on the line(s) above it, or follows directly a documented field (a group)."""
    undocumented = []
    for proto in protogen.proto_files():
        lines = proto.read_text().splitlines()
        for i, line in enumerate(lines):
            s = line.strip()
            is_field = s.endswith(";") and "=" in s and not s.startswith(("option", "syntax", "package", "import", "//"))
            if not is_field or s.split()[0].startswith("RECORD_KIND"):
                continue
            j = i - 1
            while j >= 0 and lines[j].strip().endswith(";") and "=" in lines[j]:
                j -= 1  # a run of fields documented together
            prev = lines[j].strip() if j >= 0 else ""
            if not prev.startswith("//"):
                undocumented.append(f"{proto.name}:{i + 1}: {s}")
    assert not undocumented, "undocumented fields:\n" + "\n".join(undocumented)
