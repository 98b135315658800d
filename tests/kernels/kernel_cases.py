"""Shared test material for the kernels: devices and dtypes, tolerances, pool packing.

Adapters are packed into a pool here by an independent route (a Python loop writing page by
page into scattered page ids, unused elements NaN so any stray read poisons the result), and
the expected LoRA output is computed densely in float64 from the A/B matrices themselves, so
neither the kernels nor the references can share a packing bug with the test.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from manylora.kernels.batch_meta import LoraTargetMeta

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"

# One tolerance table per dtype: (atol, rtol) for outputs of magnitude ~1.
TOLERANCES = {
    torch.float32: (2e-4, 2e-4),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (6e-2, 4e-2),
}

# (device, dtype) for Triton checks: interpreted on CPU (fp32, fp16) unless a GPU is present;
# compiled for CUDA in fp32, fp16 and bf16 (marked gpu, skipped without one).
TRITON_TARGETS = [
    pytest.param("cpu", torch.float32, id="cpu-fp32",
                 marks=pytest.mark.skipif(not INTERPRET, reason="Triton interpreter off")),
    pytest.param("cpu", torch.float16, id="cpu-fp16",
                 marks=pytest.mark.skipif(not INTERPRET, reason="Triton interpreter off")),
    pytest.param("cuda", torch.float32, id="cuda-fp32", marks=pytest.mark.gpu),
    pytest.param("cuda", torch.float16, id="cuda-fp16", marks=pytest.mark.gpu),
    pytest.param("cuda", torch.bfloat16, id="cuda-bf16", marks=pytest.mark.gpu),
]
# (device, dtype) for plain-torch code (references, baselines): every dtype on CPU too.
TORCH_TARGETS = [
    pytest.param("cpu", torch.float32, id="cpu-fp32"),
    pytest.param("cpu", torch.float16, id="cpu-fp16"),
    pytest.param("cpu", torch.bfloat16, id="cpu-bf16"),
    pytest.param("cuda", torch.bfloat16, id="cuda-bf16", marks=pytest.mark.gpu),
]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    atol, rtol = TOLERANCES[dtype]
    torch.testing.assert_close(actual.double().cpu(), expected.double().cpu(), atol=atol,
                               rtol=rtol, equal_nan=False)


def pow2_divisor(values, cap: int = 16) -> int:
    g = int(np.gcd.reduce(np.asarray(values, dtype=np.int64))) if len(values) else 0
    align = cap
    while align > 1 and g % align:
        align //= 2
    return align


@dataclass
class PackedLora:
    """A pool holding one target of several adapters, plus the dense truth."""

    pool_layer: torch.Tensor    # [num_pages, page_elems]
    lora: LoraTargetMeta
    a: list[np.ndarray]         # per slot [rank, d_in] float64 (values as stored)
    b: list[np.ndarray]         # per slot [rank, d_out] float64 (B^T, values as stored)
    scales: list[float]


def pack_lora(rng: np.random.Generator, ranks: list[int], d_in: int, d_out: int,
              page_elems: int, dtype: torch.dtype, device: str, aligned: bool = False,
              ) -> PackedLora:
    """Adapters of the given ranks on one target, scattered over a NaN-filled pool."""
    step = 16 if aligned else 1
    flats, a_offsets, b_offsets, mats_a, mats_b = [], [], [], [], []
    for rank in ranks:
        lead = int(rng.integers(0, 3 * page_elems // step + 1)) * step  # earlier targets
        gap = int(rng.integers(0, 4)) * step
        a = rng.standard_normal((rank, d_in)) / np.sqrt(d_in)
        b = rng.standard_normal((rank, d_out)) / np.sqrt(max(rank, 1))
        a = torch.tensor(a, dtype=dtype).double().numpy()  # the values the pool holds
        b = torch.tensor(b, dtype=dtype).double().numpy()
        junk = rng.standard_normal(lead + gap + int(rng.integers(0, 7)))
        flat = np.concatenate([junk[:lead], a.reshape(-1), junk[lead:lead + gap],
                               b.reshape(-1), junk[lead + gap:]])
        flats.append(flat)
        a_offsets.append(lead)
        b_offsets.append(lead + a.size + gap)
        mats_a.append(a)
        mats_b.append(b)
    counts = [-(-f.size // page_elems) for f in flats]
    num_pages = sum(counts) + 5
    layers = torch.full((2, num_pages, page_elems), float("nan"), dtype=torch.float64)
    free = list(rng.permutation(num_pages))
    page_lists = []
    for flat, count in zip(flats, counts):
        pages = [int(free.pop()) for _ in range(count)]
        page_lists.append(pages)
        for i, page in enumerate(pages):
            chunk = flat[i * page_elems:(i + 1) * page_elems]
            layers[1, page, :chunk.size] = torch.from_numpy(chunk)
    width = max(counts, default=0)
    table = [p + [0] * (width - len(p)) for p in page_lists]
    scales = [float(rng.uniform(0.25, 2.0)) for _ in ranks]
    dev = torch.device(device)
    pool = layers.to(dtype).to(dev)
    lora = LoraTargetMeta(
        adapter_pages=torch.tensor(table, dtype=torch.int32, device=dev).reshape(len(ranks),
                                                                                 width),
        ranks=torch.tensor(ranks, dtype=torch.int32, device=dev),
        a_offsets=torch.tensor(a_offsets, dtype=torch.int32, device=dev),
        b_offsets=torch.tensor(b_offsets, dtype=torch.int32, device=dev),
        scales=torch.tensor(scales, dtype=torch.float32, device=dev),
        max_rank=max(ranks, default=0),
        offset_align=pow2_divisor(a_offsets + b_offsets))
    return PackedLora(pool[1], lora, mats_a, mats_b, scales)


def dense_lora(packed: PackedLora, x: torch.Tensor, token_slots: list[int],
               y0: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(h [T, max_rank], y [T, d_out]) in float64, token by token from the dense matrices."""
    xs = x.double().cpu().numpy()
    y = y0.double().cpu().numpy().copy()
    h = np.zeros((xs.shape[0], packed.lora.max_rank))
    for t, slot in enumerate(token_slots):
        if slot < 0 or packed.a[slot].shape[0] == 0:
            continue
        rank = packed.a[slot].shape[0]
        h[t, :rank] = packed.a[slot] @ xs[t]
        y[t] += packed.scales[slot] * (h[t, :rank] @ packed.b[slot])
    return h, y


