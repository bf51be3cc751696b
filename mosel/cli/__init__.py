"""The `mosel` command line: `main` wires the subcommands, one module each."""
