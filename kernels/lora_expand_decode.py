"""LoRA expand, decode form (BGMV/MBGMV-like): ``y[t] += scale_s * h[t, :r] @ B_s`` per token.

Each token names its own slot ``s`` (-1 = no LoRA) and reads its adapter's ``B^T``
(``[rank, d_out]``) straight from the paged pool. The grid is (token, block of d_out); each
program loops over the slot's own rank, so no work is padded to the batch's largest rank. ``y``
is updated in place: read, add in fp32, round once to y's dtype.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from manylora.kernels.batch_meta import LoraTargetMeta
from manylora.kernels.launch_checks import (FLOAT_DTYPES, KernelInputError, check_index,
                                            check_size, check_tensor, next_pow2, pow2_align)
from manylora.kernels.lora_args import check_lora_meta, slot_groups
from manylora.kernels.pool_gather import pool_offsets, pool_tile_offsets, slot_matrices


@triton.jit
def _lora_expand_decode_kernel(
    # tensors: h [T, >= max_rank] fp32, pool [num_pages, PAGE_ELEMS], y [T, d_out]
    h_ptr, pool_ptr, y_ptr,
    stride_ht, stride_yt,
    # per token: slot [T]
    token_slots_ptr,
    # per slot: pages [S, stride_pages], rank [S], b_offset [S], scale [S]
    pages_ptr, stride_pages, ranks_ptr, b_offsets_ptr, scales_ptr,
    # sizes
    d_out,
    PAGE_ELEMS: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr, VEC: tl.constexpr,
):
    t = tl.program_id(0)
    nb = tl.program_id(1)
    slot = tl.load(token_slots_ptr + t)
    if slot < 0:
        return
    rank = tl.load(ranks_ptr + slot)
    if rank == 0:
        return
    b_offset = tl.load(b_offsets_ptr + slot)
    scale = tl.load(scales_ptr + slot)
    pages_row = pages_ptr + slot.to(tl.int64) * stride_pages
    offs_n = nb * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < d_out
    acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    for r0 in range(0, rank, BLOCK_R):
        offs_r = r0 + tl.arange(0, BLOCK_R)
        mask_r = offs_r < rank
        hv = tl.load(h_ptr + t.to(tl.int64) * stride_ht + offs_r, mask=mask_r, other=0.0)
        mask = mask_r[:, None] & mask_n[None, :]  # [BLOCK_R, BLOCK_N]
        if BLOCK_N <= PAGE_ELEMS:
            addr = pool_tile_offsets(pages_row, b_offset + offs_r * d_out + nb * BLOCK_N,
                                     d_out - nb * BLOCK_N, mask_r, BLOCK_N, PAGE_ELEMS)
        else:
            addr = pool_offsets(pages_row, b_offset + offs_r[:, None] * d_out + offs_n[None, :],
                                mask, PAGE_ELEMS)
        # Runs of VEC elements share a page and start VEC-aligned (checked by the wrapper).
        addr = tl.max_contiguous(tl.multiple_of(addr, [1, VEC]), [1, VEC])
        b = tl.load(pool_ptr + addr, mask=mask, other=0.0)
        acc += tl.sum(hv[:, None] * b.to(tl.float32), axis=0)
    y_ptrs = y_ptr + t.to(tl.int64) * stride_yt + offs_n
    y = tl.load(y_ptrs, mask=mask_n, other=0.0).to(tl.float32)
    tl.store(y_ptrs, (y + scale * acc).to(y_ptr.dtype.element_ty), mask=mask_n)


def check_expand_args(h: torch.Tensor, pool_layer: torch.Tensor, lora: LoraTargetMeta,
                      y: torch.Tensor) -> None:
    """Shapes shared by both expand forms: h [T, >= max_rank] fp32, y [T, d_out]."""
    device = y.device
    check_tensor("y", y, ndim=2, dtypes=FLOAT_DTYPES, device=device)
    check_tensor("h", h, ndim=2, dtypes=(torch.float32,), device=device)
    check_tensor("pool_layer", pool_layer, ndim=2, dtypes=(y.dtype,), device=device)
    if not pool_layer.is_contiguous():
        raise KernelInputError("pool_layer must be contiguous")
    check_size("h", h, 0, y.shape[0])
    if h.shape[1] < lora.max_rank:
        raise KernelInputError(f"h has {h.shape[1]} columns, fewer than lora.max_rank "
                               f"{lora.max_rank}")
    check_lora_meta(lora, device)


def lora_expand_decode(h: torch.Tensor, pool_layer: torch.Tensor, token_slots: torch.Tensor,
                       lora: LoraTargetMeta, y: torch.Tensor) -> None:
    """``y[T, d_out] += scale * h @ B`` in place, per token's slot (rows of y may be strided).

    h: [T, >= max_rank] fp32 (from a shrink); pool_layer: [num_pages, page_elems] of y's dtype;
    token_slots: [T] int32 (-1 = no LoRA).
    """
    check_expand_args(h, pool_layer, lora, y)
    num_tokens, d_out = y.shape
    check_index("token_slots", token_slots, num_tokens, y.device)
    if num_tokens == 0 or lora.max_rank == 0 or d_out == 0:
        return
    page_elems = pool_layer.shape[1]
    block_n = min(256, next_pow2(d_out))
    _lora_expand_decode_kernel[(num_tokens, triton.cdiv(d_out, block_n))](
        h, pool_layer, y, h.stride(0), y.stride(0),
        token_slots, lora.adapter_pages, lora.adapter_pages.stride(0), lora.ranks,
        lora.b_offsets, lora.scales, d_out,
        PAGE_ELEMS=page_elems, BLOCK_R=min(16, next_pow2(lora.max_rank)), BLOCK_N=block_n,
        VEC=pow2_align(lora.offset_align, d_out, page_elems))


def lora_expand_decode_ref(h: torch.Tensor, pool_layer: torch.Tensor, token_slots: torch.Tensor,
                           lora: LoraTargetMeta, y: torch.Tensor) -> None:
    """Plain torch, fp32: tokens sorted by slot, one matmul per distinct slot."""
    d_out = y.shape[1]
    if y.shape[0] == 0 or lora.max_rank == 0:
        return
    order, groups = slot_groups(token_slots)
    ranks, b_offsets = lora.ranks.tolist(), lora.b_offsets.tolist()
    scales = lora.scales.tolist()
    groups = [g for g in groups if ranks[g[0]] > 0]
    mats = slot_matrices(pool_layer, lora.adapter_pages, [g[0] for g in groups],
                         [b_offsets[g[0]] for g in groups], [ranks[g[0]] for g in groups], d_out)
    hs = h.index_select(0, order)  # [n, >= max_rank], grouped by slot
    delta = torch.zeros(order.shape[0], d_out, dtype=torch.float32, device=y.device)
    for (slot, start, end), b in zip(groups, mats):  # b: [rank, d_out]
        torch.mm(hs[start:end, :ranks[slot]], b.float(), out=delta[start:end])
        delta[start:end] *= scales[slot]
    y.index_copy_(0, order, (y.index_select(0, order).float() + delta).to(y.dtype))
