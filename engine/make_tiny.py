"""Random checkpoints and PEFT adapters in the real on-disk formats, tiny or 7B-sized.

Writes what ``LlamaForCausalLM.from_pretrained`` and ``PeftModel.from_pretrained`` read (HF key
names in ``model.safetensors``, sharded with ``model.safetensors.index.json`` when asked or
when large; PEFT ``adapter_config.json`` + ``adapter_model.safetensors``) without importing
transformers or peft, for tests, demos, CPU runs and GPU validation. Weights are drawn from a
seeded numpy Generator in float32 with scales that keep activations O(1), so adapters visibly
change the logits, and stored in the spec's dtype (float32, float16 or bfloat16) through
``safetensors.torch``. A model is written shard by shard, so a Llama-7B-shaped checkpoint
(13 GB in bf16) never sits in memory whole.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from safetensors.torch import save_file

from manylora.engine.model_config import ModelConfig, hf_weight_shapes, parse_model_config
from manylora.engine.model_shape import HF_MODULE_NAMES, TARGETS
from manylora.engine.peft_loader import CONFIG_FILE, WEIGHTS_FILE, resolve_modules
from manylora.engine.tiny_spec import TINY_DTYPES, TinyModelSpec

TORCH_DTYPES: Mapping[str, torch.dtype] = {name: getattr(torch, name) for name in TINY_DTYPES}
MAX_SHARD_BYTES = 512 * 2**20   # per weights file: about one layer of a 7B model in bf16
# make-tiny cycles through these so a folder of adapters mixes attention-only, MLP-only and all
TARGET_SETS: tuple[tuple[str, ...], ...] = (
    ("q", "v"), ("q", "k", "v", "o"), TARGETS, ("gate", "up", "down"), ("o", "down"),
)


def _random_tensor(key: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """One HF-named float32 tensor: linear weights ~ N(0, 1/d_in), norms near 1, small biases."""
    w = rng.standard_normal(shape, dtype=np.float32)
    if key.endswith("layernorm.weight") or key == "model.norm.weight":
        w = 1.0 + 0.1 * w
    elif key.endswith(".bias"):
        w = 0.1 * w
    elif key != "model.embed_tokens.weight":
        # in place (computed in float64, rounded to float32): no copy of the largest tensors
        np.divide(w, np.sqrt(shape[1]), out=w)
    return w


def random_weights(config: ModelConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every tensor of the checkpoint in float32, drawn in checkpoint order (as write_model
    draws them, so both give the same values for one seed). Holds the whole model: for large
    models use write_model, which streams."""
    return {key: _random_tensor(key, shape, rng)
            for key, shape in hf_weight_shapes(config).items()}


def _stored(array: np.ndarray, dtype: str) -> torch.Tensor:
    return torch.from_numpy(array).to(TORCH_DTYPES[dtype])


def _write_safetensors(path: Path, tensors: Mapping[str, torch.Tensor], like: Path) -> None:
    """``tensors`` as a safetensors file with the permissions of ``like``, a file of the same
    folder written with open() (the umask's): safetensors' save_file makes its files private
    (0o600), and a checkpoint is meant to be shared."""
    save_file(dict(tensors), str(path), metadata={"format": "pt"})
    shutil.copymode(like, path)


def shard_plan(shapes: Mapping[str, tuple[int, ...]], itemsize: int, shards: int = 1,
               max_shard_bytes: int = MAX_SHARD_BYTES) -> list[list[str]]:
    """Tensor names per file, in checkpoint order: ``shards`` files of about equal tensor
    counts, or (``shards`` = 1) consecutive tensors filled up to ``max_shard_bytes`` (a tensor
    larger than that gets a file of its own). One group means one ``model.safetensors``."""
    keys = list(shapes)
    if shards > 1:
        return [[keys[j] for j in part] for part in np.array_split(np.arange(len(keys)), shards)]
    groups: list[list[str]] = [[]]
    size = 0
    for key in keys:
        nbytes = math.prod(shapes[key]) * itemsize
        if groups[-1] and size + nbytes > max_shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(key)
        size += nbytes
    return groups


