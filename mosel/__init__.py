"""MOSEL serving: inference serving with per-request dynamic modality selection."""

__version__ = "0.1.0"
