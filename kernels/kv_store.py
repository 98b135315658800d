"""KV store: write each new token's K and V into its pool page.

The per-layer pool view ``[num_pages, page_elems]`` is ``[num_pages, 2 (K, V), tokens_per_page,
kv_heads, head_dim]``; token t goes to page ``pages[t]``, slot ``slots[t]`` (both from the
step's BatchMeta). A negative page skips the token. One program copies one token's K and V.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from manylora.kernels.launch_checks import (FLOAT_DTYPES, KernelInputError, check_index,
                                            check_tensor, next_pow2)


@triton.jit
def _kv_store_kernel(
    # tensors: k, v [T, KV_HEADS, HEAD_DIM]; pool [num_pages, PAGE_ELEMS]
    k_ptr, v_ptr, pool_ptr, stride_kt, stride_kh, stride_vt, stride_vh,
    # per token: destination page and slot [T]
    pages_ptr, slots_ptr,
    # geometry
    TOKENS_PER_PAGE: tl.constexpr, PAGE_ELEMS: tl.constexpr, KV_HEADS: tl.constexpr,
    HEAD_DIM: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
):
    t = tl.program_id(0)
    page = tl.load(pages_ptr + t)
    if page < 0:
        return
    slot = tl.load(slots_ptr + t)
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_h < KV_HEADS)[:, None] & (offs_d < HEAD_DIM)[None, :]
    src = offs_h[:, None] * stride_kh + offs_d[None, :]
    k = tl.load(k_ptr + t.to(tl.int64) * stride_kt + src, mask=mask)
    src = offs_h[:, None] * stride_vh + offs_d[None, :]
    v = tl.load(v_ptr + t.to(tl.int64) * stride_vt + src, mask=mask)
    dst = (page.to(tl.int64) * PAGE_ELEMS + slot * (KV_HEADS * HEAD_DIM)
           + offs_h[:, None] * HEAD_DIM + offs_d[None, :])  # [BLOCK_H, BLOCK_D]
    tl.store(pool_ptr + dst, k, mask=mask)
    tl.store(pool_ptr + dst + TOKENS_PER_PAGE * KV_HEADS * HEAD_DIM, v, mask=mask)


def _check(k: torch.Tensor, v: torch.Tensor, pool_layer: torch.Tensor, pages: torch.Tensor,
           slots: torch.Tensor, tokens_per_page: int) -> None:
    device = k.device
    check_tensor("k", k, ndim=3, dtypes=FLOAT_DTYPES, device=device)
    check_tensor("v", v, ndim=3, dtypes=(k.dtype,), device=device)
    check_tensor("pool_layer", pool_layer, ndim=2, dtypes=(k.dtype,), device=device)
    if not pool_layer.is_contiguous():
        raise KernelInputError("pool_layer must be contiguous")
    if k.shape != v.shape:
        raise KernelInputError(f"k {tuple(k.shape)} and v {tuple(v.shape)} differ in shape")
    num_tokens, kv_heads, head_dim = k.shape
    if pool_layer.shape[1] != 2 * tokens_per_page * kv_heads * head_dim:
        raise KernelInputError(f"pool_layer pages hold {pool_layer.shape[1]} elements, not "
                               f"2 * {tokens_per_page} * {kv_heads} * {head_dim}")
    check_index("pages", pages, num_tokens, device)
    check_index("slots", slots, num_tokens, device)


def kv_store(k: torch.Tensor, v: torch.Tensor, pool_layer: torch.Tensor, pages: torch.Tensor,
             slots: torch.Tensor, *, tokens_per_page: int) -> None:
    """Copy k, v [T, kv_heads, head_dim] into ``pool_layer`` at (pages[t], slots[t])."""
    _check(k, v, pool_layer, pages, slots, tokens_per_page)
    num_tokens, kv_heads, head_dim = k.shape
    if num_tokens == 0:
        return
    _kv_store_kernel[(num_tokens,)](
        k, v, pool_layer, k.stride(0), k.stride(1), v.stride(0), v.stride(1), pages, slots,
        TOKENS_PER_PAGE=tokens_per_page, PAGE_ELEMS=pool_layer.shape[1], KV_HEADS=kv_heads,
        HEAD_DIM=head_dim, BLOCK_H=next_pow2(kv_heads), BLOCK_D=next_pow2(head_dim))


def kv_store_ref(k: torch.Tensor, v: torch.Tensor, pool_layer: torch.Tensor, pages: torch.Tensor,
                 slots: torch.Tensor, *, tokens_per_page: int) -> None:
    """Plain torch: one row copy each for K and V."""
    _check(k, v, pool_layer, pages, slots, tokens_per_page)
    rows = pool_layer.view(-1, k.shape[1] * k.shape[2])  # [num_pages * 2 * tpp, kv_width]
    live = (pages >= 0).nonzero().squeeze(1)
    row_k = pages.long()[live] * (2 * tokens_per_page) + slots.long()[live]
    rows.index_copy_(0, row_k, k.index_select(0, live).reshape(live.shape[0], -1))
    rows.index_copy_(0, row_k + tokens_per_page, v.index_select(0, live).reshape(live.shape[0], -1))