def random_input(rng: np.random.Generator, rows: int, cols: int, dtype: torch.dtype,
                 device: str, row_stride: int | None = None) -> torch.Tensor:
    """[rows, cols] of N(0, 1); with ``row_stride`` a column slice of a wider tensor."""
    wide = torch.tensor(rng.standard_normal((rows, row_stride or cols)), dtype=dtype)
    return wide.to(device)[:, :cols]


@dataclass
class PackedKV:
    """A pool layer holding several requests' K/V in scattered pages, plus the dense truth."""

    pool_layer: torch.Tensor     # [num_pages, 2 * tokens_per_page * kv_heads * head_dim]
    page_table: torch.Tensor     # [R, max_pages] int32
    context_lens: torch.Tensor   # [R] int32
    k: list[np.ndarray]          # per request [ctx, kv_heads, head_dim] float64 (as stored)
    v: list[np.ndarray]


def pack_kv(rng: np.random.Generator, ctx_lens: list[int], kv_heads: int, head_dim: int,
            tokens_per_page: int, dtype: torch.dtype, device: str) -> PackedKV:
    """Requests' K/V written token by token into random pages of a NaN-filled pool."""
    counts = [-(-n // tokens_per_page) for n in ctx_lens]
    num_pages = sum(counts) + 3
    kv = torch.full((num_pages, 2, tokens_per_page, kv_heads, head_dim), float("nan"),
                    dtype=torch.float64)
    free = list(rng.permutation(num_pages))
    tables, ks, vs = [], [], []
    for n, count in zip(ctx_lens, counts):
        pages = [int(free.pop()) for _ in range(count)]
        k = torch.tensor(rng.standard_normal((n, kv_heads, head_dim)), dtype=dtype).double()
        v = torch.tensor(rng.standard_normal((n, kv_heads, head_dim)), dtype=dtype).double()
        for p in range(n):
            kv[pages[p // tokens_per_page], 0, p % tokens_per_page] = k[p]
            kv[pages[p // tokens_per_page], 1, p % tokens_per_page] = v[p]
        tables.append(pages)
        ks.append(k.numpy())
        vs.append(v.numpy())
    width = max(counts) + 2  # extra columns: the kernels must not read past a request's pages
    table = [t + [int(rng.integers(num_pages))] * (width - len(t)) for t in tables]
    dev = torch.device(device)
    return PackedKV(kv.reshape(num_pages, -1).to(dtype).to(dev),
                    torch.tensor(table, dtype=torch.int32, device=dev),
                    torch.tensor(ctx_lens, dtype=torch.int32, device=dev), ks, vs)


def dense_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float,
                    causal: bool) -> np.ndarray:
    """Float64 softmax attention of q [Lq, H, hd] over k, v [Lk, KVH, hd], head by head.

    With ``causal``, query i sees keys 0..i (Lq == Lk); otherwise every key.
    """
    num_heads, kv_heads = q.shape[1], k.shape[1]
    out = np.empty_like(q)
    for h in range(num_heads):
        kvh = h // (num_heads // kv_heads)
        s = q[:, h] @ k[:, kvh].T * scale  # [Lq, Lk]
        if causal:
            s = np.where(np.tril(np.ones_like(s, dtype=bool)), s, -np.inf)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        out[:, h] = (p / p.sum(axis=1, keepdims=True)) @ v[:, kvh]
    return out
