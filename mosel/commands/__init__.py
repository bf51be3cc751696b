"""Subcommands of the `mosel` CLI, one module each (see mosel.cli)."""
