"""Argument checks and launch arithmetic shared by the kernel wrappers.

Every wrapper validates shapes, dtypes, strides and devices before launching, and raises
``KernelInputError`` (a ``ValueError``) naming the argument, so a bad call fails in Python with a
clear message instead of reading out of bounds on the device.
"""
from __future__ import annotations

import functools
import math

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
INDEX_DTYPE = torch.int32


class KernelInputError(ValueError):
    """A kernel was called with tensors of the wrong shape, dtype, layout or device."""


def check_tensor(name: str, t: torch.Tensor, *, ndim: int, dtypes: tuple[torch.dtype, ...],
                 device: torch.device, last_contiguous: bool = True) -> None:
    """Rank, dtype and device of ``t``; with ``last_contiguous`` its last stride must be 1."""
    if not isinstance(t, torch.Tensor):
        raise KernelInputError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != ndim:
        raise KernelInputError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    if t.dtype not in dtypes:
        names = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise KernelInputError(f"{name} has dtype {t.dtype}, expected one of {names}")
    if t.device != device:
        raise KernelInputError(f"{name} is on {t.device}, expected {device}")
    if last_contiguous and t.numel() and t.stride(-1) != 1:
        raise KernelInputError(f"{name} must have unit stride in its last dimension, "
                               f"got strides {t.stride()}")


def check_size(name: str, t: torch.Tensor, dim: int, expected: int) -> None:
    if t.shape[dim] != expected:
        raise KernelInputError(f"{name} has size {t.shape[dim]} in dimension {dim}, "
                               f"expected {expected} (shape {tuple(t.shape)})")


def check_index(name: str, t: torch.Tensor, length: int, device: torch.device) -> None:
    """A 1-D int32 index tensor of ``length`` entries on ``device``."""
    check_tensor(name, t, ndim=1, dtypes=(INDEX_DTYPE,), device=device)
    check_size(name, t, 0, length)


def next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def pow2_align(*values: int, cap: int = 16) -> int:
    """Largest power of two <= ``cap`` dividing every value: a safe vector-width hint."""
    g = 0
    for v in values:
        g = math.gcd(g, v)
    align = cap
    while align > 1 and g % align:
        align //= 2
    return align


@functools.lru_cache(maxsize=None)
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def parallel_slots(device: torch.device) -> int:
    """How many programs keep the device busy: a few per SM on GPU, 1 in the interpreter."""
    if device.type == "cpu":
        return 1
    return 4 * _sm_count(device.index if device.index is not None else
                         torch.cuda.current_device())


def split_count(work_items: int, max_splits: int, device: torch.device) -> int:
    """Splits of a reduction so that ``work_items * splits`` fills the device."""
    want = -(-parallel_slots(device) // max(work_items, 1))
    return max(1, min(want, max_splits))
