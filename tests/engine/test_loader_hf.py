"""HF checkpoint folders: single file and sharded load the same tensors; bad folders name the
file and the tensor."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from engine_cases import write_checkpoint
from manylora.engine.hf_loader import load_checkpoint
from manylora.engine.model_config import CheckpointError, hf_weight_shapes

CPU = torch.device("cpu")


def test_sharded_checkpoint_loads_the_same_tensors(tmp_path):
    single, config = write_checkpoint(tmp_path / "a", seed=2)
    sharded, _ = write_checkpoint(tmp_path / "b", seed=2, shards=4)
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == 4
    _, one = load_checkpoint(single, torch.float32, CPU)
    cfg, many = load_checkpoint(sharded, torch.bfloat16, CPU)
    assert cfg == dataclasses.replace(config, name=cfg.name)
    assert one.keys() == many.keys() == hf_weight_shapes(config).keys()
    for key in one:
        assert many[key].dtype == torch.bfloat16
        torch.testing.assert_close(many[key].float(), one[key], atol=1e-2, rtol=1e-2)


def test_tied_embeddings_ignore_a_stored_lm_head(tmp_path):
    model_dir, config = write_checkpoint(tmp_path, seed=1,
                                         extra_config={"tie_word_embeddings": True})
    tensors = load_file(model_dir / "model.safetensors")
    tensors["lm_head.weight"] = np.ones_like(tensors["model.embed_tokens.weight"])
    save_file(tensors, model_dir / "model.safetensors")
    _, weights = load_checkpoint(model_dir, torch.float32, CPU)
    assert "lm_head.weight" not in weights


def _rewrite(model_dir, change):
    tensors = load_file(model_dir / "model.safetensors")
    change(tensors)
    save_file(tensors, model_dir / "model.safetensors")


@pytest.mark.parametrize("change, message", [
    (lambda t: t.pop("model.layers.1.mlp.up_proj.weight"), "'model.layers.1.mlp.up_proj.weight' "
                                                          "is missing"),
    (lambda t: t.update({"model.norm.weight": np.ones(5, np.float32)}), r"shape \[5\]"),
    (lambda t: t.update({"model.extra.weight": np.ones(5, np.float32)}), "unexpected tensor"),
], ids=["missing", "shape", "unexpected"])
def test_bad_tensors_name_file_and_tensor(tmp_path, change, message):
    model_dir, _ = write_checkpoint(tmp_path, seed=1)
    _rewrite(model_dir, change)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(model_dir, torch.float32, CPU)


def test_missing_files_and_shards(tmp_path):
    model_dir, _ = write_checkpoint(tmp_path / "a", seed=1)
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_checkpoint(model_dir, torch.float32, CPU)
    sharded, _ = write_checkpoint(tmp_path / "b", seed=1, shards=2)
    (sharded / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="shard 'model-00002-of-00002.safetensors'"):
        load_checkpoint(sharded, torch.float32, CPU)


def test_corrupt_safetensors(tmp_path):
    model_dir, _ = write_checkpoint(tmp_path, seed=1)
    path = model_dir / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable safetensors file") as info:
        load_checkpoint(model_dir, torch.float32, CPU)
    assert str(path) in str(info.value)
