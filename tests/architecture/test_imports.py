"""The package tree is the architecture: no import cycles, and the lower layers stay
free of the layers above them."""

from __future__ import annotations

import ast

from tests.architecture.imports import imports_of, cycles, import_graph, layer_graph, project_modules

# What each layer must never import (directly; a forbidden layer reached through another
# shows up as that layer's own violation). The scheduler runs on a virtual clock in the
# simulator and in the live dispatcher alike, so it knows nothing of the engine or the wire.
FORBIDDEN = {
    "mosel.scheduling": {"mosel.engine", "mosel.protocol", "mosel.server", "mosel.store", "mosel.encoder",
                         "mosel.sim", "mosel.launch", "mosel.cli", "mosel.bench"},
    "mosel.planning": {"mosel.engine", "mosel.protocol", "mosel.server", "mosel.store", "mosel.scheduling",
                       "mosel.sim", "mosel.launch", "mosel.cli", "mosel.bench"},
    "mosel.sim": {"mosel.engine", "mosel.server", "mosel.store", "mosel.encoder", "mosel.launch", "mosel.cli"},
    "mosel.errors": {"mosel.models", "mosel.engine", "mosel.protocol"},
    "mosel.models": {"mosel.engine", "mosel.server", "mosel.store", "mosel.scheduling", "mosel.lifecycle",
                     "mosel.cli", "mosel.bench", "mosel.repository"},
    # the repository format and loading: models only, so every service and command can use it
    "mosel.repository": {"mosel.engine", "mosel.server", "mosel.store", "mosel.scheduling", "mosel.lifecycle",
                         "mosel.encoder", "mosel.cli", "mosel.bench", "mosel.launch", "mosel.protocol"},
}
GRPC_FREE = ("mosel.scheduling", "mosel.planning")


def test_no_moduleimports_of_itself_through_others():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_no_cycle_between_packages():
    found = cycles(layer_graph(import_graph()))
    assert not found, "package cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_layers_import_only_downwards():
    layers = layer_graph(import_graph())
    bad = [f"{layer} imports {sorted(layers.get(layer, set()) & banned)}"
           for layer, banned in FORBIDDEN.items() if layers.get(layer, set()) & banned]
    assert not bad, "\n".join(bad)


def test_scheduler_and_planner_import_no_grpc():
    offenders = []
    for name, path in project_modules().items():
        if name.startswith(GRPC_FREE):
            raw = imports_of(ast.parse(path.read_text()), name, path.name == "__init__.py")
            offenders += [f"{name} imports {m}" for m in sorted(raw) if m.split(".")[0] in ("grpc", "google")]
    assert not offenders, "\n".join(offenders)


def test_the_graph_sees_realimports_of():
    """Guard against a parser that finds nothing (the tests above would pass vacuously)."""
    graph = import_graph()
    assert "mosel.scheduling.policy" in graph["mosel.scheduling.mosel_policy"] | graph["mosel.scheduling.profiled"]
    assert "mosel.engine.dispatcher" in graph["services.selection.__main__"] or \
        any(m.startswith("mosel.engine") for m in graph["services.selection.__main__"])
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
