"""Policies by name, for flags and settings (`--policy agnostic|aggressive|mosel`)."""

from __future__ import annotations

from mosel.scheduling.aggressive import AggressivePolicy
from mosel.scheduling.agnostic import AgnosticPolicy
from mosel.scheduling.mosel_policy import MoselPolicy
from mosel.scheduling.policy import Policy

POLICIES: dict[str, type[Policy]] = {
    AgnosticPolicy.name: AgnosticPolicy,
    AggressivePolicy.name: AggressivePolicy,
    MoselPolicy.name: MoselPolicy,
}


def make_policy(name: str, **kwargs) -> Policy:
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose from {sorted(POLICIES)}") from None
    return cls(**kwargs)
