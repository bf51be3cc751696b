"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def built_extension():
    """Build (or load) the C++ ops once, up front: a first JIT build takes tens of seconds
    (a fresh checkout rebuilds, since the build records source paths) and must not land
    inside a test that times a request."""
    from mosel.ops import extension as ext

    return ext.load_ops()


@pytest.fixture(scope="session")
def tiny_model_home(tmp_path_factory) -> Path:
    """A state directory (`home=`) holding the "tiny" AV-Digits model, trained once per
    session (seed 0, ~15-30 s on 2 CPU cores) and evaluated (accuracy.json written).
    Pass it as `home=` to the checkpoint/evaluation/profiler functions; no env vars are set."""
    from mosel.lifecycle.evaluate import evaluate
    from mosel.lifecycle.train import train

    home = tmp_path_factory.mktemp("mosel_home")
    train("av-digits", seed=0, size="tiny", home=home, progress=False)
    evaluate("av-digits", home=home)
    return home
