"""Deployable gRPC services, one package each: `python -m services.<name> --help`.

Each is thin (flags, wiring, servicer); the logic lives in the `mosel` library.
"""
