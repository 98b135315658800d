"""Paged decode attention: Triton (direct and split) vs the reference vs dense attention."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kernel_cases import (TORCH_TARGETS, TRITON_TARGETS, assert_close, dense_attention,
                          pack_kv)
from manylora.kernels.paged_decode_attention import (paged_decode_attention,
                                                     paged_decode_attention_ref)

# (context lengths, query heads, kv heads, head_dim, tokens_per_page, splits): GQA ratios 1, 2,
# 4; page sizes that do not divide the lengths; split-K (flash-decoding) over long contexts.
CASES = [
    pytest.param([1, 2, 17, 33, 100], 4, 4, 16, 1, None, id="mha-tpp1"),
    pytest.param([5, 64, 65, 130], 8, 4, 40, 3, None, id="gqa2-tpp3-hd40"),
    pytest.param([300, 7, 129], 8, 2, 64, 16, 3, id="gqa4-tpp16-split3"),
    pytest.param([1000, 1], 4, 1, 32, 16, 4, id="gqa4-long-split4"),
]


def _case(seed, ctx_lens, heads, kv_heads, head_dim, tpp, device, dtype):
    rng = np.random.default_rng(seed)
    packed = pack_kv(rng, ctx_lens, kv_heads, head_dim, tpp, dtype, device)
    q = torch.tensor(rng.standard_normal((len(ctx_lens), heads, head_dim + 4)),
                     dtype=dtype).to(device)[:, :, :head_dim]  # strided rows, like a fused qkv
    return packed, q, 1.0 / np.sqrt(head_dim)


@pytest.mark.parametrize("device,dtype", TRITON_TARGETS)
@pytest.mark.parametrize("ctx_lens,heads,kv_heads,head_dim,tpp,splits", CASES)
def test_triton_matches_reference(device, dtype, ctx_lens, heads, kv_heads, head_dim, tpp,
                                  splits):
    packed, q, scale = _case(1, ctx_lens, heads, kv_heads, head_dim, tpp, device, dtype)
    kwargs = dict(tokens_per_page=tpp, scale=scale, max_context_len=max(ctx_lens))
    out = paged_decode_attention(q, packed.pool_layer, packed.page_table, packed.context_lens,
                                 num_splits=splits, **kwargs)
    ref = paged_decode_attention_ref(q, packed.pool_layer, packed.page_table,
                                     packed.context_lens, **kwargs)
    assert out.shape == (len(ctx_lens), heads, head_dim) and out.dtype == dtype
    assert_close(out, ref, dtype)


@pytest.mark.parametrize("device,dtype", TRITON_TARGETS[:1] + TRITON_TARGETS[2:3])
def test_split_count_does_not_change_the_result(device, dtype):
    packed, q, scale = _case(2, [130, 64, 1], 4, 2, 16, 3, device, dtype)
    kwargs = dict(tokens_per_page=3, scale=scale, max_context_len=130)
    outs = [paged_decode_attention(q, packed.pool_layer, packed.page_table,
                                   packed.context_lens, num_splits=n, **kwargs)
            for n in (1, 2, 3)]
    assert_close(outs[1], outs[0], dtype)
    assert_close(outs[2], outs[0], dtype)


@pytest.mark.parametrize("device,dtype", TORCH_TARGETS)
@pytest.mark.parametrize("ctx_lens,heads,kv_heads,head_dim,tpp,splits", CASES)
def test_reference_matches_dense(device, dtype, ctx_lens, heads, kv_heads, head_dim, tpp,
                                 splits):
    packed, q, scale = _case(3, ctx_lens, heads, kv_heads, head_dim, tpp, device, dtype)
    out = paged_decode_attention_ref(q, packed.pool_layer, packed.page_table,
                                     packed.context_lens, tokens_per_page=tpp, scale=scale,
                                     max_context_len=max(ctx_lens))
    qs = q.double().cpu().numpy()
    for d in range(len(ctx_lens)):
        expected = dense_attention(qs[d:d + 1], packed.k[d], packed.v[d], scale, causal=False)
        assert_close(out[d], torch.from_numpy(expected[0]), dtype)
