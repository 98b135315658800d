"""The padded LoRA baseline: gather each token's A/B padded to the batch's largest rank, bmm.

This is the S-LoRA ablation, not a kernel: every token gets a private copy of its adapter's
weights zero-padded to the largest rank in the batch, and two batched matmuls in the model's
dtype do the rest. Its data movement and compute grow with (tokens x max rank), which is what
the heterogeneous kernels avoid. The meta-level ops have the same signature as the other
backends' (see ``lora_ops``) so the engine can switch by name.
"""
from __future__ import annotations

import torch

from manylora.kernels.batch_meta import BatchMeta, LoraTargetMeta
from manylora.kernels.pool_gather import gather_padded


def lora_padded(y: torch.Tensor, x: torch.Tensor, pool_layer: torch.Tensor,
                token_slots: torch.Tensor, lora: LoraTargetMeta) -> None:
    """``y[T, d_out] += scale * (x @ A^T) @ B`` per token's slot, padded to ``lora.max_rank``.

    x: [T, d_in]; pool_layer: [num_pages, page_elems]; token_slots: [T] int32 (-1 = no LoRA).
    """
    num_tokens, d_in = x.shape
    d_out = y.shape[1]
    if num_tokens == 0 or lora.max_rank == 0 or lora.adapter_pages.shape[0] == 0:
        return
    a_all = gather_padded(pool_layer, lora.adapter_pages, lora.a_offsets, lora.ranks,
                          lora.max_rank, d_in)  # [S, R, d_in]
    b_all = gather_padded(pool_layer, lora.adapter_pages, lora.b_offsets, lora.ranks,
                          lora.max_rank, d_out)  # [S, R, d_out]
    live = token_slots >= 0
    idx = token_slots.long().clamp(min=0)
    a_tok, b_tok = a_all[idx], b_all[idx]  # [T, R, d_in], [T, R, d_out]
    h = torch.bmm(a_tok, x.to(a_tok.dtype).unsqueeze(2))  # [T, R, 1]
    delta = torch.bmm(h.transpose(1, 2), b_tok).squeeze(1)  # [T, d_out]
    scale = torch.where(live, lora.scales[idx], 0.0)  # [T]
    y.copy_((y.float() + delta.float() * scale[:, None]).to(y.dtype))


def lora_decode_padded(y: torch.Tensor, x: torch.Tensor, pool_layer: torch.Tensor,
                       meta: BatchMeta, target: int) -> None:
    """Decode rows: x [D, d_in], y [D, d_out] are the step's decode tokens."""
    lora_padded(y, x, pool_layer, meta.token_slots[meta.num_prefill_tokens:], meta.lora(target))


def lora_prefill_padded(y: torch.Tensor, x: torch.Tensor, pool_layer: torch.Tensor,
                        meta: BatchMeta, target: int) -> None:
    """Prefill rows: x [P, d_in], y [P, d_out] are the step's prefill tokens."""
    lora_padded(y, x, pool_layer, meta.token_slots[:meta.num_prefill_tokens], meta.lora(target))
