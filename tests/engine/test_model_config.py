"""config.json -> ModelConfig: architectures, HF defaults, both RoPE spellings, clear errors."""
from __future__ import annotations

import json
import math

import pytest

from manylora.engine.model_config import (CheckpointError, hf_weight_shapes, load_model_config,
                                          parse_model_config)

BASE = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 96,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": 128}


def test_llama_defaults_follow_hf():
    cfg = parse_model_config(BASE, name="m")
    assert (cfg.arch, cfg.head_dim, cfg.num_kv_heads) == ("llama", 16, 2)
    assert cfg.rope.rope_type == "default" and cfg.rope.theta == 10000.0
    assert cfg.max_position_embeddings == 2048 and cfg.sliding_window is None
    assert not (cfg.qkv_bias or cfg.o_bias or cfg.mlp_bias or cfg.tie_word_embeddings)
    shape = cfg.shape(dtype_bytes=2)
    assert (shape.q_width, shape.kv_width, shape.dtype_bytes) == (64, 32, 2)


def test_mha_when_kv_heads_absent_and_explicit_head_dim():
    raw = {k: v for k, v in BASE.items() if k != "num_key_value_heads"}
    cfg = parse_model_config({**raw, "head_dim": 32}, name="m")
    assert cfg.num_kv_heads == 4 and cfg.head_dim == 32


def test_qwen2_has_qkv_bias_and_window_only_when_enabled():
    qwen = {**BASE, "model_type": "qwen2", "sliding_window": 64}
    cfg = parse_model_config(qwen, name="q")
    assert cfg.qkv_bias and not cfg.o_bias and cfg.sliding_window is None
    assert cfg.max_position_embeddings == 32768
    windowed = parse_model_config({**qwen, "use_sliding_window": True}, name="q")
    assert windowed.sliding_window == 64 and windowed.max_context_len == 64
    keys = hf_weight_shapes(cfg)
    assert keys["model.layers.0.self_attn.q_proj.bias"] == (64,)
    assert "model.layers.0.self_attn.o_proj.bias" not in keys


def test_mistral_window_caps_the_context():
    cfg = parse_model_config({**BASE, "model_type": "mistral",
                              "max_position_embeddings": 8192}, name="m")
    assert cfg.sliding_window == 4096 and cfg.max_context_len == 4096


def test_llama_attention_and_mlp_bias():
    cfg = parse_model_config({**BASE, "attention_bias": True, "mlp_bias": True}, name="m")
    assert cfg.qkv_bias and cfg.o_bias and cfg.mlp_bias
    assert "model.layers.1.mlp.down_proj.bias" in hf_weight_shapes(cfg)


def test_tied_embeddings_have_no_lm_head():
    cfg = parse_model_config({**BASE, "tie_word_embeddings": True}, name="m")
    assert "lm_head.weight" not in hf_weight_shapes(cfg)


@pytest.mark.parametrize("raw", [
    {"rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
                                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                              "original_max_position_embeddings": 8192}},
    {"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192}},
], ids=["transformers4", "transformers5"])
def test_both_rope_spellings_parse_alike(raw):
    rope = parse_model_config({**BASE, **raw}, name="m").rope
    assert (rope.rope_type, rope.theta, rope.factor) == ("llama3", 500000.0, 8.0)
    assert rope.original_max_position_embeddings == 8192


def test_legacy_type_key_and_yarn_defaults():
    linear = parse_model_config({**BASE, "rope_scaling": {"type": "linear", "factor": 2.0}},
                                name="m").rope
    assert (linear.rope_type, linear.factor) == ("linear", 2.0)
    yarn = parse_model_config({**BASE, "max_position_embeddings": 4096,
                               "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, name="m")
    assert yarn.rope.original_max_position_embeddings == 4096
    assert yarn.rope.yarn_attention_factor == pytest.approx(0.1 * math.log(4) + 1)


@pytest.mark.parametrize("change, message", [
    ({"model_type": "gpt2"}, "model_type 'gpt2' is not supported"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"rope_scaling": {"rope_type": "longrope", "factor": 2.0}}, "rope_type"),
    ({"num_key_value_heads": 3}, "num_kv_heads"),
    ({"partial_rotary_factor": 0.5}, "partial_rotary_factor"),
])
def test_bad_config_names_file_and_field(tmp_path, change, message):
    (tmp_path / "config.json").write_text(json.dumps({**BASE, **change}))
    with pytest.raises(CheckpointError, match=message) as info:
        load_model_config(tmp_path)
    assert str(tmp_path / "config.json") in str(info.value)


def test_missing_key_and_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_model_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({k: v for k, v in BASE.items()
                                                       if k != "vocab_size"}))
    with pytest.raises(CheckpointError, match="vocab_size"):
        load_model_config(tmp_path)
