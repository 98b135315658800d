"""Backends by name over a whole step built with BatchMeta.build on the engine's pool layout.

Adapters with different ranks on different targets are packed exactly as
``engine.model_shape.PoolLayout.adapter_layout`` says, KV pages share the pool with them, and
every backend must give the dense float64 answer for every target and for attention.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kernel_cases import INTERPRET, assert_close, dense_attention
from manylora.engine.model_shape import TARGETS, ModelShape, PoolLayout
from manylora.kernels.backends import (ATTENTION_BACKENDS, LORA_BACKENDS, UnknownBackendError,
                                       attention_backend, default_backend_name, lora_backend)
from manylora.kernels.batch_meta import BatchMeta

SHAPE = ModelShape("tiny-gqa", num_layers=2, hidden_size=48, intermediate_size=67,
                   num_heads=4, num_kv_heads=2, head_dim=12, vocab_size=11)
LAYOUT = PoolLayout(SHAPE, tokens_per_page=3)
ADAPTER_RANKS = [  # per adapter: rank per target; absent targets are not adapted
    {"q": 8, "v": 8}, {t: 16 for t in TARGETS}, {"k": 1, "o": 1, "down": 1},
    {"gate": 64, "up": 64}, {"q": 4, "down": 128},
]
PREFILL = [(5, 0), (3, 0), (1, -1), (7, 3), (2, 1)]  # (new tokens, slot)
DECODE = [(4, 1), (9, 2), (1, -1), (2, 4), (6, 0)]   # (context incl. new token, slot)

_interpreted = pytest.mark.skipif(not INTERPRET, reason="Triton interpreter off")
TRITON = [pytest.param("cpu", torch.float32, id="cpu-fp32", marks=_interpreted),
          pytest.param("cpu", torch.float16, id="cpu-fp16", marks=_interpreted),
          pytest.param("cuda", torch.bfloat16, id="cuda-bf16", marks=pytest.mark.gpu)]
TORCH = [pytest.param("cpu", torch.float32, id="cpu-fp32"),
         pytest.param("cpu", torch.bfloat16, id="cpu-bf16")]
LORA_CASES = [pytest.param("triton", *p.values, id=f"triton-{p.id}", marks=p.marks)
              for p in TRITON] + [
    pytest.param(name, *p.values, id=f"{name}-{p.id}") for name in ("torch", "padded")
    for p in TORCH]
ATTN_CASES = [pytest.param("triton", *p.values, id=f"triton-{p.id}", marks=p.marks)
              for p in TRITON] + [pytest.param("torch", *p.values, id=f"torch-{p.id}")
                                  for p in TORCH]


class Step:
    """A pool with packed adapters and KV pages for PREFILL and DECODE, and its BatchMeta."""

    def __init__(self, device: str, dtype: torch.dtype, seed: int = 0):
        rng = np.random.default_rng(seed)
        tpp, page_elems = LAYOUT.tokens_per_page, LAYOUT.page_elems
        layouts = [LAYOUT.adapter_layout(r) for r in ADAPTER_RANKS]
        kv_counts = [LAYOUT.kv_pages(n) for n, _ in PREFILL] + [LAYOUT.kv_pages(n)
                                                                for n, _ in DECODE]
        num_pages = sum(a.num_pages for a in layouts) + sum(kv_counts) + 4
        free = [int(p) for p in rng.permutation(num_pages)]
        pool = torch.full((SHAPE.num_layers, num_pages, page_elems), float("nan"),
                          dtype=torch.float64)
        layer = pool[1]  # [num_pages, page_elems]
        self.weights = []  # per slot: {target: (A [r, d_in], B^T [r, d_out], scale)}
        adapter_pages, ranks, a_offs, b_offs, scales = [], [], [], [], []
        for layout in layouts:
            pages = [free.pop() for _ in range(layout.num_pages)]
            flat = np.full(layout.num_pages * page_elems, np.nan)
            mats = {}
            for s in layout.slices:
                a = _as(rng.standard_normal((s.rank, s.d_in)) / np.sqrt(s.d_in), dtype)
                b = _as(rng.standard_normal((s.rank, s.d_out)) / np.sqrt(s.rank), dtype)
                flat[s.a_offset:s.a_offset + a.size] = a.reshape(-1)
                flat[s.b_offset:s.b_offset + b.size] = b.reshape(-1)
                mats[s.target] = (a, b, float(rng.uniform(0.5, 2.0)))
            for i, page in enumerate(pages):
                layer[page] = torch.from_numpy(flat[i * page_elems:(i + 1) * page_elems])
            self.weights.append(mats)
            by_target = {s.target: s for s in layout.slices}
            adapter_pages.append(pages)
            ranks.append([by_target[t].rank if t in by_target else 0 for t in TARGETS])
            a_offs.append([by_target[t].a_offset if t in by_target else 0 for t in TARGETS])
            b_offs.append([by_target[t].b_offset if t in by_target else 0 for t in TARGETS])
            scales.append([mats[t][2] if t in mats else 0.0 for t in TARGETS])
        kv_pages = [[free.pop() for _ in range(n)] for n in kv_counts]
        self.meta = BatchMeta.build(
            prefill_lens=[n for n, _ in PREFILL], prefill_slots=[s for _, s in PREFILL],
            prefill_kv_pages=kv_pages[:len(PREFILL)],
            decode_context_lens=[n for n, _ in DECODE], decode_slots=[s for _, s in DECODE],
            decode_kv_pages=kv_pages[len(PREFILL):], adapter_pages=adapter_pages,
            lora_ranks=ranks, lora_a_offsets=a_offs, lora_b_offsets=b_offs,
            lora_scales=scales, tokens_per_page=tpp, device=device)
        self.kv_pages = kv_pages
        self.pool = pool.to(dtype).to(device)
        self.rng = rng
        self.dtype, self.device = dtype, device

    def random(self, *shape: int) -> torch.Tensor:
        return torch.tensor(self.rng.standard_normal(shape), dtype=self.dtype).to(self.device)


def _as(values: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """The float64 values a tensor of ``dtype`` holds for ``values``."""
    return torch.tensor(values, dtype=dtype).double().numpy()


@pytest.mark.parametrize("name,device,dtype", LORA_CASES)
def test_lora_backend_matches_dense_on_every_target(name, device, dtype):
    step = Step(device, dtype)
    slots = step.meta.token_slots.tolist()
    for target_index, target in enumerate(TARGETS):
        d_in, d_out = SHAPE.target_dims(target)
        x = step.random(len(slots), d_in)
        y0 = step.random(len(slots), d_out)
        y = y0.clone()
        lora_backend(name).apply(y, x, step.pool[1], step.meta, target_index)
        expected = y0.double().cpu().numpy()
        xs = x.double().cpu().numpy()
        for t, slot in enumerate(slots):
            if slot >= 0 and target in step.weights[slot]:
                a, b, scale = step.weights[slot][target]
                expected[t] += scale * (xs[t] @ a.T) @ b
        assert_close(y, torch.from_numpy(expected), dtype)


@pytest.mark.parametrize("name,device,dtype", ATTN_CASES)
def test_attention_backend_stores_and_attends(name, device, dtype):
    step = Step(device, dtype, seed=1)
    meta, backend = step.meta, attention_backend(name)
    heads, kv_heads, hd = SHAPE.num_heads, SHAPE.num_kv_heads, SHAPE.head_dim
    pool_layer = step.pool[1]
    kv5 = pool_layer.view(-1, 2, LAYOUT.tokens_per_page, kv_heads, hd)
    # earlier context of decode requests, written by the test itself
    history = []
    for (ctx, _), pages in zip(DECODE, step.kv_pages[len(PREFILL):]):
        k_old, v_old = step.random(ctx - 1, kv_heads, hd), step.random(ctx - 1, kv_heads, hd)
        for p in range(ctx - 1):
            kv5[pages[p // LAYOUT.tokens_per_page], 0, p % LAYOUT.tokens_per_page] = k_old[p]
            kv5[pages[p // LAYOUT.tokens_per_page], 1, p % LAYOUT.tokens_per_page] = v_old[p]
        history.append((k_old, v_old))
    num_tokens, split = meta.num_tokens, meta.num_prefill_tokens
    q = step.random(num_tokens, heads, hd)
    k, v = step.random(num_tokens, kv_heads, hd), step.random(num_tokens, kv_heads, hd)
    backend.kv_store(k, v, pool_layer, meta)
    scale = hd ** -0.5
    out_prefill = backend.prefill(q[:split], k[:split], v[:split], meta, scale)
    out_decode = backend.decode(q[split:], pool_layer, meta, scale)
    as64 = lambda t: t.double().cpu().numpy()  # noqa: E731
    start = 0
    for n, _ in PREFILL:
        rows = slice(start, start + n)
        expected = dense_attention(as64(q[rows]), as64(k[rows]), as64(v[rows]), scale, True)
        assert_close(out_prefill[rows], torch.from_numpy(expected), dtype)
        start += n
    for d, (k_old, v_old) in enumerate(history):
        keys = np.concatenate([as64(k_old), as64(k[split + d:split + d + 1])])
        values = np.concatenate([as64(v_old), as64(v[split + d:split + d + 1])])
        expected = dense_attention(as64(q[split + d:split + d + 1]), keys, values, scale, False)
        assert_close(out_decode[d], torch.from_numpy(expected[0]), dtype)


def test_registries_and_errors():
    assert set(LORA_BACKENDS) == {"triton", "torch", "padded"}
    assert set(ATTENTION_BACKENDS) == {"triton", "torch"}
    assert default_backend_name(torch.device("cpu")) == "torch"
    assert default_backend_name("cuda") == "triton"
    with pytest.raises(UnknownBackendError, match="unknown LoRA backend 'bgmv'.*padded"):
        lora_backend("bgmv")
    with pytest.raises(ValueError, match="unknown attention backend"):
        attention_backend("flash")
