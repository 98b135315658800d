"""The engine against transformers + PEFT: logits within fp32 tolerance, identical greedy tokens.

One batch mixes every adapter of a zoo (mixed ranks; every target module; regex targets;
rank_pattern / alpha_pattern; rslora; layers_to_transform) with base-model requests; the oracle
runs each request alone, teacher-forced on the engine's own tokens, so one comparison covers
the prefill logits and every decode step's.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine_cases import one_cpu_thread  # noqa: F401 (autouse fixture)
from engine_cases import ZOO, Oracle, prompts, write_checkpoint, write_zoo
from manylora.engine.engine import Engine
from manylora.engine.engine_config import EngineConfig
from manylora.engine.sampling import SamplingParams
from manylora.engine.scheduler_config import ControlConfig, MemoryConfig, SchedulerConfig

ATOL = 1e-4  # fp32; observed differences are ~5e-6
DECODE_STEPS = 32


def _control(pool_pages: int, reservation: str = "lookahead",
             tokens_per_page: int = 1) -> ControlConfig:
    return ControlConfig(scheduler=SchedulerConfig(kv_reservation=reservation),
                         memory=MemoryConfig(pool_pages=pool_pages,
                                             tokens_per_page=tokens_per_page))


def _check_against_oracle(oracle: Oracle, batch, outputs, decode_steps: int) -> None:
    for (prompt, adapter_id), out in zip(batch, outputs):
        assert out.status == "finished", out
        assert len(out.tokens) == decode_steps + 1
        ref = oracle.logits(prompt + out.tokens[:-1], adapter_id)[len(prompt) - 1:]  # [n, V]
        torch.testing.assert_close(out.logits, ref, atol=ATOL, rtol=0)
        assert out.tokens == ref.argmax(-1).tolist(), f"adapter {adapter_id}: greedy differs"


def _batch(rng: np.random.Generator, adapter_ids, vocab: int):
    return list(zip(prompts(rng, len(adapter_ids), vocab), adapter_ids))


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    root = tmp_path_factory.mktemp("oracle-llama")
    model_dir, config = write_checkpoint(root, "llama", seed=3)
    adapters = write_zoo(root / "adapters", config)
    return model_dir, config, adapters, Oracle(model_dir, adapters)


def test_mixed_batch_of_every_adapter_matches_peft(llama):
    model_dir, config, adapters, oracle = llama
    ids = list(adapters) + [-1, -1, 0, 5]
    batch = _batch(np.random.default_rng(0), ids, config.vocab_size)
    engine = Engine(model_dir, adapters, EngineConfig(control=_control(6000), keep_logits=True))
    engine.warmup()  # leaves synthetic KV and adapter weights in free pages: must not matter
    for prompt, aid in batch:
        engine.add_request(prompt, aid, SamplingParams(max_tokens=DECODE_STEPS + 1,
                                                       ignore_eos=True))
    first = engine.step()
    assert len(first.plan.prefill) == len(batch)  # one batch holds all of them
    assert first.plan.shape.distinct_adapters == len(adapters)
    engine.run_until_done()
    outputs = [engine.requests[i] for i in range(len(batch))]
    assert all(r.output_tokens == DECODE_STEPS + 1 for r in outputs)
    gens = [type("G", (), {"status": r.state.value, "tokens": engine.tokens(r.request_id),
                           "logits": engine.logits(r.request_id)})() for r in outputs]
    _check_against_oracle(oracle, batch, gens, DECODE_STEPS)
    # the adapters changed something: each adapter's logits differ from the base model's
    base = oracle.logits(batch[0][0], -1)
    assert not torch.allclose(gens[0].logits[0], base[-1], atol=1e-2)
    assert engine.scheduler.pool.free_pages == engine.scheduler.pool.num_pages


def test_eviction_and_preemption_mid_run_keep_outputs_exact(llama):
    model_dir, config, adapters, oracle = llama
    ids = list(adapters) + [-1, 3, 9]
    batch = _batch(np.random.default_rng(1), ids, config.vocab_size)
    # the largest adapter takes 464 pages: a 700-page pool holds it plus little else
    engine = Engine(model_dir, adapters, EngineConfig(control=_control(700, "incremental"),
                                                      keep_logits=True))
    outputs = engine.generate([p for p, _ in batch], ids,
                              SamplingParams(max_tokens=DECODE_STEPS + 1, ignore_eos=True))
    assert sum(r.preemptions for r in engine.requests.values()) > 0
    assert engine.scheduler.residency.evictions > 0
    _check_against_oracle(oracle, batch, outputs, DECODE_STEPS)
    assert engine.scheduler.pool.free_pages == engine.scheduler.pool.num_pages


def test_padded_lora_backend_and_multi_token_pages_match_too(llama):
    model_dir, config, adapters, oracle = llama
    ids = list(adapters)[:6] + [-1]
    batch = _batch(np.random.default_rng(2), ids, config.vocab_size)
    engine = Engine(model_dir, adapters, EngineConfig(
        lora_backend="padded", control=_control(4000, "incremental", tokens_per_page=5),
        keep_logits=True))
    outputs = engine.generate([p for p, _ in batch], ids,
                              SamplingParams(max_tokens=9, ignore_eos=True))
    _check_against_oracle(oracle, batch, outputs, 8)


def test_triton_kernels_in_the_engine_match_peft(llama):
    """The Triton LoRA and attention kernels (interpreted on CPU, compiled on GPU) driven by
    the engine's own tensors: strides, dtypes and metadata as the wrappers demand."""
    model_dir, config, adapters, oracle = llama
    ids = [3, 5, -1]
    batch = _batch(np.random.default_rng(5), ids, config.vocab_size)
    engine = Engine(model_dir, adapters, EngineConfig(
        lora_backend="triton", attention_backend="triton",
        control=_control(4000, tokens_per_page=3), keep_logits=True))
    outputs = engine.generate([p for p, _ in batch], ids,
                              SamplingParams(max_tokens=3, ignore_eos=True))
    _check_against_oracle(oracle, batch, outputs, 2)


