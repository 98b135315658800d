"""Hugging Face checkpoint folders: config.json plus safetensors weights, sharded or not.

Reads ``model.safetensors`` or the shards listed in ``model.safetensors.index.json``
(memory-mapped, one tensor at a time), checks every tensor against the shapes the config
implies, and returns the weights under HF key names in the requested dtype and device. Missing
files, missing or mis-shaped tensors raise ``CheckpointError`` naming the file.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from manylora.engine.model_config import (CheckpointError, ModelConfig, hf_weight_shapes,
                                          load_model_config)

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# tensors some checkpoints carry that the model recomputes or ties
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def weight_files(model_dir: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it."""
    index_path = model_dir / INDEX_FILE
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index_path}: not a safetensors index ({exc})") from None
        files = {}
        for name, file in weight_map.items():
            path = model_dir / file
            if not path.is_file():
                raise CheckpointError(f"{index_path}: shard {file!r} (for {name!r}) is missing")
            files[name] = path
        return files
    path = model_dir / SINGLE_FILE
    if not path.is_file():
        raise CheckpointError(f"{model_dir}: no {SINGLE_FILE} or {INDEX_FILE}")
    try:
        with safe_open(path, framework="pt") as f:
            return {name: path for name in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file: {exc}") from None


def load_hf_weights(model_dir: str | Path, config: ModelConfig, dtype: torch.dtype,
                    device: torch.device) -> dict[str, torch.Tensor]:
    """Every tensor the model needs, by HF name, checked against the config's shapes."""
    model_dir = Path(model_dir)
    files = weight_files(model_dir)
    expected = hf_weight_shapes(config)
    if config.tie_word_embeddings:
        files.pop("lm_head.weight", None)  # HF ties it to the embedding and ignores the file
    for name, file in files.items():
        if name not in expected and not name.endswith(_IGNORED_SUFFIXES):
            raise CheckpointError(f"{file}: unexpected tensor {name!r} for a {config.arch} "
                                  f"model")
    by_file: dict[Path, list[str]] = {}
    for name in expected:
        if name not in files:
            raise CheckpointError(f"{model_dir}: tensor {name!r} is missing from the checkpoint")
        by_file.setdefault(files[name], []).append(name)
    out = {}
    for file, names in by_file.items():
        try:
            with safe_open(file, framework="pt") as f:
                for name in names:
                    tensor = f.get_tensor(name)
                    if tuple(tensor.shape) != expected[name]:
                        raise CheckpointError(f"{file}: tensor {name!r} has shape "
                                              f"{list(tensor.shape)}, expected "
                                              f"{list(expected[name])}")
                    out[name] = tensor.to(device=device, dtype=dtype)
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{file}: cannot read tensors: {exc}") from None
    return out


def load_checkpoint(model_dir: str | Path, dtype: torch.dtype,
                    device: torch.device) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """config.json and the weights of a checkpoint folder."""
    config = load_model_config(model_dir)
    return config, load_hf_weights(model_dir, config, dtype, device)