def write_model(out_dir: str | Path, spec: TinyModelSpec, seed: int, shards: int = 1,
                extra_config: Mapping[str, Any] | None = None,
                max_shard_bytes: int = MAX_SHARD_BYTES) -> ModelConfig:
    """Write config.json and random weights in ``spec.dtype``: one ``model.safetensors``, or
    shards plus ``model.safetensors.index.json`` when ``shards`` > 1 or the model is larger
    than ``max_shard_bytes``. Each file's tensors are drawn, converted and written before the
    next file's are drawn, so memory holds one shard (about a layer of a 7B model), never the
    model."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {**spec.config_json(), **(extra_config or {})}
    config = parse_model_config(cfg, name=out.name)
    shapes = hf_weight_shapes(config)
    itemsize = TORCH_DTYPES[spec.dtype].itemsize
    groups = shard_plan(shapes, itemsize, shards, max_shard_bytes)
    rng = np.random.default_rng(seed)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    names = (["model.safetensors"] if len(groups) == 1 else
             [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))])
    for name, keys in zip(names, groups):
        tensors = {key: _stored(_random_tensor(key, shapes[key], rng), spec.dtype)
                   for key in keys}
        _write_safetensors(out / name, tensors, like=out / "config.json")
        del tensors   # free this shard before the next is drawn
    if len(groups) > 1:
        index = {"metadata": {"total_size": sum(math.prod(shape) * itemsize
                                                for shape in shapes.values())},
                 "weight_map": {key: name for name, keys in zip(names, groups)
                                for key in keys}}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return config


def adapter_config_json(rank: int, alpha: float, targets: Sequence[str] | str, *,
                        use_rslora: bool = False, rank_pattern: Mapping[str, int] | None = None,
                        alpha_pattern: Mapping[str, float] | None = None,
                        base_model: str = "") -> dict[str, Any]:
    """adapter_config.json as PEFT writes it; ``targets`` short names, HF names or a regex."""
    modules = targets if isinstance(targets, str) else [
        HF_MODULE_NAMES.get(t, t) for t in targets]
    return {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model,
        "r": rank, "lora_alpha": alpha, "lora_dropout": 0.0, "target_modules": modules,
        "bias": "none", "fan_in_fan_out": False, "use_rslora": use_rslora,
        "rank_pattern": dict(rank_pattern or {}), "alpha_pattern": dict(alpha_pattern or {}),
        "modules_to_save": None, "init_lora_weights": True, "inference_mode": True,
        "use_dora": False, "layers_to_transform": None,
    }


def write_adapter(folder: str | Path, config: ModelConfig, adapter_cfg: Mapping[str, Any],
                  rng: np.random.Generator, dtype: str = "float32") -> None:
    """Write a PEFT adapter folder with random A and B for every module the config targets,
    stored in ``dtype`` (one of TINY_DTYPES; drawn in float32 whatever it is, so one seed
    gives the same adapter, rounded, in every dtype)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg_path = folder / CONFIG_FILE
    shape = config.shape(dtype_bytes=4)
    tensors = {}
    for key, (_, target, rank, _) in resolve_modules(adapter_cfg, cfg_path, config).items():
        d_in, d_out = shape.target_dims(target)
        a = rng.standard_normal((rank, d_in), dtype=np.float32) / np.sqrt(d_in)
        b = 0.5 * rng.standard_normal((d_out, rank), dtype=np.float32) / np.sqrt(rank)
        tensors[f"base_model.model.{key}.lora_A.weight"] = _stored(a, dtype)
        tensors[f"base_model.model.{key}.lora_B.weight"] = _stored(b, dtype)
    cfg_path.write_text(json.dumps(dict(adapter_cfg), indent=2) + "\n")
    _write_safetensors(folder / WEIGHTS_FILE, tensors, like=cfg_path)


def adapter_plan(index: int, ranks: Sequence[int]) -> tuple[int, tuple[str, ...]]:
    """(rank, targets) of the index-th make-tiny adapter: ranks and target sets cycle."""
    return ranks[index % len(ranks)], TARGET_SETS[index % len(TARGET_SETS)]


def make_tiny(out_dir: str | Path, spec: TinyModelSpec, num_adapters: int,
              ranks: Sequence[int], seed: int, name: str = "") -> ModelConfig:
    """A random checkpoint in ``out_dir`` and adapters ``out_dir/adapters/<id>`` (id 0..N-1);
    ``name`` (default: the folder's) is what adapters record as their base model."""
    if num_adapters < 0:
        raise ValueError(f"num_adapters must be >= 0, got {num_adapters}")
    if not ranks or min(ranks) < 1:
        raise ValueError(f"ranks must be a non-empty list of ints >= 1, got {list(ranks)}")
    model_seed, adapter_seed = np.random.SeedSequence(seed).spawn(2)
    config = write_model(out_dir, spec, seed=model_seed.generate_state(1)[0])
    rng = np.random.default_rng(adapter_seed)
    for i in range(num_adapters):
        rank, targets = adapter_plan(i, ranks)
        cfg = adapter_config_json(rank, float(rank), targets,
                                  base_model=name or Path(out_dir).name)
        write_adapter(Path(out_dir) / "adapters" / str(i), config, cfg, rng, spec.dtype)
    return config
