"""RoPE: inverse frequencies and cos/sin equal transformers' for every supported rope type."""
from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

from manylora.engine.model_config import parse_model_config
from manylora.engine.rope import RotaryEmbedding, rotate

BASE = {"model_type": "llama", "hidden_size": 128, "intermediate_size": 64,
        "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": 32, "max_position_embeddings": 64, "rope_theta": 5000.0}
SCALINGS = {
    "default": None,
    "linear": {"rope_type": "linear", "factor": 3.0},
    "dynamic": {"rope_type": "dynamic", "factor": 2.0},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
             "beta_fast": 16, "beta_slow": 2},
    "yarn-mscale": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
                    "mscale": 0.8, "mscale_all_dim": 0.4},
}


def _pair(scaling):
    raw = {**BASE, "rope_scaling": scaling}
    ours = RotaryEmbedding(parse_model_config(raw, name="m"), torch.device("cpu"),
                           torch.float32)
    hf = LlamaRotaryEmbedding(LlamaConfig(**{k: v for k, v in raw.items()
                                             if k != "model_type"}))
    return ours, hf


@pytest.mark.parametrize("name", list(SCALINGS))
def test_cos_sin_match_transformers(name):
    ours, hf = _pair(SCALINGS[name])
    positions = torch.arange(40)
    cos, sin = ours.cos_sin(positions, torch.full((40,), 40))
    x = torch.zeros(1, 40, 32)
    hf_cos, hf_sin = hf(x, positions[None])
    torch.testing.assert_close(cos, hf_cos[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(sin, hf_sin[0], rtol=1e-6, atol=1e-6)


def test_dynamic_ntk_rescales_past_max_positions_like_transformers():
    ours, hf = _pair(SCALINGS["dynamic"])
    # HF recomputes the frequencies from the longest position in the forward; for one request
    # alone that is its length at the step, which ours takes per token.
    for length in (50, 64, 100, 150):
        positions = torch.arange(length)
        cos, sin = ours.cos_sin(positions, torch.full((length,), length))
        hf_cos, hf_sin = hf(torch.zeros(1, length, 32), positions[None])
        torch.testing.assert_close(cos, hf_cos[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sin, hf_sin[0], rtol=1e-5, atol=1e-5)
    short, _ = ours.cos_sin(torch.arange(10), torch.full((10,), 10))
    long_, _ = ours.cos_sin(torch.arange(10), torch.full((10,), 150))
    assert not torch.allclose(short, long_)


def test_rotate_matches_rotate_half_convention():
    torch.manual_seed(0)
    x = torch.randn(5, 3, 8)
    cos, sin = torch.randn(5, 8), torch.randn(5, 8)
    half = torch.cat((-x[..., 4:], x[..., :4]), dim=-1)
    torch.testing.assert_close(rotate(x, cos, sin), x * cos[:, None] + half * sin[:, None])