def test_qwen2_with_qkv_bias_matches_peft(tmp_path):
    model_dir, config = write_checkpoint(tmp_path, "qwen2", seed=4)
    assert config.qkv_bias
    adapters = write_zoo(tmp_path / "adapters", config)
    oracle = Oracle(model_dir, adapters)
    ids = list(adapters) + [-1]
    batch = _batch(np.random.default_rng(3), ids, config.vocab_size)
    engine = Engine(model_dir, adapters, EngineConfig(control=_control(6000), keep_logits=True))
    outputs = engine.generate([p for p, _ in batch], ids,
                              SamplingParams(max_tokens=DECODE_STEPS + 1, ignore_eos=True))
    _check_against_oracle(oracle, batch, outputs, DECODE_STEPS)


@pytest.mark.parametrize("arch, shards, extra", [
    ("mistral", 1, {}),
    ("llama", 3, {}),
    ("llama", 1, {"tie_word_embeddings": True}),
    ("llama", 1, {"rope_scaling": {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0,
                                   "original_max_position_embeddings": 16}}),
    ("llama", 1, {"rope_parameters": {"rope_type": "yarn", "rope_theta": 1000.0,
                                      "factor": 2.0, "original_max_position_embeddings": 32}}),
], ids=["mistral", "sharded", "tied-embeddings", "rope-llama3", "rope-yarn-t5-spelling"])
def test_checkpoint_variants_match_transformers(tmp_path, arch, shards, extra):
    model_dir, config = write_checkpoint(tmp_path, arch, seed=5, shards=shards,
                                         extra_config=extra)
    if shards > 1:
        assert not (model_dir / "model.safetensors").exists()
    adapters = write_zoo(tmp_path / "adapters", config, cases=ZOO[:3])
    oracle = Oracle(model_dir, adapters)
    ids = [0, 1, 2, -1]
    batch = _batch(np.random.default_rng(4), ids, config.vocab_size)
    engine = Engine(model_dir, adapters, EngineConfig(control=_control(3000), keep_logits=True))
    outputs = engine.generate([p for p, _ in batch], ids,
                              SamplingParams(max_tokens=9, ignore_eos=True))
    _check_against_oracle(oracle, batch, outputs, 8)
