"""Sampling: greedy is argmax; temperature/top-p draws follow the intended distribution and
depend only on a request's own seed; generation stops at EOS unless told to ignore it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats

from engine_cases import one_cpu_thread  # noqa: F401 (autouse fixture)
from engine_cases import prompts, write_checkpoint
from manylora.engine.engine import Engine
from manylora.engine.engine_config import EngineConfig
from manylora.engine.sampling import Sampler, SamplingParams, sample_top_p
from manylora.engine.scheduler_config import ControlConfig, MemoryConfig

CPU = torch.device("cpu")


def test_greedy_rows_are_argmax_and_draw_nothing():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    tokens = Sampler(CPU).sample(logits, [SamplingParams()] * 4, [None] * 4)
    assert tokens.tolist() == logits.argmax(-1).tolist()


def test_top_p_sampling_matches_the_truncated_distribution():
    """Chi-square test: draws follow softmax(logits / T) restricted to the top-p set."""
    logits = torch.tensor([2.0, 1.5, 1.0, 0.2, -1.0, -3.0])
    temperature, top_p = 0.7, 0.8
    probs = torch.softmax(logits / temperature, -1)
    order = torch.argsort(probs, descending=True)
    mass = torch.cumsum(probs[order], 0)
    kept = order[:int((mass - probs[order] < top_p).sum())]
    expected = torch.zeros_like(probs)
    expected[kept] = probs[kept] / probs[kept].sum()
    n = 20000
    uniform = torch.from_numpy(np.random.default_rng(0).random(n, dtype=np.float32))
    draws = sample_top_p(logits.expand(n, -1), torch.full((n,), temperature),
                         torch.full((n,), top_p), uniform)
    counts = torch.bincount(draws, minlength=len(logits)).numpy()
    assert counts[~np.isin(np.arange(len(logits)), kept.numpy())].sum() == 0
    keep = kept.numpy()
    want = expected[keep].double().numpy()
    result = stats.chisquare(counts[keep], want / want.sum() * counts[keep].sum())
    assert result.pvalue > 1e-3, result


def test_tiny_top_p_is_greedy():
    logits = torch.randn(8, 40, generator=torch.Generator().manual_seed(1))
    draws = sample_top_p(logits, torch.ones(8), torch.full((8,), 1e-6), torch.rand(8))
    assert draws.tolist() == logits.argmax(-1).tolist()


def test_invalid_settings_name_the_field():
    for kwargs, field in (({"temperature": -1}, "temperature"), ({"top_p": 0}, "top_p"),
                          ({"max_tokens": 0}, "max_tokens"), ({"seed": -2}, "seed")):
        with pytest.raises(ValueError, match=f"SamplingParams.{field}"):
            SamplingParams(**kwargs)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("sampling"), seed=11)


def _engine(model_dir):
    return Engine(model_dir, None, EngineConfig(
        control=ControlConfig(memory=MemoryConfig(pool_pages=3000))))


def test_seeded_sampling_is_reproducible_and_batch_independent(model):
    model_dir, config = model
    rng = np.random.default_rng(0)
    batch = prompts(rng, 5, config.vocab_size)
    params = [SamplingParams(max_tokens=12, temperature=1.3, top_p=0.9, seed=s, ignore_eos=True)
              for s in range(5)]
    together = _engine(model_dir).generate(batch, sampling=params)
    alone = _engine(model_dir).generate([batch[2]], sampling=[params[2]])
    assert alone[0].tokens == together[2].tokens
    again = _engine(model_dir).generate(batch, sampling=params)
    assert [g.tokens for g in again] == [g.tokens for g in together]
    reseeded = _engine(model_dir).generate(
        batch, sampling=[SamplingParams(max_tokens=12, temperature=1.3, top_p=0.9, seed=s + 100,
                                        ignore_eos=True) for s in range(5)])
    assert [g.tokens for g in reseeded] != [g.tokens for g in together]


def test_stops_at_eos_unless_ignored(model, tmp_path):
    model_dir, config = model
    prompt = prompts(np.random.default_rng(1), 1, config.vocab_size)[0]
    free = _engine(model_dir).generate([prompt], sampling=SamplingParams(max_tokens=10,
                                                                        ignore_eos=True))[0]
    eos = free.tokens[3]
    first = free.tokens.index(eos)
    raw = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**raw, "eos_token_id": [999, eos]}))
    try:
        engine = _engine(model_dir)
        stopped = engine.generate([prompt], sampling=SamplingParams(max_tokens=10))[0]
        ignored = engine.generate([prompt], sampling=SamplingParams(max_tokens=10,
                                                                    ignore_eos=True))[0]
    finally:
        (model_dir / "config.json").write_text(json.dumps(raw))
    assert stopped.status == "finished" and stopped.tokens == free.tokens[:first + 1]
    assert engine.requests[stopped.request_id].output_tokens == first + 1
    assert ignored.tokens == free.tokens
    assert engine.scheduler.pool.free_pages == engine.scheduler.pool.num_pages
