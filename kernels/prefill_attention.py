"""Prefill attention: causal attention over variable-length sequences packed in one batch.

Requests' new tokens are packed back to back (``cu_seqlens``); prefill always starts at
position 0 (a preempted request recomputes), so attention reads the freshly projected K/V
directly, not the pool. One program computes a block of one request's queries for one head with
an online softmax over key blocks up to the causal diagonal; GQA maps query head h to KV head
h // group.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from manylora.kernels.launch_checks import (FLOAT_DTYPES, INDEX_DTYPE, KernelInputError,
                                            check_tensor, next_pow2)
from manylora.kernels.torch_sdpa import sdpa


@triton.jit
def _prefill_attention_kernel(
    # tensors: q [T, H, HEAD_DIM], k and v [T, KV_HEADS, HEAD_DIM], out [T, H, HEAD_DIM]
    q_ptr, k_ptr, v_ptr, out_ptr,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
    # per request: token boundaries [num_reqs + 1]
    cu_seqlens_ptr,
    # scalars
    scale,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):
    mb = tl.program_id(0)
    req = tl.program_id(1)
    head = tl.program_id(2)
    start = tl.load(cu_seqlens_ptr + req)
    seqlen = tl.load(cu_seqlens_ptr + req + 1) - start
    m0 = mb * BLOCK_M
    if m0 >= seqlen:
        return
    kv_head = head // GROUP
    offs_m = m0 + tl.arange(0, BLOCK_M)  # positions within the request
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    mask_md = (offs_m < seqlen)[:, None] & mask_d[None, :]
    tok_m = (start + offs_m).to(tl.int64)
    q = tl.load(q_ptr + tok_m[:, None] * stride_qt + head * stride_qh + offs_d[None, :],
                mask=mask_md, other=0.0)  # [BLOCK_M, BLOCK_D]
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for n0 in range(0, tl.minimum(m0 + BLOCK_M, seqlen), BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_nd = (offs_n < seqlen)[:, None] & mask_d[None, :]
        tok_n = (start + offs_n).to(tl.int64)
        k = tl.load(k_ptr + tok_n[:, None] * stride_kt + kv_head * stride_kh + offs_d[None, :],
                    mask=mask_nd, other=0.0)  # [BLOCK_N, BLOCK_D]
        v = tl.load(v_ptr + tok_n[:, None] * stride_vt + kv_head * stride_vh + offs_d[None, :],
                    mask=mask_nd, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale  # [BLOCK_M, BLOCK_N]
        causal = (offs_n[None, :] <= offs_m[:, None]) & (offs_n < seqlen)[None, :]
        s = tl.where(causal, s, float("-inf"))
        # Key 0 is in the first block and visible to every query, so m_new is finite.
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    out = acc / l_i[:, None]
    tl.store(out_ptr + tok_m[:, None] * stride_ot + head * stride_oh + offs_d[None, :],
             out.to(out_ptr.dtype.element_ty), mask=mask_md)


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           cu_seqlens: torch.Tensor) -> int:
    """Validates the packed inputs; returns the group size (query heads per KV head)."""
    device = q.device
    check_tensor("q", q, ndim=3, dtypes=FLOAT_DTYPES, device=device)
    check_tensor("k", k, ndim=3, dtypes=(q.dtype,), device=device)
    check_tensor("v", v, ndim=3, dtypes=(q.dtype,), device=device)
    if k.shape != v.shape or k.shape[0] != q.shape[0] or k.shape[2] != q.shape[2]:
        raise KernelInputError(f"k {tuple(k.shape)} and v {tuple(v.shape)} must be "
                               f"[T, kv_heads, head_dim] matching q {tuple(q.shape)}")
    if k.shape[1] == 0 or q.shape[1] % k.shape[1]:
        raise KernelInputError(f"{q.shape[1]} query heads are not a multiple of "
                               f"{k.shape[1]} KV heads")
    check_tensor("cu_seqlens", cu_seqlens, ndim=1, dtypes=(INDEX_DTYPE,), device=device)
    if cu_seqlens.shape[0] < 1:
        raise KernelInputError("cu_seqlens needs at least one entry")
    return q.shape[1] // k.shape[1]


def prefill_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      cu_seqlens: torch.Tensor, *, max_seqlen: int,
                      scale: float) -> torch.Tensor:
    """Causal attention output [T, H, head_dim] for requests packed by ``cu_seqlens``.

    q: [T, H, head_dim]; k, v: [T, kv_heads, head_dim] (views with strided tokens are fine);
    cu_seqlens: [num_reqs + 1] int32 from 0 to T; the longest request has ``max_seqlen`` tokens.
    """
    group = _check(q, k, v, cu_seqlens)
    num_tokens, num_heads, head_dim = q.shape
    out = torch.empty(num_tokens, num_heads, head_dim, dtype=q.dtype, device=q.device)
    num_reqs = cu_seqlens.shape[0] - 1
    if num_tokens == 0 or num_reqs == 0:
        return out
    # fp32 tiles of 64 with head_dim 128 need ~180 KB of shared memory, more than an A100 has
    block = max(16, min(32 if q.dtype == torch.float32 else 64, next_pow2(max_seqlen)))
    _prefill_attention_kernel[(triton.cdiv(max_seqlen, block), num_reqs, num_heads)](
        q, k, v, out, q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0),
        v.stride(1), out.stride(0), out.stride(1), cu_seqlens, scale,
        GROUP=group, HEAD_DIM=head_dim, BLOCK_M=block, BLOCK_N=block,
        BLOCK_D=max(16, next_pow2(head_dim)),
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    return out


def prefill_attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          cu_seqlens: torch.Tensor, *, max_seqlen: int,
                          scale: float) -> torch.Tensor:
    """Plain torch, fp32: scaled_dot_product_attention per request."""
    _check(q, k, v, cu_seqlens)
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        qr, kr, vr = (t[start:end].float().transpose(0, 1) for t in (q, k, v))  # [heads, L, hd]
        o = sdpa(qr, kr, vr, is_causal=True, scale=scale)
        out[start:end] = o.transpose(0, 1).to(q.dtype)
    return out
