"""LoRA shrink, decode form (BGMV/MBGMV-like): ``h[t, :r] = x[t] @ A_s^T`` per token.

Each token names its own slot ``s`` (-1 = no LoRA) and reads its adapter's ``A`` (``[rank, d_in]``)
straight from the paged pool. The grid is (token, rank block, K split): programs past a slot's
rank only store zeros and read no weights, so a batch mixing ranks 8 and 128 does rank-8 work
for rank-8 tokens, and the output needs no separate memset. When
the batch is too small to fill the device, ``d_in`` is split and the partial sums are added in
a fixed order (deterministic, no atomics).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from manylora.kernels.batch_meta import LoraTargetMeta
from manylora.kernels.launch_checks import (FLOAT_DTYPES, KernelInputError, check_index,
                                            check_tensor, next_pow2, pow2_align, split_count)
from manylora.kernels.lora_args import check_lora_meta, slot_groups
from manylora.kernels.pool_gather import pool_offsets, pool_tile_offsets, slot_matrices


@triton.jit
def _lora_shrink_decode_kernel(
    # tensors: x [T, d_in], pool [num_pages, PAGE_ELEMS], h [splits, T, max_rank] fp32
    x_ptr, pool_ptr, h_ptr,
    stride_xt, stride_hs, stride_ht,
    # per token: slot [T]
    token_slots_ptr,
    # per slot: pages [S, stride_pages], rank [S], a_offset [S]
    pages_ptr, stride_pages, ranks_ptr, a_offsets_ptr,
    # sizes
    d_in, k_per_split, h_cols,
    PAGE_ELEMS: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr, VEC: tl.constexpr,
):
    t = tl.program_id(0)
    rb = tl.program_id(1)
    split = tl.program_id(2)
    # Every program stores its block of h (zeros when idle), so h needs no memset.
    slot = tl.load(token_slots_ptr + t)
    live_slot = tl.maximum(slot, 0)
    rank = tl.where(slot >= 0, tl.load(ranks_ptr + live_slot), 0)
    a_offset = tl.load(a_offsets_ptr + live_slot)
    pages_row = pages_ptr + live_slot.to(tl.int64) * stride_pages
    offs_r = rb * BLOCK_R + tl.arange(0, BLOCK_R)
    mask_r = offs_r < rank
    k_start = split * k_per_split
    k_end = tl.minimum(k_start + k_per_split, d_in)
    # past the slot's rank (or no LoRA): an empty loop, no weight is read
    k_end = tl.where(rb * BLOCK_R < rank, k_end, k_start)
    acc = tl.zeros([BLOCK_R], dtype=tl.float32)
    for k0 in range(k_start, k_end, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < k_end
        xv = tl.load(x_ptr + t.to(tl.int64) * stride_xt + offs_k, mask=mask_k, other=0.0)
        mask = mask_r[:, None] & mask_k[None, :]  # [BLOCK_R, BLOCK_K]
        if BLOCK_K <= PAGE_ELEMS:
            addr = pool_tile_offsets(pages_row, a_offset + offs_r * d_in + k0, k_end - k0,
                                     mask_r, BLOCK_K, PAGE_ELEMS)
        else:
            addr = pool_offsets(pages_row, a_offset + offs_r[:, None] * d_in + offs_k[None, :],
                                mask, PAGE_ELEMS)
        # Runs of VEC elements share a page and start VEC-aligned (checked by the wrapper).
        addr = tl.max_contiguous(tl.multiple_of(addr, [1, VEC]), [1, VEC])
        a = tl.load(pool_ptr + addr, mask=mask, other=0.0)
        acc += tl.sum(a.to(tl.float32) * xv.to(tl.float32)[None, :], axis=1)
    tl.store(h_ptr + split * stride_hs + t.to(tl.int64) * stride_ht + offs_r, acc,
             mask=offs_r < h_cols)


def lora_shrink_decode(x: torch.Tensor, pool_layer: torch.Tensor, token_slots: torch.Tensor,
                       lora: LoraTargetMeta, *, num_splits: int | None = None) -> torch.Tensor:
    """``h[T, max_rank]`` fp32 for x [T, d_in] (rows may be strided); zero past each rank.

    pool_layer: [num_pages, page_elems] of x's dtype; token_slots: [T] int32 (-1 = no LoRA).
    ``num_splits`` overrides how many pieces ``d_in`` is cut into (default: fill the device).
    """
    device = x.device
    check_tensor("x", x, ndim=2, dtypes=FLOAT_DTYPES, device=device)
    check_tensor("pool_layer", pool_layer, ndim=2, dtypes=(x.dtype,), device=device)
    if not pool_layer.is_contiguous():
        raise KernelInputError("pool_layer must be contiguous")
    num_tokens, d_in = x.shape
    check_index("token_slots", token_slots, num_tokens, device)
    check_lora_meta(lora, device)
    if num_tokens == 0 or lora.max_rank == 0:
        return torch.zeros(num_tokens, lora.max_rank, dtype=torch.float32, device=device)
    page_elems = pool_layer.shape[1]
    block_r = min(16, next_pow2(lora.max_rank))
    block_k = min(256, next_pow2(d_in))
    rank_blocks = triton.cdiv(lora.max_rank, block_r)
    k_blocks = triton.cdiv(d_in, block_k)
    splits = num_splits or split_count(num_tokens * rank_blocks, k_blocks, device)
    splits = max(1, min(splits, k_blocks))
    k_per_split = triton.cdiv(k_blocks, splits) * block_k
    splits = triton.cdiv(d_in, k_per_split)
    h = torch.empty(splits, num_tokens, lora.max_rank, dtype=torch.float32, device=device)
    vec = pow2_align(lora.offset_align, d_in, page_elems)
    _lora_shrink_decode_kernel[(num_tokens, rank_blocks, splits)](
        x, pool_layer, h, x.stride(0), h.stride(0), h.stride(1),
        token_slots, lora.adapter_pages, lora.adapter_pages.stride(0), lora.ranks,
        lora.a_offsets, d_in, k_per_split, lora.max_rank,
        PAGE_ELEMS=page_elems, BLOCK_R=block_r, BLOCK_K=block_k, VEC=vec)
    return h[0] if splits == 1 else h.sum(0)


def lora_shrink_decode_ref(x: torch.Tensor, pool_layer: torch.Tensor, token_slots: torch.Tensor,
                           lora: LoraTargetMeta) -> torch.Tensor:
    """Plain torch, fp32: tokens sorted by slot, one matmul per distinct slot."""
    num_tokens, d_in = x.shape
    h = torch.zeros(num_tokens, lora.max_rank, dtype=torch.float32, device=x.device)
    if num_tokens == 0 or lora.max_rank == 0:
        return h
    order, groups = slot_groups(token_slots)
    ranks, a_offsets = lora.ranks.tolist(), lora.a_offsets.tolist()
    groups = [g for g in groups if ranks[g[0]] > 0]
    mats = slot_matrices(pool_layer, lora.adapter_pages, [g[0] for g in groups],
                         [a_offsets[g[0]] for g in groups], [ranks[g[0]] for g in groups], d_in)
    xs = x.index_select(0, order).float()  # [n, d_in], grouped by slot
    hs = torch.zeros(order.shape[0], lora.max_rank, dtype=torch.float32, device=x.device)
    for (slot, start, end), a in zip(groups, mats):  # a: [rank, d_in]
        hs[start:end, :ranks[slot]] = xs[start:end] @ a.float().T
    h.index_copy_(0, order, hs)
    return h
