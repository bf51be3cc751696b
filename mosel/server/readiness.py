"""Tell a supervisor (mosel up, tests) that a service is ready and where."""

from __future__ import annotations

import os
from pathlib import Path


def write_ready_file(path: str | None, port: int) -> None:
    """Atomically write the bound port, so readers never see a partial file."""
    if not path:
        return
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(f"{port}\n")
    os.replace(tmp, target)
