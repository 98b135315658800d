"""The plain-torch attention path the engine runs on CPU: one plan per step, used by every layer.

``TorchAttentionStep(meta)`` reads the step's decode page tables and context lengths to the
host once. Decode attention then runs request by request over exactly its own context: in
place when its KV pages are one ascending run (with one token per page, K and V are then
strided views of the pool), else over a copy of just its pages. Nothing is padded to the
longest context, so no padding has to be zeroed and no work is spent on it; at the batch sizes
a CPU serves, one SDPA call per request costs less than copying every context padded (the
reference's route). Prefill attention is the reference's per-request causal SDPA, and the KV
store the reference's row copy with the store rows computed once per step.
"""
from __future__ import annotations

import numpy as np
import torch

from manylora.kernels.batch_meta import BatchMeta
from manylora.kernels.paged_decode_attention import kv_geometry
from manylora.kernels.torch_sdpa import sdpa


class TorchAttentionStep:
    """One step's decode/prefill attention and KV store for every layer."""

    def __init__(self, meta: BatchMeta) -> None:
        self.meta = meta
        tpp = meta.tokens_per_page
        self.tokens_per_page = tpp
        self.prefill_bounds = meta.cu_seqlens.tolist()
        contexts = meta.context_lens.tolist()
        table = meta.kv_page_table.cpu().numpy().astype(np.int64)  # [D, max_pages]
        # per decode request: (context length, first page if its pages are one run else -1,
        # its page ids [n_pages] for a copy otherwise)
        self.requests: list[tuple[int, int, torch.Tensor | None]] = []
        for d, n in enumerate(contexts):
            pages = table[d, :-(-n // tpp)]
            if len(pages) < 2 or (np.diff(pages) == 1).all():
                self.requests.append((n, int(pages[0]), None))
            else:
                self.requests.append((n, -1, torch.from_numpy(pages).to(meta.device)))
        pages = meta.kv_store_pages.long()
        live = (pages >= 0).nonzero().squeeze(1)  # [n] tokens whose K/V are stored
        self.store_tokens = live
        self.store_rows = pages[live] * (2 * tpp) + meta.kv_store_slots.long()[live]

    def decode(self, q: torch.Tensor, pool_layer: torch.Tensor, scale: float) -> torch.Tensor:
        """q [D, H, head_dim] of the decode rows -> attention output [D, H, head_dim]."""
        kv_heads, _ = kv_geometry(q, pool_layer, self.tokens_per_page)
        head_dim, tpp = q.shape[2], self.tokens_per_page
        out = torch.empty_like(q)
        exact = q.dtype == torch.float32
        for d, (n, first, pages) in enumerate(self.requests):
            num_pages = -(-n // tpp)
            kv = pool_layer[first:first + num_pages] if pages is None \
                else pool_layer.index_select(0, pages)
            kv = kv.view(num_pages, 2, tpp, kv_heads, head_dim)
            # [kv_heads, n, head_dim] each: views for one token per page, else copies
            k, v = (kv[:, i].reshape(num_pages * tpp, kv_heads, head_dim)[:n].transpose(0, 1)
                    for i in (0, 1))
            qd = q[d].unsqueeze(1)  # [H, 1, head_dim]
            if not exact:
                qd, k, v = qd.float(), k.float(), v.float()
            out[d] = sdpa(qd, k, v, scale=scale).squeeze(1).to(q.dtype)
        return out

    def prefill(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                scale: float) -> torch.Tensor:
        """Causal attention per prefill request: q [P, H, hd], k, v [P, kv_heads, hd]."""
        out = torch.empty_like(q, memory_format=torch.contiguous_format)
        bounds = self.prefill_bounds
        for start, end in zip(bounds[:-1], bounds[1:]):
            qr, kr, vr = (t[start:end].float().transpose(0, 1) for t in (q, k, v))
            out[start:end] = sdpa(qr, kr, vr, is_causal=True, scale=scale).transpose(0, 1)
        return out

    def kv_store(self, k: torch.Tensor, v: torch.Tensor, pool_layer: torch.Tensor) -> None:
        """Write the step's new K/V [T, kv_heads, hd] to their pool slots."""
        rows = pool_layer.view(-1, k.shape[1] * k.shape[2])  # [num_pages * 2 * tpp, kv_width]
        live, row_k = self.store_tokens, self.store_rows
        width = k.shape[1] * k.shape[2]
        rows.index_copy_(0, row_k, k.reshape(-1, width).index_select(0, live))
        rows.index_copy_(0, row_k + self.tokens_per_page,
                         v.reshape(-1, width).index_select(0, live))
