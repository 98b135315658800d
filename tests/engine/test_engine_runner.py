"""The runner: batches of a given shape without a scheduler (the profiler's entry point), and
logits returned in the caller's row order however the prefill rows are regrouped by adapter."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine_cases import one_cpu_thread  # noqa: F401 (autouse fixture)
from engine_cases import write_checkpoint
from manylora.engine.hf_loader import load_checkpoint
from manylora.engine.model import LlamaModel
from manylora.engine.model_shape import PoolLayout
from manylora.engine.pool_tensors import PoolTensors
from manylora.engine.runner import Runner, StepRows, fill_synthetic_adapters, synthetic_rows
from manylora.kernels.backends import attention_backend, lora_backend

CPU = torch.device("cpu")
PAGES = 4000


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    model_dir, _ = write_checkpoint(tmp_path_factory.mktemp("runner"), seed=9)
    config, weights = load_checkpoint(model_dir, torch.float32, CPU)
    layout = PoolLayout(config.shape(dtype_bytes=4), tokens_per_page=2)
    pool = PoolTensors(layout, PAGES, torch.float32, CPU)
    model = LlamaModel(config, weights, lora_backend("torch"), attention_backend("torch"))
    return Runner(model, pool), layout, config


def _rows(layout, config, seed):
    rng = np.random.default_rng(seed)
    rows = synthetic_rows(layout, PAGES, prefill_lens=[5, 9, 3, 7], decode_context_lens=[],
                          request_slots=[1, -1, 0, 1], slot_ranks=[4, 16],
                          targets=("q", "v", "down"), vocab_size=config.vocab_size, rng=rng)
    return rows, rng


def _one(rows: StepRows, i: int) -> StepRows:
    return StepRows(prefill_tokens=[rows.prefill_tokens[i]], prefill_slots=[rows.prefill_slots[i]],
                    prefill_kv_pages=[rows.prefill_kv_pages[i]], slot_pages=rows.slot_pages,
                    slot_rows=rows.slot_rows)


def test_prefill_rows_regrouped_by_adapter_come_back_in_caller_order(runner):
    run, layout, config = runner
    rows, rng = _rows(layout, config, 0)
    fill_synthetic_adapters(run.pool, rows, rng)
    batched = run.run(rows)  # [4, V]
    assert batched.shape == (4, config.vocab_size) and torch.isfinite(batched).all()
    for i in range(4):
        torch.testing.assert_close(batched[i], run.run(_one(rows, i))[0], atol=1e-5, rtol=0)
    no_lora = StepRows(prefill_tokens=[rows.prefill_tokens[0]], prefill_slots=[-1],
                       prefill_kv_pages=[rows.prefill_kv_pages[0]])
    assert not torch.allclose(run.run(no_lora)[0], batched[0], atol=1e-3)


def test_synthetic_mixed_step_runs_prefill_and_decode(runner):
    run, layout, config = runner
    rng = np.random.default_rng(1)
    rows = synthetic_rows(layout, PAGES, prefill_lens=[6, 2], decode_context_lens=[4, 11, 1],
                          request_slots=[0, -1, 1, 2, 0], slot_ranks=[8, 1, 32],
                          targets=("q", "k", "v", "o", "gate", "up", "down"),
                          vocab_size=config.vocab_size, rng=rng)
    fill_synthetic_adapters(run.pool, rows, rng)
    meta = run.build_meta(rows, [0, 1])
    assert (meta.num_prefill_tokens, meta.num_decode_tokens, meta.num_slots) == (8, 3, 3)
    logits = run.run(rows)
    assert logits.shape == (5, config.vocab_size) and torch.isfinite(logits).all()


def test_synthetic_rows_refuse_a_pool_too_small(runner):
    _, layout, config = runner
    with pytest.raises(ValueError, match="cannot hold this step"):
        synthetic_rows(layout, 50, prefill_lens=[60], decode_context_lens=[], request_slots=[0],
                       slot_ranks=[64], targets=("q",), vocab_size=config.vocab_size,
                       rng=np.random.default_rng(0))
