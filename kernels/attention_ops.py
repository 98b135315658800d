"""Attention for one layer over a step's tokens: the Triton and torch versions.

Meta-level wrappers that read page tables, lengths and store positions from the step's
``BatchMeta``: ``decode`` takes the decode rows' queries [D, H, head_dim] and returns their
output; ``prefill`` takes the prefill rows' q [P, H, head_dim], k, v [P, kv_heads, head_dim];
``kv_store`` writes all T new tokens' K/V into the pool layer. ``backends`` picks by name.
"""
from __future__ import annotations

import torch

from manylora.kernels.batch_meta import BatchMeta
from manylora.kernels.kv_store import kv_store, kv_store_ref
from manylora.kernels.paged_decode_attention import (paged_decode_attention,
                                                     paged_decode_attention_ref)
from manylora.kernels.prefill_attention import prefill_attention, prefill_attention_ref


def decode_attention_triton(q: torch.Tensor, pool_layer: torch.Tensor, meta: BatchMeta,
                            scale: float) -> torch.Tensor:
    return paged_decode_attention(q, pool_layer, meta.kv_page_table, meta.context_lens,
                                  tokens_per_page=meta.tokens_per_page, scale=scale,
                                  max_context_len=meta.max_context_len)


def decode_attention_torch(q: torch.Tensor, pool_layer: torch.Tensor, meta: BatchMeta,
                           scale: float) -> torch.Tensor:
    return paged_decode_attention_ref(q, pool_layer, meta.kv_page_table, meta.context_lens,
                                      tokens_per_page=meta.tokens_per_page, scale=scale,
                                      max_context_len=meta.max_context_len)


def prefill_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             meta: BatchMeta, scale: float) -> torch.Tensor:
    return prefill_attention(q, k, v, meta.cu_seqlens, max_seqlen=meta.max_prefill_len,
                             scale=scale)


def prefill_attention_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            meta: BatchMeta, scale: float) -> torch.Tensor:
    return prefill_attention_ref(q, k, v, meta.cu_seqlens, max_seqlen=meta.max_prefill_len,
                                 scale=scale)


def kv_store_triton(k: torch.Tensor, v: torch.Tensor, pool_layer: torch.Tensor,
                    meta: BatchMeta) -> None:
    kv_store(k, v, pool_layer, meta.kv_store_pages, meta.kv_store_slots,
             tokens_per_page=meta.tokens_per_page)


def kv_store_torch(k: torch.Tensor, v: torch.Tensor, pool_layer: torch.Tensor,
                   meta: BatchMeta) -> None:
    kv_store_ref(k, v, pool_layer, meta.kv_store_pages, meta.kv_store_slots,
                 tokens_per_page=meta.tokens_per_page)
