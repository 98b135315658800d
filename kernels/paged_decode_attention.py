"""Paged decode attention: one query token per request, K/V read from pool pages.

The per-layer pool view ``[num_pages, page_elems]`` is ``[num_pages, 2 (K, V), tokens_per_page,
kv_heads, head_dim]``; request d's token n lives on page ``kv_page_table[d, n //
tokens_per_page]``, slot ``n % tokens_per_page``. One program serves one request, one KV head
and all query heads of its GQA group (K/V read once per group), over one split of the context
with an online softmax. Long contexts on a small batch are split over several programs
(flash-decoding) whose partial results a second kernel combines.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from manylora.kernels.launch_checks import (FLOAT_DTYPES, INDEX_DTYPE, KernelInputError,
                                            check_index, check_tensor, next_pow2, split_count)
from manylora.kernels.torch_sdpa import sdpa


@triton.jit
def _paged_decode_attention_kernel(
    # tensors: q [D, H, HEAD_DIM], pool [num_pages, PAGE_ELEMS]
    q_ptr, pool_ptr, stride_qd, stride_qh,
    # outputs: DIRECT -> out [D, H, HEAD_DIM]; else part_acc [D, H, splits, BLOCK_D] fp32 and
    # part_ml [D, H, splits, 2] fp32 (running max, softmax denominator)
    out_ptr, stride_od, stride_oh, part_acc_ptr, part_ml_ptr, num_splits,
    # per request: page table [D, stride_pt], context length [D]
    page_table_ptr, stride_pt, context_lens_ptr,
    # scalars
    scale, tokens_per_split,
    # geometry
    TOKENS_PER_PAGE: tl.constexpr, PAGE_ELEMS: tl.constexpr, KV_WIDTH: tl.constexpr,
    NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, GROUP: tl.constexpr,
    BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    DIRECT: tl.constexpr, PRECISION: tl.constexpr,
):
    d = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    ctx = tl.load(context_lens_ptr + d)
    n_start = split * tokens_per_split
    n_end = tl.minimum(n_start + tokens_per_split, ctx)
    offs_g = tl.arange(0, BLOCK_G)
    heads = kvh * GROUP + offs_g
    offs_d = tl.arange(0, BLOCK_D)
    mask_gd = (offs_g < GROUP)[:, None] & (offs_d < HEAD_DIM)[None, :]
    q = tl.load(q_ptr + d.to(tl.int64) * stride_qd + heads[:, None] * stride_qh + offs_d[None, :],
                mask=mask_gd, other=0.0)  # [BLOCK_G, BLOCK_D]
    m_i = tl.full([BLOCK_G], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_G], dtype=tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], dtype=tl.float32)
    pt_row = page_table_ptr + d.to(tl.int64) * stride_pt
    for n0 in range(n_start, n_end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < n_end
        page = tl.load(pt_row + offs_n // TOKENS_PER_PAGE, mask=mask_n, other=0)
        base = (page.to(tl.int64) * PAGE_ELEMS + (offs_n % TOKENS_PER_PAGE) * KV_WIDTH
                + kvh * HEAD_DIM)  # [BLOCK_N]: K of token n, this head
        mask_nd = mask_n[:, None] & (offs_d < HEAD_DIM)[None, :]
        k = tl.load(pool_ptr + base[:, None] + offs_d[None, :], mask=mask_nd, other=0.0)
        v = tl.load(pool_ptr + base[:, None] + TOKENS_PER_PAGE * KV_WIDTH + offs_d[None, :],
                    mask=mask_nd, other=0.0)  # [BLOCK_N, BLOCK_D]
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale  # [BLOCK_G, BLOCK_N]
        s = tl.where(mask_n[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    if DIRECT:
        out = acc / l_i[:, None]
        tl.store(out_ptr + d.to(tl.int64) * stride_od + heads[:, None] * stride_oh
                 + offs_d[None, :], out.to(out_ptr.dtype.element_ty), mask=mask_gd)
    else:
        row = (d.to(tl.int64) * NUM_HEADS + heads) * num_splits + split
        tl.store(part_acc_ptr + row[:, None] * BLOCK_D + offs_d[None, :], acc,
                 mask=(offs_g < GROUP)[:, None])
        tl.store(part_ml_ptr + row * 2, m_i, mask=offs_g < GROUP)
        tl.store(part_ml_ptr + row * 2 + 1, l_i, mask=offs_g < GROUP)


@triton.jit
def _paged_decode_reduce_kernel(
    # partials: acc [D, H, num_splits, BLOCK_D], ml [D, H, num_splits, 2] fp32
    part_acc_ptr, part_ml_ptr, num_splits,
    # output [D, H, HEAD_DIM]
    out_ptr, stride_od, stride_oh,
    # per request context length [D]; tokens per split
    context_lens_ptr, tokens_per_split,
    NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_S: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    d = tl.program_id(0)
    h = tl.program_id(1)
    ctx = tl.load(context_lens_ptr + d)
    offs_s = tl.arange(0, BLOCK_S)
    # Splits starting past the context never ran their loop: leave them out entirely.
    mask_s = (offs_s < num_splits) & (offs_s * tokens_per_split < ctx)
    row = (d.to(tl.int64) * NUM_HEADS + h) * num_splits + offs_s
    m = tl.load(part_ml_ptr + row * 2, mask=mask_s, other=float("-inf"))
    l = tl.load(part_ml_ptr + row * 2 + 1, mask=mask_s, other=0.0)
    offs_d = tl.arange(0, BLOCK_D)
    acc = tl.load(part_acc_ptr + row[:, None] * BLOCK_D + offs_d[None, :],
                  mask=mask_s[:, None], other=0.0)  # [BLOCK_S, BLOCK_D]
    w = tl.where(mask_s, tl.exp(m - tl.max(m, axis=0)), 0.0)
    out = tl.sum(w[:, None] * acc, axis=0) / tl.sum(w * l, axis=0)
    tl.store(out_ptr + d.to(tl.int64) * stride_od + h * stride_oh + offs_d,
             out.to(out_ptr.dtype.element_ty), mask=offs_d < HEAD_DIM)


def kv_geometry(q: torch.Tensor, pool_layer: torch.Tensor, tokens_per_page: int
                ) -> tuple[int, int]:
    """(kv_heads, group size) implied by q [.., H, head_dim] and the page size."""
    num_heads, head_dim = q.shape[-2], q.shape[-1]
    page_elems = pool_layer.shape[1]
    if tokens_per_page < 1 or page_elems % (2 * tokens_per_page * head_dim):
        raise KernelInputError(f"page_elems {page_elems} is not 2 * tokens_per_page "
                               f"({tokens_per_page}) * kv_heads * head_dim ({head_dim})")
    kv_heads = page_elems // (2 * tokens_per_page * head_dim)
    if num_heads % kv_heads:
        raise KernelInputError(f"{num_heads} query heads are not a multiple of the pool's "
                               f"{kv_heads} KV heads")
    return kv_heads, num_heads // kv_heads


def paged_decode_attention(q: torch.Tensor, pool_layer: torch.Tensor,
                           kv_page_table: torch.Tensor, context_lens: torch.Tensor, *,
                           tokens_per_page: int, scale: float, max_context_len: int,
                           num_splits: int | None = None) -> torch.Tensor:
    """Attention output [D, H, head_dim] of q [D, H, head_dim] over each request's paged K/V.

    pool_layer: [num_pages, 2 * tokens_per_page * kv_heads * head_dim] of q's dtype;
    kv_page_table: [D, max_pages] int32; context_lens: [D] int32 (>= 1, incl. the new token),
    at most ``max_context_len``. ``num_splits`` overrides the flash-decoding split count.
    """
    device = q.device
    check_tensor("q", q, ndim=3, dtypes=FLOAT_DTYPES, device=device)
    check_tensor("pool_layer", pool_layer, ndim=2, dtypes=(q.dtype,), device=device)
    if not pool_layer.is_contiguous():
        raise KernelInputError("pool_layer must be contiguous")
    num_reqs, num_heads, head_dim = q.shape
    check_tensor("kv_page_table", kv_page_table, ndim=2, dtypes=(INDEX_DTYPE,), device=device)
    if kv_page_table.shape[0] != num_reqs:
        raise KernelInputError(f"kv_page_table has {kv_page_table.shape[0]} rows, q {num_reqs}")
    if num_reqs and kv_page_table.shape[1] * tokens_per_page < max_context_len:
        raise KernelInputError(f"kv_page_table has {kv_page_table.shape[1]} columns, too few "
                               f"for {max_context_len} tokens")
    check_index("context_lens", context_lens, num_reqs, device)
    kv_heads, group = kv_geometry(q, pool_layer, tokens_per_page)
    out = torch.empty(num_reqs, num_heads, head_dim, dtype=q.dtype, device=device)
    if num_reqs == 0:
        return out
    block_n = 64
    block_d = max(16, next_pow2(head_dim))
    ctx_blocks = triton.cdiv(max(max_context_len, 1), block_n)
    splits = num_splits or split_count(num_reqs * kv_heads, triton.cdiv(ctx_blocks, 4), device)
    splits = max(1, min(splits, ctx_blocks))
    tokens_per_split = triton.cdiv(ctx_blocks, splits) * block_n
    splits = triton.cdiv(max(max_context_len, 1), tokens_per_split)
    direct = splits == 1
    part_acc = torch.empty(0 if direct else num_reqs * num_heads * splits * block_d,
                           dtype=torch.float32, device=device)
    part_ml = torch.empty(0 if direct else num_reqs * num_heads * splits * 2,
                          dtype=torch.float32, device=device)
    _paged_decode_attention_kernel[(num_reqs, kv_heads, splits)](
        q, pool_layer, q.stride(0), q.stride(1), out, out.stride(0), out.stride(1),
        part_acc, part_ml, splits, kv_page_table, kv_page_table.stride(0), context_lens,
        scale, tokens_per_split,
        TOKENS_PER_PAGE=tokens_per_page, PAGE_ELEMS=pool_layer.shape[1],
        KV_WIDTH=kv_heads * head_dim, NUM_HEADS=num_heads, HEAD_DIM=head_dim, GROUP=group,
        BLOCK_G=max(16, next_pow2(group)), BLOCK_N=block_n, BLOCK_D=block_d, DIRECT=direct,
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    if not direct:
        _paged_decode_reduce_kernel[(num_reqs, num_heads)](
            part_acc, part_ml, splits, out, out.stride(0), out.stride(1), context_lens,
            tokens_per_split, NUM_HEADS=num_heads, HEAD_DIM=head_dim,
            BLOCK_S=next_pow2(splits), BLOCK_D=block_d)
    return out


def paged_decode_attention_ref(q: torch.Tensor, pool_layer: torch.Tensor,
                               kv_page_table: torch.Tensor, context_lens: torch.Tensor, *,
                               tokens_per_page: int, scale: float,
                               max_context_len: int) -> torch.Tensor:
    """Plain torch, fp32: gathers every request's K/V padded to the longest context, zeroes
    what lies past each context (a padded slot may hold anything, another request's stale
    values included, and SDPA's mask adds -inf, which leaves a NaN score NaN), then one masked
    SDPA call."""
    num_reqs, num_heads, head_dim = q.shape
    kv_heads, _ = kv_geometry(q, pool_layer, tokens_per_page)
    num_pages = -(-max_context_len // tokens_per_page)
    pages = kv_page_table[:, :num_pages].reshape(-1).long()
    # one row copy of every request's pages: [D, num_pages, 2, tokens_per_page, kv_heads, hd]
    kv = pool_layer.index_select(0, pages).view(num_reqs, num_pages, 2, tokens_per_page,
                                                kv_heads, head_dim)
    n = torch.arange(num_pages * tokens_per_page, device=q.device)
    live = n[None, :] < context_lens.long()[:, None]  # [D, num_pages * tokens_per_page]
    # rows [kv_width] of the dead tokens' K (and, tokens_per_page rows on, V) in the copy
    dead = (~live).reshape(-1).nonzero().squeeze(1)  # flat (request, token) indices
    row_k = (dead - dead % tokens_per_page) * 2 + dead % tokens_per_page
    kv.view(-1, kv_heads * head_dim).index_fill_(
        0, torch.cat([row_k, row_k + tokens_per_page]), 0.0)
    k, v = (kv[:, :, i].reshape(num_reqs, -1, kv_heads, head_dim)[:, :max_context_len]
            .transpose(1, 2).float() for i in (0, 1))  # [D, kv_heads, N, hd]
    out = sdpa(q.float().unsqueeze(2), k, v, attn_mask=live[:, None, None, :max_context_len],
               scale=scale)  # [D, H, 1, hd]
    return out.squeeze(2).to(q.dtype)
