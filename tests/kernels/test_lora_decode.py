"""LoRA decode form (per-token slot): Triton shrink/expand vs the references vs dense truth."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kernel_cases import (TORCH_TARGETS, TRITON_TARGETS, assert_close, dense_lora, pack_lora,
                          random_input)
from manylora.kernels.lora_expand_decode import lora_expand_decode, lora_expand_decode_ref
from manylora.kernels.lora_shrink_decode import lora_shrink_decode, lora_shrink_decode_ref

# (ranks per slot, tokens, d_in, d_out, page_elems, aligned): odd widths, ranks mixed in one
# batch, rank-0 slots (adapter does not adapt this target), page sizes that split rows.
CASES = [
    pytest.param([8], 5, 67, 129, 2 * 3 * 12, False, id="one-adapter"),
    pytest.param([1, 8, 16, 0, 64], 23, 129, 67, 2 * 1 * 40, False, id="mixed-ranks"),
    pytest.param([128, 16, 1], 9, 257, 67, 2 * 16 * 8, False, id="rank128-gqa-k"),
    pytest.param([int(r) for r in np.resize([1, 8, 16, 64, 128], 64)], 96, 67, 35, 2 * 3 * 6, False,
                 id="64-adapters"),
    pytest.param([256, 32], 4, 128, 64, 2 * 4 * 16, True, id="rank256-aligned"),
    pytest.param([64, 8, 16, 128], 12, 1031, 515, 2 * 1 * 520, False, id="large-odd"),
]


def _slots(rng: np.random.Generator, num_slots: int, num_tokens: int) -> list[int]:
    """Every slot used at least once (when tokens allow), plus some no-LoRA tokens."""
    slots = list(range(num_slots)) + list(rng.integers(-1, num_slots, num_tokens))
    slots = slots[:num_tokens]
    rng.shuffle(slots)
    return [int(s) for s in slots]


def _case(seed, ranks, num_tokens, d_in, d_out, page_elems, aligned, device, dtype):
    rng = np.random.default_rng(seed)
    packed = pack_lora(rng, ranks, d_in, d_out, page_elems, dtype, device, aligned)
    slots = _slots(rng, len(ranks), num_tokens)
    token_slots = torch.tensor(slots, dtype=torch.int32, device=device)
    x = random_input(rng, num_tokens, d_in, dtype, device, row_stride=d_in + 3)
    y0 = random_input(rng, num_tokens, d_out, dtype, device, row_stride=d_out + 5)
    return packed, slots, token_slots, x, y0


@pytest.mark.parametrize("device,dtype", TRITON_TARGETS)
@pytest.mark.parametrize("ranks,num_tokens,d_in,d_out,page_elems,aligned", CASES)
def test_triton_decode_matches_reference(device, dtype, ranks, num_tokens, d_in, d_out,
                                         page_elems, aligned):
    packed, slots, token_slots, x, y0 = _case(1, ranks, num_tokens, d_in, d_out, page_elems,
                                              aligned, device, dtype)
    h = lora_shrink_decode(x, packed.pool_layer, token_slots, packed.lora)
    h_ref = lora_shrink_decode_ref(x, packed.pool_layer, token_slots, packed.lora)
    assert h.shape == h_ref.shape == (num_tokens, max(ranks))
    assert_close(h, h_ref, dtype)
    y, y_ref = y0.clone(), y0.clone()
    lora_expand_decode(h, packed.pool_layer, token_slots, packed.lora, y)
    lora_expand_decode_ref(h_ref, packed.pool_layer, token_slots, packed.lora, y_ref)
    assert_close(y, y_ref, dtype)
    no_lora = [t for t, s in enumerate(slots) if s < 0 or ranks[s] == 0]
    assert torch.equal(y[no_lora], y0[no_lora])


@pytest.mark.parametrize("device,dtype", TRITON_TARGETS[:1] + TRITON_TARGETS[2:3])
@pytest.mark.parametrize("num_splits", [2, 3])
def test_split_k_shrink_matches_unsplit(device, dtype, num_splits):
    packed, _, token_slots, x, _ = _case(2, [16, 64, 1], 7, 1031, 8, 2 * 5 * 9, False,
                                         device, dtype)
    h = lora_shrink_decode(x, packed.pool_layer, token_slots, packed.lora, num_splits=num_splits)
    h_one = lora_shrink_decode(x, packed.pool_layer, token_slots, packed.lora, num_splits=1)
    assert_close(h, h_one, dtype)


@pytest.mark.parametrize("device,dtype", TORCH_TARGETS)
@pytest.mark.parametrize("ranks,num_tokens,d_in,d_out,page_elems,aligned", CASES)
def test_reference_matches_dense(device, dtype, ranks, num_tokens, d_in, d_out, page_elems,
                                 aligned):
    packed, slots, token_slots, x, y0 = _case(3, ranks, num_tokens, d_in, d_out, page_elems,
                                              aligned, device, dtype)
    h_dense, y_dense = dense_lora(packed, x, slots, y0)
    h = lora_shrink_decode_ref(x, packed.pool_layer, token_slots, packed.lora)
    assert_close(h, torch.from_numpy(h_dense), dtype)
    y = y0.clone()
    lora_expand_decode_ref(h, packed.pool_layer, token_slots, packed.lora, y)
    assert_close(y, torch.from_numpy(y_dense), dtype)
