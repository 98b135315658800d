"""KV store: Triton vs the reference (bit-exact copies) vs reading the tokens back."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kernel_cases import TORCH_TARGETS, TRITON_TARGETS
from manylora.kernels.kv_store import kv_store, kv_store_ref

# (tokens, kv heads, head_dim, tokens_per_page)
CASES = [
    pytest.param(7, 1, 16, 1, id="tpp1"),
    pytest.param(40, 2, 40, 3, id="tpp3-hd40"),
    pytest.param(23, 4, 64, 16, id="tpp16"),
]


def _case(seed, num_tokens, kv_heads, head_dim, tpp, device, dtype):
    """Distinct (page, slot) targets in random order; every fifth token skipped (page -1)."""
    rng = np.random.default_rng(seed)
    num_pages = -(-num_tokens // tpp) + 4
    cells = rng.permutation(num_pages * tpp)[:num_tokens]
    pages, slots = cells // tpp, cells % tpp
    pages[::5] = -1
    width = (2 * kv_heads + 3) * head_dim
    kv = torch.tensor(rng.standard_normal((num_tokens, width)), dtype=dtype).to(device)
    k = kv[:, :kv_heads * head_dim].view(num_tokens, kv_heads, head_dim)
    v = kv[:, kv_heads * head_dim:2 * kv_heads * head_dim].view(num_tokens, kv_heads, head_dim)
    pool = torch.full((num_pages, 2 * tpp * kv_heads * head_dim), float("nan"), dtype=dtype,
                      device=device)
    as_index = dict(dtype=torch.int32, device=device)
    return k, v, pool, torch.tensor(pages, **as_index), torch.tensor(slots, **as_index)


@pytest.mark.parametrize("device,dtype", TRITON_TARGETS)
@pytest.mark.parametrize("num_tokens,kv_heads,head_dim,tpp", CASES)
def test_triton_matches_reference(device, dtype, num_tokens, kv_heads, head_dim, tpp):
    k, v, pool, pages, slots = _case(1, num_tokens, kv_heads, head_dim, tpp, device, dtype)
    pool_ref = pool.clone()
    kv_store(k, v, pool, pages, slots, tokens_per_page=tpp)
    kv_store_ref(k, v, pool_ref, pages, slots, tokens_per_page=tpp)
    torch.testing.assert_close(pool, pool_ref, atol=0, rtol=0, equal_nan=True)


@pytest.mark.parametrize("device,dtype", TORCH_TARGETS)
@pytest.mark.parametrize("num_tokens,kv_heads,head_dim,tpp", CASES)
def test_reference_writes_each_token_where_the_layout_says(device, dtype, num_tokens, kv_heads,
                                                          head_dim, tpp):
    k, v, pool, pages, slots = _case(2, num_tokens, kv_heads, head_dim, tpp, device, dtype)
    kv_store_ref(k, v, pool, pages, slots, tokens_per_page=tpp)
    width = kv_heads * head_dim
    written = 0
    for t, (page, slot) in enumerate(zip(pages.tolist(), slots.tolist())):
        if page < 0:
            continue
        base = slot * width
        assert torch.equal(pool[page, base:base + width], k[t].reshape(-1))
        base += tpp * width
        assert torch.equal(pool[page, base:base + width], v[t].reshape(-1))
        written += 2 * width
    assert int((~pool.isnan()).sum()) == written  # nothing else touched
