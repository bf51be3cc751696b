"""Choosing between the C++ ops (torch.ops.mosel.*) and the pure-torch reference for
one call: the ops when the extension loads and has kernels for the tensors' device."""

from __future__ import annotations

import logging

import torch

from mosel.ops import extension as ext

logger = logging.getLogger(__name__)

_warned_no_cuda_kernels = False


def use_ops(device: torch.device, use_ext: bool | None) -> bool:
    """Whether torch.ops.mosel should run for tensors on `device`."""
    global _warned_no_cuda_kernels
    if use_ext is False:
        return False
    if not ext.load_ops():
        if use_ext:
            raise RuntimeError(f"mosel C++ ops requested but unavailable: {ext.build_error()}")
        return False
    if device.type == "cpu":
        return True
    has = torch._C._dispatch_has_kernel_for_dispatch_key("mosel::drop_and_pack", device.type.upper())
    if not has:
        if use_ext:
            raise RuntimeError(f"mosel C++ ops were built without {device.type} kernels")
        if not _warned_no_cuda_kernels:
            _warned_no_cuda_kernels = True
            logger.warning("mosel C++ ops have no %s kernels in this build; using the reference path", device.type)
    return has
