"""BatchMeta.build: field values for a mixed step, one host-to-device copy, clear errors."""
from __future__ import annotations

import pytest
import torch

from manylora.kernels.batch_meta import BatchMeta


def _kwargs(**overrides):
    kwargs = dict(
        prefill_lens=[3, 2, 4, 1], prefill_slots=[0, 0, -1, 1],
        prefill_kv_pages=[[5, 6], [7], [9, 8], [11]],
        decode_context_lens=[5, 1], decode_slots=[1, -1], decode_kv_pages=[[1, 2, 3], [4]],
        adapter_pages=[[10, 12], [13]], lora_ranks=[[4, 0], [8, 2]],
        lora_a_offsets=[[0, 0], [0, 64]], lora_b_offsets=[[32, 0], [32, 80]],
        lora_scales=[[0.5, 1.0], [2.0, 3.0]], tokens_per_page=2, device="cpu")
    kwargs.update(overrides)
    return kwargs


def test_mixed_step_fields():
    m = BatchMeta.build(**_kwargs())
    assert (m.num_prefill_tokens, m.num_decode_tokens, m.num_tokens) == (10, 2, 12)
    assert (m.num_slots, m.num_targets, m.tokens_per_page) == (2, 2, 2)
    assert (m.max_prefill_len, m.max_segment_len, m.max_context_len) == (4, 5, 5)
    assert m.token_slots.tolist() == [0] * 5 + [-1] * 4 + [1] + [1, -1]
    assert m.positions.tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3, 0, 4, 0]
    # position p of a request lives on its page p // 2, slot p % 2
    assert m.kv_store_pages.tolist() == [5, 5, 6, 7, 7, 9, 9, 8, 8, 11, 3, 4]
    assert m.kv_store_slots.tolist() == [0, 1, 0, 0, 1, 0, 1, 0, 1, 0, 0, 0]
    assert m.cu_seqlens.tolist() == [0, 3, 5, 9, 10]
    assert m.seg_starts.tolist() == [0, 5, 9, 10]  # requests 0 and 1 share slot 0: one segment
    assert m.seg_slots.tolist() == [0, -1, 1]
    assert m.kv_page_table.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert m.context_lens.tolist() == [5, 1]
    assert m.adapter_pages.tolist() == [[10, 12], [13, 0]]
    assert m.lora_max_ranks == (8, 2)
    assert m.logit_indices.tolist() == [2, 4, 8, 9, 10, 11]
    lora = m.lora(1)
    assert lora.ranks.tolist() == [0, 2] and lora.a_offsets.tolist() == [0, 64]
    assert lora.b_offsets.tolist() == [0, 80] and lora.scales.tolist() == [1.0, 3.0]
    assert lora.max_rank == 2 and lora.offset_align == 16
    assert m.lora(0).offset_align == 16 and m.lora(0).scales.tolist() == [0.5, 2.0]
    for name in ("token_slots", "positions", "seg_starts", "kv_page_table", "lora_ranks"):
        assert getattr(m, name).dtype == torch.int32
    assert m.lora_scales.dtype == torch.float32


def test_all_index_tensors_share_one_device_buffer():
    m = BatchMeta.build(**_kwargs())
    storages = {t.untyped_storage().data_ptr() for t in vars(m).values()
                if isinstance(t, torch.Tensor)}
    assert len(storages) == 1


def test_offset_alignment_is_the_largest_power_of_two_dividing_all_offsets():
    m = BatchMeta.build(**_kwargs(lora_a_offsets=[[8, 0], [0, 64]],
                                  lora_b_offsets=[[40, 0], [36, 80]]))
    assert m.lora_offset_aligns == (4, 16)


def test_empty_step():
    m = BatchMeta.build(**_kwargs(prefill_lens=[], prefill_slots=[], prefill_kv_pages=[],
                                  decode_context_lens=[], decode_slots=[], decode_kv_pages=[],
                                  adapter_pages=[], lora_ranks=[], lora_a_offsets=[],
                                  lora_b_offsets=[], lora_scales=[], num_targets=7))
    assert m.num_tokens == 0 and m.num_slots == 0 and m.lora_max_ranks == (0,) * 7
    assert m.cu_seqlens.tolist() == [0] and m.seg_starts.tolist() == [0]
    assert m.lora_ranks.shape == (7, 0)


@pytest.mark.parametrize("overrides,message", [
    (dict(prefill_slots=[0, 0, -1]), "prefill_slots has 3 entries"),
    (dict(decode_slots=[2, -1]), "decode_slots holds slot 2"),
    (dict(prefill_lens=[3, 0, 4, 1]), "prefill_lens must be >= 1"),
    (dict(decode_context_lens=[7, 1]), r"decode_kv_pages\[0\] has 3 pages, too few for 7"),
    (dict(prefill_kv_pages=[[5, 6], [7], [9], [11]]), r"prefill_kv_pages\[2\]"),
    (dict(lora_ranks=[[4, 0]]), "lora_ranks must be"),
    (dict(lora_a_offsets=[[-3, 0], [0, 64]]), "lora_a_offsets"),
    (dict(adapter_pages=[[10, -2], [13]]), "adapter_pages"),
    (dict(tokens_per_page=0), "tokens_per_page must be >= 1"),
    (dict(adapter_pages=[], lora_ranks=[], lora_a_offsets=[], lora_b_offsets=[],
          lora_scales=[], prefill_slots=[-1] * 4, decode_slots=[-1, -1]), "num_targets"),
])
def test_bad_input_names_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        BatchMeta.build(**_kwargs(**overrides))


def test_lora_target_out_of_range():
    with pytest.raises(ValueError, match="target index 2"):
        BatchMeta.build(**_kwargs()).lora(2)
