"""Deployable gRPC services, one package each: `python -m services.<name> --help`.

Each is thin (its settings object, wiring, servicer); the logic lives in the `mosel` library.
"""
