"""Varlen causal prefill attention: Triton vs the reference vs dense attention."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kernel_cases import TORCH_TARGETS, TRITON_TARGETS, assert_close, dense_attention
from manylora.kernels.prefill_attention import prefill_attention, prefill_attention_ref

# (sequence lengths, query heads, kv heads, head_dim): GQA ratios 1, 2, 4; lengths off the
# block size, one-token requests.
CASES = [
    pytest.param([1, 5, 17], 2, 2, 16, id="mha"),
    pytest.param([70, 3, 64, 65], 4, 2, 40, id="gqa2-hd40"),
    pytest.param([129, 1], 8, 2, 64, id="gqa4"),
]


def _case(seed, lens, heads, kv_heads, head_dim, device, dtype):
    """q, k, v as column slices of one fused projection, as the model produces them."""
    rng = np.random.default_rng(seed)
    num_tokens = sum(lens)
    width = (heads + 2 * kv_heads) * head_dim
    qkv = torch.tensor(rng.standard_normal((num_tokens, width)), dtype=dtype).to(device)
    q = qkv[:, :heads * head_dim].view(num_tokens, heads, head_dim)
    k = qkv[:, heads * head_dim:(heads + kv_heads) * head_dim].view(num_tokens, kv_heads,
                                                                     head_dim)
    v = qkv[:, (heads + kv_heads) * head_dim:].view(num_tokens, kv_heads, head_dim)
    cu = torch.tensor(np.concatenate([[0], np.cumsum(lens)]), dtype=torch.int32, device=device)
    return q, k, v, cu, 1.0 / np.sqrt(head_dim)


@pytest.mark.parametrize("device,dtype", TRITON_TARGETS)
@pytest.mark.parametrize("lens,heads,kv_heads,head_dim", CASES)
def test_triton_matches_reference(device, dtype, lens, heads, kv_heads, head_dim):
    q, k, v, cu, scale = _case(1, lens, heads, kv_heads, head_dim, device, dtype)
    out = prefill_attention(q, k, v, cu, max_seqlen=max(lens), scale=scale)
    ref = prefill_attention_ref(q, k, v, cu, max_seqlen=max(lens), scale=scale)
    assert out.shape == q.shape and out.dtype == dtype
    assert_close(out, ref, dtype)


@pytest.mark.parametrize("device,dtype", TORCH_TARGETS)
@pytest.mark.parametrize("lens,heads,kv_heads,head_dim", CASES)
def test_reference_matches_dense(device, dtype, lens, heads, kv_heads, head_dim):
    q, k, v, cu, scale = _case(2, lens, heads, kv_heads, head_dim, device, dtype)
    out = prefill_attention_ref(q, k, v, cu, max_seqlen=max(lens), scale=scale)
    bounds = np.concatenate([[0], np.cumsum(lens)])
    for start, end in zip(bounds[:-1], bounds[1:]):
        expected = dense_attention(*(t[start:end].double().cpu().numpy() for t in (q, k, v)),
                                   scale, causal=True)
        assert_close(out[start:end], torch.from_numpy(expected), dtype)
