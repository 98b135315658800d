"""Arguments common to the LoRA kernels: checking a ``LoraTargetMeta`` and grouping tokens.

The LoRA kernels of a step all read the same per-slot tables (adapter page lists, ranks,
offsets, scales); ``check_lora_meta`` validates them once per call, and ``slot_groups`` is the
token grouping the plain-torch references use.
"""
from __future__ import annotations

import torch

from manylora.kernels.batch_meta import LoraTargetMeta
from manylora.kernels.launch_checks import (INDEX_DTYPE, KernelInputError, check_index,
                                            check_tensor)


def check_lora_meta(lora: LoraTargetMeta, device: torch.device) -> None:
    """Per-slot tables are [S] (pages [S, max_pages]) on ``device`` with the right dtypes."""
    num_slots = lora.adapter_pages.shape[0] if lora.adapter_pages.dim() == 2 else -1
    check_tensor("lora.adapter_pages", lora.adapter_pages, ndim=2, dtypes=(INDEX_DTYPE,),
                 device=device)
    for name in ("ranks", "a_offsets", "b_offsets"):
        check_index(f"lora.{name}", getattr(lora, name), num_slots, device)
    check_tensor("lora.scales", lora.scales, ndim=1, dtypes=(torch.float32,), device=device)
    if lora.scales.shape[0] != num_slots:
        raise KernelInputError(f"lora.scales has {lora.scales.shape[0]} entries, "
                               f"expected {num_slots}")
    if lora.max_rank < 0:
        raise KernelInputError(f"lora.max_rank must be >= 0, got {lora.max_rank}")


def slot_groups(token_slots: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """(slot, token indices) for every distinct slot >= 0 in ``token_slots`` [T]."""
    slots, order = torch.sort(token_slots.long(), stable=True)
    values, counts = torch.unique_consecutive(slots, return_counts=True)
    groups = zip(values.tolist(), order.split(counts.tolist()))
    return [(s, rows) for s, rows in groups if s >= 0]
