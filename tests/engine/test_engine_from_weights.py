"""Engines built from a checkpoint already in memory: the same tokens and logits as an engine
that read the folder itself, weights shared rather than copied when dtype and device already
match, converted when they do not, and a clear error for a missing or mis-shaped tensor."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine_cases import one_cpu_thread  # noqa: F401 (autouse fixture)
from engine_cases import ZOO, prompts, write_checkpoint, write_zoo
from manylora.engine.engine import Engine
from manylora.engine.engine_config import EngineConfig
from manylora.engine.hf_loader import load_checkpoint
from manylora.engine.model_config import CheckpointError
from manylora.engine.sampling import SamplingParams

CONFIG = EngineConfig(pool_bytes=4 * 2**20, keep_logits=True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("from-weights")
    model_dir, config = write_checkpoint(root)
    return model_dir, write_zoo(root / "adapters", config, cases=ZOO[:4])


def _run(engine: Engine, vocab: int):
    rng = np.random.default_rng(3)
    batch = prompts(rng, 6, vocab)
    return engine.generate(batch, [0, 1, -1, 2, 3, 1], SamplingParams(max_tokens=5,
                                                                      ignore_eos=True))


def test_an_engine_from_memory_matches_one_from_the_folder(checkpoint):
    model_dir, adapters = checkpoint
    from_disk = Engine(model_dir, adapters, CONFIG)
    config, weights = load_checkpoint(model_dir, torch.float32, torch.device("cpu"))
    from_memory = Engine.from_weights(config, weights, adapters, CONFIG, model_dir=model_dir)
    vocab = config.vocab_size
    for a, b in zip(_run(from_disk, vocab), _run(from_memory, vocab)):
        assert a.tokens == b.tokens and a.status == b.status == "finished"
        torch.testing.assert_close(a.logits, b.logits, atol=0, rtol=0)
    # shared, not copied: the embedding (tied or not) and a layer's o_proj are the same tensors
    assert from_memory.model.embed is weights["model.embed_tokens.weight"]
    assert from_memory.model.layers[1].wo is weights["model.layers.1.self_attn.o_proj.weight"]
    second = Engine.from_weights(config, weights, adapters, CONFIG)
    assert second.model.embed is from_memory.model.embed


def test_weights_in_another_dtype_are_converted(checkpoint):
    model_dir, _ = checkpoint
    config, weights = load_checkpoint(model_dir, torch.float32, torch.device("cpu"))
    engine = Engine.from_weights(config, weights, None,
                                 EngineConfig(dtype="bfloat16", pool_bytes=2**20))
    assert engine.model.embed.dtype == torch.bfloat16
    assert weights["model.embed_tokens.weight"].dtype == torch.float32  # caller's untouched
    out = engine.generate([[5, 6, 7]], sampling=SamplingParams(max_tokens=3, ignore_eos=True))
    assert len(out[0].tokens) == 3


@pytest.mark.parametrize("change, message", [
    (lambda w: w.pop("model.norm.weight"), "'model.norm.weight' is missing"),
    (lambda w: w.update({"model.layers.0.mlp.up_proj.weight": torch.zeros(3, 3)}),
     "'model.layers.0.mlp.up_proj.weight' has shape \\[3, 3\\]"),
])
def test_a_missing_or_misshaped_tensor_is_named(checkpoint, change, message):
    model_dir, _ = checkpoint
    config, weights = load_checkpoint(model_dir, torch.float32, torch.device("cpu"))
    change(weights)
    with pytest.raises(CheckpointError, match=message):
        Engine.from_weights(config, weights, None, CONFIG)
