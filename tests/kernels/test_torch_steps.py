"""The engine's CPU paths, planned once per step (``lora_torch``, ``attention_torch``), against
the dense float64 truth.

A pool holds several adapters (different ranks on different targets, some targets not
adapted) packed exactly as ``PoolLayout.adapter_layout`` says, and KV pages for prefill and
decode requests; unused elements are NaN so any stray read poisons the result. Pages are laid
out either as ascending runs (adapters and KV read in place) or scattered (copied), or mixed.
Every layer-style call (q|k|v, o, gate|up, down) must add exactly each target's LoRA into its
columns, and attention must match softmax attention over each request's own context.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kernel_cases import assert_close, dense_attention
from manylora.engine.model_shape import TARGETS, ModelShape, PoolLayout
from manylora.kernels import torch_sdpa
from manylora.kernels.attention_torch import TorchAttentionStep
from manylora.kernels.backends import lora_backend
from manylora.kernels.batch_meta import BatchMeta
from manylora.kernels.lora_torch import TorchLoraStep, token_segments
from manylora.kernels.paged_decode_attention import paged_decode_attention_ref
from manylora.kernels.prefill_attention import prefill_attention_ref

MHA = ModelShape("tiny-mha", num_layers=2, hidden_size=32, intermediate_size=45, num_heads=4,
                 num_kv_heads=4, head_dim=8, vocab_size=11)
GQA = ModelShape("tiny-gqa", num_layers=2, hidden_size=48, intermediate_size=67, num_heads=4,
                 num_kv_heads=2, head_dim=12, vocab_size=11)
ADAPTERS = [  # per adapter: rank per target (absent: not adapted)
    {t: 8 for t in TARGETS},                       # q|k|v and gate|up each one group
    {"q": 4, "v": 4, "down": 2},                   # q and v not adjacent: no group
    {"q": 16, "k": 8, "v": 8, "o": 1},             # k|v grouped, q alone
    {"gate": 3, "up": 5, "down": 64},              # gate and up differ in rank
    {"q": 4, "k": 4, "v": 4},                      # v's scale differs: q|k grouped, v alone
]
ODD_SCALE = (4, "v")
PREFILL = [(5, 0), (3, 0), (1, -1), (7, 3), (2, 1)]   # (new tokens, slot)
DECODE = [(4, 2), (9, 2), (1, -1), (2, 1), (6, 0)]    # (context incl. new token, slot)
CALLS = [("q", "k", "v"), ("o",), ("gate", "up"), ("down",)]


class Pool:
    """Adapters and KV pages in a NaN-filled pool [2, num_pages, page_elems] and the step's
    BatchMeta; ``layout`` is "runs" (ascending page runs), "scattered" or "mixed"."""

    def __init__(self, shape: ModelShape, tpp: int, layout: str, dtype: torch.dtype,
                 seed: int = 0):
        self.shape = shape
        self.pool_layout = PoolLayout(shape, tpp)
        rng = np.random.default_rng(seed)
        self.rng, self.dtype = rng, dtype
        page_elems = self.pool_layout.page_elems
        adapters = [self.pool_layout.adapter_layout(r) for r in ADAPTERS]
        kv_counts = [self.pool_layout.kv_pages(n) for n, _ in PREFILL + DECODE]
        counts = [a.num_pages for a in adapters] + kv_counts
        num_pages = sum(counts) + 7
        order = list(rng.permutation(num_pages)) if layout == "scattered" else \
            list(range(3, num_pages))
        lists = []
        for i, count in enumerate(counts):
            if layout == "mixed" and i % 2:
                lists.append([order.pop(int(rng.integers(len(order)))) for _ in range(count)])
            else:
                lists.append([order.pop(0) for _ in range(count)])
        pool = torch.full((2, num_pages, page_elems), float("nan"), dtype=torch.float64)
        self.weights = []  # per slot, per layer: {target: (A [r, d_in], B^T [r, d_out])}
        self.scales = []
        meta_rows = {"ranks": [], "a": [], "b": [], "scales": []}
        for slot, (adapter, pages) in enumerate(zip(adapters, lists)):
            per_layer, scales = [], {}
            for layer in range(2):
                flat = np.full(adapter.num_pages * page_elems, np.nan)
                mats = {}
                for s in adapter.slices:
                    a = _as(rng.standard_normal((s.rank, s.d_in)) / np.sqrt(s.d_in), dtype)
                    b = _as(rng.standard_normal((s.rank, s.d_out)) / np.sqrt(s.rank), dtype)
                    flat[s.a_offset:s.a_offset + a.size] = a.reshape(-1)
                    flat[s.b_offset:s.b_offset + b.size] = b.reshape(-1)
                    mats[s.target] = (a, b)
                    # alpha / rank: one scale per adapter, as PEFT gives equal ranks
                    scales.setdefault(s.target, 0.5 + 0.25 * slot + (ODD_SCALE == (
                        slot, s.target)))
                for i, page in enumerate(pages):
                    pool[layer, page] = torch.from_numpy(flat[i * page_elems:(i + 1) * page_elems])
                per_layer.append(mats)
            self.weights.append(per_layer)
            self.scales.append(scales)
            by_target = {s.target: s for s in adapter.slices}
            meta_rows["ranks"].append([by_target[t].rank if t in by_target else 0
                                       for t in TARGETS])
            meta_rows["a"].append([by_target[t].a_offset if t in by_target else 0
                                   for t in TARGETS])
            meta_rows["b"].append([by_target[t].b_offset if t in by_target else 0
                                   for t in TARGETS])
            meta_rows["scales"].append([scales.get(t, 0.0) for t in TARGETS])
        self.kv_pages = lists[len(adapters):]
        self.adapter_pages = lists[:len(adapters)]
        self.meta = BatchMeta.build(
            prefill_lens=[n for n, _ in PREFILL], prefill_slots=[s for _, s in PREFILL],
            prefill_kv_pages=self.kv_pages[:len(PREFILL)],
            decode_context_lens=[n for n, _ in DECODE], decode_slots=[s for _, s in DECODE],
            decode_kv_pages=self.kv_pages[len(PREFILL):], adapter_pages=self.adapter_pages,
            lora_ranks=meta_rows["ranks"], lora_a_offsets=meta_rows["a"],
            lora_b_offsets=meta_rows["b"], lora_scales=meta_rows["scales"],
            tokens_per_page=tpp, device="cpu")
        self.pool = pool.to(dtype)
        self.dims = tuple(shape.target_dims(t) for t in TARGETS)

    def random(self, *shape: int) -> torch.Tensor:
        return torch.tensor(self.rng.standard_normal(shape), dtype=self.dtype)


def _as(values: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """The float64 values a tensor of ``dtype`` holds for ``values``."""
    return torch.tensor(values, dtype=dtype).double().numpy()


def _expected(p: Pool, y0: torch.Tensor, x: torch.Tensor, layer: int,
              targets: tuple[str, ...]) -> torch.Tensor:
    expected = y0.double().numpy().copy()
    xs = x.double().numpy()
    col = 0
    for target in targets:
        d_out = p.shape.target_dims(target)[1]
        for t, slot in enumerate(p.meta.token_slots.tolist()):
            mats = p.weights[slot][layer] if slot >= 0 else {}
            if target in mats:
                a, b = mats[target]
                expected[t, col:col + d_out] += p.scales[slot][target] * (xs[t] @ a.T) @ b
        col += d_out
    return torch.from_numpy(expected)


@pytest.mark.parametrize("shape", [MHA, GQA], ids=["mha", "gqa"])
@pytest.mark.parametrize("layout", ["runs", "scattered", "mixed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("backend", ["torch", "padded"])
def test_lora_step_matches_dense_in_every_layer_and_call(shape, layout, dtype, backend):
    p = Pool(shape, 1 if layout != "mixed" else 2, layout, dtype)
    step = lora_backend(backend).begin_step(p.meta, p.pool, p.dims)
    assert isinstance(step, TorchLoraStep) == (backend == "torch")
    for layer in (1, 0, 1):  # back to an earlier layer: the copy of scattered pages follows
        for call in CALLS:
            d_in = shape.target_dims(call[0])[0]
            width = sum(shape.target_dims(t)[1] for t in call)
            x = p.random(p.meta.num_tokens, d_in)
            y0 = p.random(p.meta.num_tokens, width)
            y = y0.clone()
            step.apply(y, x, layer, tuple(TARGETS.index(t) for t in call))
            assert_close(y, _expected(p, y0, x, layer, call), dtype)


def test_groups_join_only_targets_that_share_one_strided_view():
    p = Pool(MHA, 1, "runs", torch.float32)
    step = TorchLoraStep(p.meta, p.pool, p.dims)
    qkv = step._plan((0, 1, 2))
    assert [op[0] for op in qkv[0]] == [3]      # all three rank 8: one group
    assert [op[0] for op in qkv[1]] == [1, 1]   # q and v with k missing between them
    assert [op[0] for op in qkv[2]] == [1, 2]   # q rank 16, then k|v rank 8
    assert qkv[3] == [] and [op[0] for op in qkv[4]] == [2, 1]
    gate_up = step._plan((4, 5))
    assert [op[0] for op in gate_up[0]] == [2] and [op[0] for op in gate_up[3]] == [1, 1]
    g = Pool(GQA, 1, "runs", torch.float32)
    gqa = TorchLoraStep(g.meta, g.pool, g.dims)._plan((0, 1, 2))
    assert [op[0] for op in gqa[0]] == [1, 2]   # q is wider than k and v under GQA


def test_in_place_and_copied_slots_follow_the_page_layout():
    p = Pool(MHA, 1, "runs", torch.float32)
    runs = TorchLoraStep(p.meta, p.pool, p.dims)
    assert min(runs._in_place) >= 0 and runs._copy_index.numel() == 0
    scattered = Pool(MHA, 1, "scattered", torch.float32, seed=3)
    step = TorchLoraStep(scattered.meta, scattered.pool, scattered.dims)
    copied = [s for s, base in enumerate(step._in_place) if base < 0]
    assert copied and step._copy_index.numel() == sum(len(scattered.adapter_pages[s])
                                                      for s in copied)


def test_token_segments_are_runs_of_one_slot():
    assert token_segments([0, 0, -1, 2, 2, 2, 0, -1, -1]) == [(0, 0, 2), (2, 3, 6), (0, 6, 7)]
    assert token_segments([]) == [] and token_segments([-1]) == []


@pytest.mark.parametrize("shape", [MHA, GQA], ids=["mha", "gqa"])
@pytest.mark.parametrize("layout,tpp", [("runs", 1), ("scattered", 1), ("mixed", 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_attention_step_stores_and_attends(shape, layout, tpp, dtype):
    p = Pool(shape, tpp, layout, dtype, seed=1)
    meta, step = p.meta, TorchAttentionStep(p.meta)
    heads, kv_heads, hd = shape.num_heads, shape.num_kv_heads, shape.head_dim
    pool_layer = p.pool[1]
    kv5 = pool_layer.view(-1, 2, tpp, kv_heads, hd)
    history = []
    for (ctx, _), pages in zip(DECODE, p.kv_pages[len(PREFILL):]):
        k_old, v_old = p.random(ctx - 1, kv_heads, hd), p.random(ctx - 1, kv_heads, hd)
        for i in range(ctx - 1):
            kv5[pages[i // tpp], 0, i % tpp] = k_old[i]
            kv5[pages[i // tpp], 1, i % tpp] = v_old[i]
        history.append((k_old, v_old))
    split = meta.num_prefill_tokens
    q = p.random(meta.num_tokens, heads, hd)
    k, v = p.random(meta.num_tokens, kv_heads, hd), p.random(meta.num_tokens, kv_heads, hd)
    step.kv_store(k, v, pool_layer)
    scale = hd ** -0.5
    out_prefill = step.prefill(q[:split], k[:split], v[:split], scale)
    out_decode = step.decode(q[split:], pool_layer, scale)
    as64 = lambda t: t.double().numpy()  # noqa: E731
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


def test_decode_requests_with_page_runs_are_read_in_place():
    step = TorchAttentionStep(Pool(MHA, 1, "runs", torch.float32).meta)
    assert all(first >= 0 and pages is None for _, first, pages in step.requests)
    step = TorchAttentionStep(Pool(MHA, 1, "scattered", torch.float32, seed=2).meta)
    assert any(first < 0 and pages is not None for _, first, pages in step.requests)


def test_references_without_enable_gqa_repeat_kv_heads(monkeypatch):
    """torch < 2.5 has no enable_gqa: the fallback must give the same attention."""
    p = Pool(GQA, 2, "scattered", torch.float32, seed=4)
    rng = np.random.default_rng(5)
    q = torch.tensor(rng.standard_normal((5, 4, 12)), dtype=torch.float32)
    k = torch.tensor(rng.standard_normal((5, 2, 12)), dtype=torch.float32)
    v = torch.tensor(rng.standard_normal((5, 2, 12)), dtype=torch.float32)
    cu = torch.tensor([0, 2, 5], dtype=torch.int32)
    pool_layer = p.pool[1].nan_to_num()
    args = (p.meta.kv_page_table[:5], p.meta.context_lens[:5])

    def both():
        return (prefill_attention_ref(q, k, v, cu, max_seqlen=3, scale=0.3),
                paged_decode_attention_ref(q, pool_layer, *args, tokens_per_page=2, scale=0.3,
                                           max_context_len=int(p.meta.context_lens.max())))
    native = both()
    monkeypatch.setattr(torch_sdpa, "HAS_ENABLE_GQA", False)
    fallback = both()
    for a, b in zip(native, fallback):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
