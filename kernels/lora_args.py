"""Arguments common to the LoRA kernels: checking a ``LoraTargetMeta`` and grouping tokens.

The LoRA kernels of a step all read the same per-slot tables (adapter page lists, ranks,
offsets, scales); ``check_lora_meta`` validates them once per call, and ``slot_groups`` is the
token grouping the plain-torch decode references use.
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


def slot_groups(token_slots: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int, int]]]:
    """Tokens sorted by slot: (order, [(slot, start, end), ...]) for every slot >= 0.

    ``order`` [n] lists the indices of tokens with a slot, grouped by slot; group ``(s, a, b)``
    is ``order[a:b]``. One sort and one device-to-host copy for the whole batch.
    """
    slots, order = torch.sort(token_slots.long(), stable=True)
    values, counts = torch.unique_consecutive(slots, return_counts=True)
    bounds = [0]
    for c in counts.tolist():
        bounds.append(bounds[-1] + c)
    groups = [(s, a, b) for s, a, b in zip(values.tolist(), bounds[:-1], bounds[1:]) if s >= 0]
    skip = groups[0][1] if groups else bounds[-1]  # the -1 tokens sort first
    return order[skip:], [(s, a - skip, b - skip) for s, a, b in groups]
