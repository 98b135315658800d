"""LoRA prefill form (segments sharing a slot): Triton shrink/expand vs references vs dense."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kernel_cases import (TORCH_TARGETS, TRITON_TARGETS, assert_close, dense_lora, pack_lora,
                          random_input)
from manylora.kernels.lora_expand_prefill import lora_expand_prefill, lora_expand_prefill_ref
from manylora.kernels.lora_shrink_prefill import lora_shrink_prefill, lora_shrink_prefill_ref

# (ranks per slot, segments as (length, slot), d_in, d_out, page_elems, aligned): segments
# longer than one token block, single-token segments, no-LoRA segments, rank-0 slots.
CASES = [
    pytest.param([8], [(5, 0)], 67, 129, 2 * 3 * 12, False, id="one-segment"),
    pytest.param([1, 8, 16, 0, 64], [(70, 1), (3, -1), (1, 0), (17, 4), (2, 3), (9, 2)],
                 129, 67, 2 * 1 * 40, False, id="mixed-ranks"),
    pytest.param([128, 16], [(33, 0), (4, 1), (6, 0)], 257, 67, 2 * 16 * 8, False,
                 id="rank128-gqa-k"),
    pytest.param([int(r) for r in np.resize([1, 8, 16, 64, 128], 64)],
                 [(1 + i % 3, i) for i in range(64)] + [(2, -1)], 35, 67, 2 * 3 * 6, False,
                 id="64-adapters"),
    pytest.param([256, 32], [(20, 1), (19, 0)], 128, 64, 2 * 4 * 16, True,
                 id="rank256-aligned"),
    pytest.param([64, 8, 16, 128], [(40, 3), (5, 1), (1, 0), (19, 2)], 1031, 515, 2 * 1 * 520,
                 False, id="large-odd"),
]


def _case(seed, ranks, segments, d_in, d_out, page_elems, aligned, device, dtype):
    rng = np.random.default_rng(seed)
    packed = pack_lora(rng, ranks, d_in, d_out, page_elems, dtype, device, aligned)
    lens = [n for n, _ in segments]
    starts = torch.tensor(np.concatenate([[0], np.cumsum(lens)]), dtype=torch.int32,
                          device=device)
    seg_slots = torch.tensor([s for _, s in segments], dtype=torch.int32, device=device)
    slots = [s for n, s in segments for _ in range(n)]
    x = random_input(rng, len(slots), d_in, dtype, device, row_stride=d_in + 3)
    y0 = random_input(rng, len(slots), d_out, dtype, device, row_stride=d_out + 5)
    return packed, slots, starts, seg_slots, max(lens), x, y0


@pytest.mark.parametrize("device,dtype", TRITON_TARGETS)
@pytest.mark.parametrize("ranks,segments,d_in,d_out,page_elems,aligned", CASES)
def test_triton_prefill_matches_reference(device, dtype, ranks, segments, d_in, d_out,
                                          page_elems, aligned):
    packed, slots, starts, seg_slots, max_len, x, y0 = _case(
        1, ranks, segments, d_in, d_out, page_elems, aligned, device, dtype)
    args = (packed.pool_layer, starts, seg_slots, max_len, packed.lora)
    h = lora_shrink_prefill(x, *args)
    h_ref = lora_shrink_prefill_ref(x, *args)
    assert h.shape == h_ref.shape == (len(slots), max(ranks))
    assert_close(h, h_ref, dtype)
    y, y_ref = y0.clone(), y0.clone()
    lora_expand_prefill(h, *args, y)
    lora_expand_prefill_ref(h_ref, *args, y_ref)
    assert_close(y, y_ref, dtype)
    no_lora = [t for t, s in enumerate(slots) if s < 0 or ranks[s] == 0]
    assert torch.equal(y[no_lora], y0[no_lora])


@pytest.mark.parametrize("device,dtype", TORCH_TARGETS)
@pytest.mark.parametrize("ranks,segments,d_in,d_out,page_elems,aligned", CASES)
def test_reference_matches_dense(device, dtype, ranks, segments, d_in, d_out, page_elems,
                                 aligned):
    packed, slots, starts, seg_slots, max_len, x, y0 = _case(
        3, ranks, segments, d_in, d_out, page_elems, aligned, device, dtype)
    h_dense, y_dense = dense_lora(packed, x, slots, y0)
    args = (packed.pool_layer, starts, seg_slots, max_len, packed.lora)
    h = lora_shrink_prefill_ref(x, *args)
    assert_close(h, torch.from_numpy(h_dense), dtype)
    y = y0.clone()
    lora_expand_prefill_ref(h, *args, y)
    assert_close(y, torch.from_numpy(y_dense), dtype)
