"""Small random checkpoints and PEFT adapters in the real on-disk formats.

Writes what ``LlamaForCausalLM.from_pretrained`` and ``PeftModel.from_pretrained`` read (HF key
names in ``model.safetensors``, optionally sharded with ``model.safetensors.index.json``; PEFT
``adapter_config.json`` + ``adapter_model.safetensors``) without importing transformers or peft,
for tests, demos and CPU runs. Weights are drawn from a seeded numpy Generator with scales that
keep activations O(1), so adapters visibly change the logits.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from safetensors.numpy import save_file

from manylora.engine.model_config import ModelConfig, hf_weight_shapes, parse_model_config
from manylora.engine.model_shape import HF_MODULE_NAMES, TARGETS
from manylora.engine.peft_loader import CONFIG_FILE, WEIGHTS_FILE, resolve_modules
from manylora.engine.tiny_spec import TinyModelSpec

# make-tiny cycles through these so a folder of adapters mixes attention-only, MLP-only and all
TARGET_SETS: tuple[tuple[str, ...], ...] = (
    ("q", "v"), ("q", "k", "v", "o"), TARGETS, ("gate", "up", "down"), ("o", "down"),
)


def random_weights(config: ModelConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """HF-named float32 tensors: linear weights ~ N(0, 1/d_in), norms near 1, small biases."""
    out = {}
    for key, shape in hf_weight_shapes(config).items():
        if key.endswith("layernorm.weight") or key == "model.norm.weight":
            w = 1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)
        elif key.endswith(".bias"):
            w = 0.1 * rng.standard_normal(shape, dtype=np.float32)
        elif key == "model.embed_tokens.weight":
            w = rng.standard_normal(shape, dtype=np.float32)
        else:
            w = rng.standard_normal(shape, dtype=np.float32) / np.sqrt(shape[1])
        out[key] = w.astype(np.float32)
    return out


def write_model(out_dir: str | Path, spec: TinyModelSpec, seed: int, shards: int = 1,
                extra_config: Mapping[str, Any] | None = None) -> ModelConfig:
    """Write config.json and random weights (one file, or ``shards`` files plus the index)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {**spec.config_json(), **(extra_config or {})}
    config = parse_model_config(cfg, name=out.name)
    weights = random_weights(config, np.random.default_rng(seed))
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    if shards <= 1:
        save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
        return config
    keys = list(weights)
    weight_map = {}
    for i, part in enumerate(np.array_split(np.arange(len(keys)), shards)):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({keys[j]: weights[keys[j]] for j in part}, str(out / name),
                  metadata={"format": "pt"})
        weight_map.update({keys[j]: name for j in part})
    index = {"metadata": {"total_size": int(sum(w.nbytes for w in weights.values()))},
             "weight_map": weight_map}
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
                  rng: np.random.Generator) -> None:
    """Write a PEFT adapter folder with random A and B for every module the config targets."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg_path = folder / CONFIG_FILE
    shape = config.shape(dtype_bytes=4)
    tensors = {}
    for key, (_, target, rank, _) in resolve_modules(adapter_cfg, cfg_path, config).items():
        d_in, d_out = shape.target_dims(target)
        a = rng.standard_normal((rank, d_in), dtype=np.float32) / np.sqrt(d_in)
        b = 0.5 * rng.standard_normal((d_out, rank), dtype=np.float32) / np.sqrt(rank)
        tensors[f"base_model.model.{key}.lora_A.weight"] = a
        tensors[f"base_model.model.{key}.lora_B.weight"] = b
    cfg_path.write_text(json.dumps(dict(adapter_cfg), indent=2) + "\n")
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})


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
        write_adapter(Path(out_dir) / "adapters" / str(i), config, cfg, rng)
    return config
