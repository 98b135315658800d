"""LoRA shrink, prefill form (SGMV/MBGMM-like): ``h[t, :r] = x[t] @ A_s^T`` per segment.

Prefill tokens come in segments (runs of tokens sharing one slot, ``seg_starts``/``seg_slots``
of the step's BatchMeta), so each program multiplies a tile of a segment's tokens by a block of
its adapter's ``A`` read from the paged pool, on tensor cores. The grid is (segment, token
block, rank block); programs past a segment's end or its slot's rank exit at once, so no work
is padded to the batch's longest segment or largest rank beyond one tile.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from manylora.kernels.batch_meta import LoraTargetMeta
from manylora.kernels.launch_checks import (FLOAT_DTYPES, INDEX_DTYPE, KernelInputError,
                                            check_tensor, next_pow2, pow2_align)
from manylora.kernels.lora_args import check_lora_meta
from manylora.kernels.pool_gather import pool_offsets, pool_tile_offsets, slot_matrices


@triton.jit
def _lora_shrink_prefill_kernel(
    # tensors: x [T, d_in], pool [num_pages, PAGE_ELEMS], h [T, max_rank] fp32
    x_ptr, pool_ptr, h_ptr,
    stride_xt, stride_ht,
    # per segment: starts [num_segs + 1], slot [num_segs]
    seg_starts_ptr, seg_slots_ptr,
    # per slot: pages [S, stride_pages], rank [S], a_offset [S]
    pages_ptr, stride_pages, ranks_ptr, a_offsets_ptr,
    # sizes
    d_in,
    PAGE_ELEMS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_R: tl.constexpr,
    BLOCK_K: tl.constexpr, VEC: tl.constexpr, PRECISION: tl.constexpr,
):
    seg = tl.program_id(0)
    mb = tl.program_id(1)
    rb = tl.program_id(2)
    slot = tl.load(seg_slots_ptr + seg)
    if slot < 0:
        return
    rank = tl.load(ranks_ptr + slot)
    if rb * BLOCK_R >= rank:
        return
    m0 = tl.load(seg_starts_ptr + seg) + mb * BLOCK_M
    end = tl.load(seg_starts_ptr + seg + 1)
    if m0 >= end:
        return
    a_offset = tl.load(a_offsets_ptr + slot)
    pages_row = pages_ptr + slot.to(tl.int64) * stride_pages
    offs_m = m0 + tl.arange(0, BLOCK_M)
    mask_m = offs_m < end
    offs_r = rb * BLOCK_R + tl.arange(0, BLOCK_R)
    mask_r = offs_r < rank
    acc = tl.zeros([BLOCK_M, BLOCK_R], dtype=tl.float32)
    for k0 in range(0, d_in, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < d_in
        xt = tl.load(x_ptr + offs_m[:, None].to(tl.int64) * stride_xt + offs_k[None, :],
                     mask=mask_m[:, None] & mask_k[None, :], other=0.0)  # [BLOCK_M, BLOCK_K]
        mask = mask_k[:, None] & mask_r[None, :]  # [BLOCK_K, BLOCK_R]: A^T
        if BLOCK_K <= PAGE_ELEMS:
            addr = tl.trans(pool_tile_offsets(pages_row, a_offset + offs_r * d_in + k0,
                                              d_in - k0, mask_r, BLOCK_K, PAGE_ELEMS))
        else:
            addr = pool_offsets(pages_row, a_offset + offs_r[None, :] * d_in + offs_k[:, None],
                                mask, PAGE_ELEMS)
        # Runs of VEC elements along k share a page and start VEC-aligned (wrapper-checked).
        addr = tl.max_contiguous(tl.multiple_of(addr, [VEC, 1]), [VEC, 1])
        a = tl.load(pool_ptr + addr, mask=mask, other=0.0)
        acc = tl.dot(xt, a, acc, input_precision=PRECISION)
    h_ptrs = h_ptr + offs_m[:, None].to(tl.int64) * stride_ht + offs_r[None, :]
    tl.store(h_ptrs, acc, mask=mask_m[:, None] & mask_r[None, :])


def check_segments(seg_starts: torch.Tensor, seg_slots: torch.Tensor, num_tokens: int,
                   device: torch.device) -> None:
    """seg_starts [num_segs + 1] and seg_slots [num_segs], int32, on ``device``."""
    check_tensor("seg_slots", seg_slots, ndim=1, dtypes=(INDEX_DTYPE,), device=device)
    check_tensor("seg_starts", seg_starts, ndim=1, dtypes=(INDEX_DTYPE,), device=device)
    if seg_starts.shape[0] != seg_slots.shape[0] + 1:
        raise KernelInputError(f"seg_starts has {seg_starts.shape[0]} entries, expected "
                               f"len(seg_slots) + 1 = {seg_slots.shape[0] + 1}")
    if num_tokens and not seg_slots.shape[0]:
        raise KernelInputError(f"{num_tokens} tokens but no segments")


def lora_shrink_prefill(x: torch.Tensor, pool_layer: torch.Tensor, seg_starts: torch.Tensor,
                        seg_slots: torch.Tensor, max_segment_len: int,
                        lora: LoraTargetMeta) -> torch.Tensor:
    """``h[T, max_rank]`` fp32 for x [T, d_in] (rows may be strided); zero past each rank.

    pool_layer: [num_pages, page_elems] of x's dtype; segments partition the T tokens
    (``seg_starts`` [num_segs + 1], ``seg_slots`` [num_segs], -1 = no LoRA), the longest being
    ``max_segment_len`` tokens.
    """
    device = x.device
    check_tensor("x", x, ndim=2, dtypes=FLOAT_DTYPES, device=device)
    check_tensor("pool_layer", pool_layer, ndim=2, dtypes=(x.dtype,), device=device)
    if not pool_layer.is_contiguous():
        raise KernelInputError("pool_layer must be contiguous")
    num_tokens, d_in = x.shape
    check_segments(seg_starts, seg_slots, num_tokens, device)
    check_lora_meta(lora, device)
    h = torch.zeros(num_tokens, lora.max_rank, dtype=torch.float32, device=device)
    if num_tokens == 0 or lora.max_rank == 0:
        return h
    page_elems = pool_layer.shape[1]
    block_m = max(16, min(64, next_pow2(max_segment_len)))
    block_r = max(16, min(64, next_pow2(lora.max_rank)))
    grid = (seg_slots.shape[0], triton.cdiv(max_segment_len, block_m),
            triton.cdiv(lora.max_rank, block_r))
    _lora_shrink_prefill_kernel[grid](
        x, pool_layer, h, x.stride(0), h.stride(0), seg_starts, seg_slots,
        lora.adapter_pages, lora.adapter_pages.stride(0), lora.ranks, lora.a_offsets, d_in,
        PAGE_ELEMS=page_elems, BLOCK_M=block_m, BLOCK_R=block_r,
        BLOCK_K=max(16, min(64, next_pow2(d_in))), VEC=pow2_align(lora.offset_align, d_in,
                                                                   page_elems),
        PRECISION="ieee" if x.dtype == torch.float32 else "tf32")
    return h


def lora_shrink_prefill_ref(x: torch.Tensor, pool_layer: torch.Tensor, seg_starts: torch.Tensor,
                            seg_slots: torch.Tensor, max_segment_len: int,
                            lora: LoraTargetMeta) -> torch.Tensor:
    """Plain torch, fp32: one matmul per segment."""
    num_tokens, d_in = x.shape
    h = torch.zeros(num_tokens, lora.max_rank, dtype=torch.float32, device=x.device)
    if num_tokens == 0 or lora.max_rank == 0:
        return h
    ranks, a_offsets = lora.ranks.tolist(), lora.a_offsets.tolist()
    starts = seg_starts.tolist()
    segs = [(seg, slot) for seg, slot in enumerate(seg_slots.tolist())
            if slot >= 0 and ranks[slot] > 0]
    mats = slot_matrices(pool_layer, lora.adapter_pages, [s for _, s in segs],
                         [a_offsets[s] for _, s in segs], [ranks[s] for _, s in segs], d_in)
    for (seg, slot), a in zip(segs, mats):  # a: [rank, d_in]
        rows = slice(starts[seg], starts[seg + 1])
        h[rows, :ranks[slot]] = x[rows].float() @ a.float().T
    return h
