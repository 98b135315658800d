"""Scaled dot-product attention for the plain-torch paths, on every torch the project supports.

``F.scaled_dot_product_attention`` takes ``enable_gqa`` (query heads sharing K/V heads) from
torch 2.5 on; with an older torch (the project supports >= 2.4) the K/V heads are repeated to
the query heads first, which gives the same result at the cost of one copy of K and V.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _torch_has_enable_gqa() -> bool:
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    return (major, minor) >= (2, 5)


HAS_ENABLE_GQA = _torch_has_enable_gqa()


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float,
         attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
    """Attention of q [..., H, L, hd] over k, v [..., kv_heads, S, hd] (H a multiple of
    kv_heads; query head h reads K/V head h // (H / kv_heads)). Returns [..., H, L, hd]."""
    group = q.shape[-3] // k.shape[-3]
    if group == 1:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                                              scale=scale)
    if HAS_ENABLE_GQA:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                                              scale=scale, enable_gqa=True)
    k, v = (t.repeat_interleave(group, dim=-3) for t in (k, v))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                                          scale=scale)
