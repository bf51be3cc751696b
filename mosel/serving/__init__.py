"""Plumbing shared by every service: server lifecycle, flags, wire tensors."""
