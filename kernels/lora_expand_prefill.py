"""LoRA expand, prefill form (SGMV/MBGMM-like): ``y[t] += scale_s * h[t, :r] @ B_s`` per segment.

Each program multiplies a tile of a segment's shrink output by a block of its adapter's
``B^T`` read from the paged pool, looping over the slot's own rank only. The grid is (segment,
token block, d_out block). ``y`` is updated in place: read, add in fp32, round once.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from manylora.kernels.batch_meta import LoraTargetMeta
from manylora.kernels.launch_checks import next_pow2, pow2_align
from manylora.kernels.lora_expand_decode import check_expand_args
from manylora.kernels.lora_shrink_prefill import check_segments
from manylora.kernels.pool_gather import pool_offsets, pool_tile_offsets, slot_matrices


@triton.jit
def _lora_expand_prefill_kernel(
    # tensors: h [T, >= max_rank] fp32, pool [num_pages, PAGE_ELEMS], y [T, d_out]
    h_ptr, pool_ptr, y_ptr,
    stride_ht, stride_yt,
    # per segment: starts [num_segs + 1], slot [num_segs]
    seg_starts_ptr, seg_slots_ptr,
    # per slot: pages [S, stride_pages], rank [S], b_offset [S], scale [S]
    pages_ptr, stride_pages, ranks_ptr, b_offsets_ptr, scales_ptr,
    # sizes
    d_out,
    PAGE_ELEMS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_R: tl.constexpr,
    BLOCK_N: tl.constexpr, VEC: tl.constexpr, PRECISION: tl.constexpr,
):
    seg = tl.program_id(0)
    mb = tl.program_id(1)
    nb = tl.program_id(2)
    slot = tl.load(seg_slots_ptr + seg)
    if slot < 0:
        return
    rank = tl.load(ranks_ptr + slot)
    if rank == 0:
        return
    m0 = tl.load(seg_starts_ptr + seg) + mb * BLOCK_M
    end = tl.load(seg_starts_ptr + seg + 1)
    if m0 >= end:
        return
    b_offset = tl.load(b_offsets_ptr + slot)
    scale = tl.load(scales_ptr + slot)
    pages_row = pages_ptr + slot.to(tl.int64) * stride_pages
    offs_m = m0 + tl.arange(0, BLOCK_M)
    mask_m = offs_m < end
    offs_n = nb * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < d_out
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for r0 in range(0, rank, BLOCK_R):
        offs_r = r0 + tl.arange(0, BLOCK_R)
        mask_r = offs_r < rank
        ht = tl.load(h_ptr + offs_m[:, None].to(tl.int64) * stride_ht + offs_r[None, :],
                     mask=mask_m[:, None] & mask_r[None, :], other=0.0)  # [BLOCK_M, BLOCK_R]
        mask = mask_r[:, None] & mask_n[None, :]  # [BLOCK_R, BLOCK_N]
        if BLOCK_N <= PAGE_ELEMS:
            addr = pool_tile_offsets(pages_row, b_offset + offs_r * d_out + nb * BLOCK_N,
                                     d_out - nb * BLOCK_N, mask_r, BLOCK_N, PAGE_ELEMS)
        else:
            addr = pool_offsets(pages_row, b_offset + offs_r[:, None] * d_out + offs_n[None, :],
                                mask, PAGE_ELEMS)
        # Runs of VEC elements along n share a page and start VEC-aligned (wrapper-checked).
        addr = tl.max_contiguous(tl.multiple_of(addr, [1, VEC]), [1, VEC])
        b = tl.load(pool_ptr + addr, mask=mask, other=0.0)
        # h stays fp32 (tf32 on tensor cores for half-precision pools: 10 mantissa bits, more
        # than bf16 would keep).
        acc = tl.dot(ht, b.to(tl.float32), acc, input_precision=PRECISION)
    y_ptrs = y_ptr + offs_m[:, None].to(tl.int64) * stride_yt + offs_n[None, :]
    mask_y = mask_m[:, None] & mask_n[None, :]
    y = tl.load(y_ptrs, mask=mask_y, other=0.0).to(tl.float32)
    tl.store(y_ptrs, (y + scale * acc).to(y_ptr.dtype.element_ty), mask=mask_y)


def lora_expand_prefill(h: torch.Tensor, pool_layer: torch.Tensor, seg_starts: torch.Tensor,
                        seg_slots: torch.Tensor, max_segment_len: int, lora: LoraTargetMeta,
                        y: torch.Tensor) -> None:
    """``y[T, d_out] += scale * h @ B`` in place, per segment's slot (rows of y may be strided).

    h: [T, >= max_rank] fp32 (from a shrink); pool_layer: [num_pages, page_elems] of y's dtype;
    segments as for ``lora_shrink_prefill``.
    """
    check_expand_args(h, pool_layer, lora, y)
    num_tokens, d_out = y.shape
    check_segments(seg_starts, seg_slots, num_tokens, y.device)
    if num_tokens == 0 or lora.max_rank == 0 or d_out == 0:
        return
    page_elems = pool_layer.shape[1]
    block_m = max(16, min(64, next_pow2(max_segment_len)))
    block_n = max(16, min(64, next_pow2(d_out)))
    grid = (seg_slots.shape[0], triton.cdiv(max_segment_len, block_m),
            triton.cdiv(d_out, block_n))
    _lora_expand_prefill_kernel[grid](
        h, pool_layer, y, h.stride(0), y.stride(0), seg_starts, seg_slots,
        lora.adapter_pages, lora.adapter_pages.stride(0), lora.ranks, lora.b_offsets,
        lora.scales, d_out,
        PAGE_ELEMS=page_elems, BLOCK_M=block_m,
        BLOCK_R=max(16, min(32, next_pow2(lora.max_rank))), BLOCK_N=block_n,
        VEC=pow2_align(lora.offset_align, d_out, page_elems),
        PRECISION="ieee" if y.dtype == torch.float32 else "tf32")


def lora_expand_prefill_ref(h: torch.Tensor, pool_layer: torch.Tensor, seg_starts: torch.Tensor,
                            seg_slots: torch.Tensor, max_segment_len: int, lora: LoraTargetMeta,
                            y: torch.Tensor) -> None:
    """Plain torch, fp32: one matmul per segment."""
    d_out = y.shape[1]
    if y.shape[0] == 0 or lora.max_rank == 0:
        return
    ranks, b_offsets = lora.ranks.tolist(), lora.b_offsets.tolist()
    scales, starts = lora.scales.tolist(), seg_starts.tolist()
    segs = [(seg, slot) for seg, slot in enumerate(seg_slots.tolist())
            if slot >= 0 and ranks[slot] > 0]
    mats = slot_matrices(pool_layer, lora.adapter_pages, [s for _, s in segs],
                         [b_offsets[s] for _, s in segs], [ranks[s] for _, s in segs], d_out)
    for (seg, slot), b in zip(segs, mats):  # b: [rank, d_out]
        rows = slice(starts[seg], starts[seg + 1])
        delta = (h[rows, :ranks[slot]] @ b.float()) * scales[slot]
        y[rows] = (y[rows].float() + delta).to(y.dtype)
