"""LoRA for one layer and one target over a step's tokens: the Triton and torch versions.

Each op takes ``(y, x, pool_layer, meta, target)`` and adds ``scale * (x @ A^T) @ B`` into y in
place, for the decode rows (``x`` [D, d_in], per-token slots) or the prefill rows (``x``
[P, d_in], per-segment slots) of the step described by ``meta``. ``target`` is the target's
index in the order the engine gave ``BatchMeta.build`` (canonically q, k, v, o, gate, up, down).
``lora_padded`` has the baseline with the same signature; ``backends`` picks one by name.
"""
from __future__ import annotations

import torch

from manylora.kernels.batch_meta import BatchMeta
from manylora.kernels.lora_expand_decode import lora_expand_decode, lora_expand_decode_ref
from manylora.kernels.lora_expand_prefill import lora_expand_prefill, lora_expand_prefill_ref
from manylora.kernels.lora_shrink_decode import lora_shrink_decode, lora_shrink_decode_ref
from manylora.kernels.lora_shrink_prefill import lora_shrink_prefill, lora_shrink_prefill_ref


def lora_decode_triton(y: torch.Tensor, x: torch.Tensor, pool_layer: torch.Tensor,
                       meta: BatchMeta, target: int) -> None:
    lora = meta.lora(target)
    slots = meta.token_slots[meta.num_prefill_tokens:]
    h = lora_shrink_decode(x, pool_layer, slots, lora)  # [D, max_rank] fp32
    lora_expand_decode(h, pool_layer, slots, lora, y)


def lora_prefill_triton(y: torch.Tensor, x: torch.Tensor, pool_layer: torch.Tensor,
                        meta: BatchMeta, target: int) -> None:
    lora = meta.lora(target)
    segs = (meta.seg_starts, meta.seg_slots, meta.max_segment_len)
    h = lora_shrink_prefill(x, pool_layer, *segs, lora)  # [P, max_rank] fp32
    lora_expand_prefill(h, pool_layer, *segs, lora, y)


def lora_decode_torch(y: torch.Tensor, x: torch.Tensor, pool_layer: torch.Tensor,
                      meta: BatchMeta, target: int) -> None:
    lora = meta.lora(target)
    slots = meta.token_slots[meta.num_prefill_tokens:]
    h = lora_shrink_decode_ref(x, pool_layer, slots, lora)
    lora_expand_decode_ref(h, pool_layer, slots, lora, y)


def lora_prefill_torch(y: torch.Tensor, x: torch.Tensor, pool_layer: torch.Tensor,
                       meta: BatchMeta, target: int) -> None:
    lora = meta.lora(target)
    segs = (meta.seg_starts, meta.seg_slots, meta.max_segment_len)
    h = lora_shrink_prefill_ref(x, pool_layer, *segs, lora)
    lora_expand_prefill_ref(h, pool_layer, *segs, lora, y)
