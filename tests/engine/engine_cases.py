"""Shared cases for the data-plane tests: tiny checkpoints, a mixed adapter zoo, HF+PEFT oracle.

The oracle is transformers + PEFT (test-only dependencies) loading the very folders the engine
reads; each request runs alone there, with ``set_adapter`` selecting its adapter.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from manylora.engine.make_tiny import TinyModelSpec, adapter_config_json, write_adapter, write_model
from manylora.engine.model_config import ModelConfig

SMALL = dict(layers=2, hidden=64, intermediate=96, heads=4, kv_heads=2, vocab=128,
             max_position_embeddings=256)

# (adapter_config.json overrides): >= 8 adapters of mixed ranks and targets, including every
# target, a regex target_modules, rank_pattern/alpha_pattern, rslora and layers_to_transform.
ZOO: tuple[dict, ...] = (
    adapter_config_json(8, 16.0, ["q", "v"]),
    adapter_config_json(16, 8.0, ["q", "k", "v", "o"]),
    adapter_config_json(4, 4.0, ["gate", "up", "down"]),
    adapter_config_json(32, 32.0, "all-linear"),
    adapter_config_json(8, 16.0, ["q_proj", "down_proj"], use_rslora=True),
    adapter_config_json(8, 8.0, ["q", "k", "v", "o", "gate", "up", "down"],
                        rank_pattern={"layers.1.self_attn.q_proj": 2, "down_proj": 12},
                        alpha_pattern={"model.layers.0.mlp.down_proj": 3.0, "v_proj": 20.0}),
    adapter_config_json(6, 12.0, r".*\.layers\.\d+\.(self_attn\.(k|o)_proj|mlp\.up_proj)"),
    {**adapter_config_json(12, 6.0, ["v", "gate"]), "layers_to_transform": [1]},
    adapter_config_json(1, 2.0, ["o"]),
    adapter_config_json(64, 64.0, ["k", "down"]),
)


def write_checkpoint(root: Path, arch: str = "llama", seed: int = 0, shards: int = 1,
                     extra_config: dict | None = None, **sizes) -> tuple[Path, ModelConfig]:
    spec = TinyModelSpec(arch=arch, **{**SMALL, **sizes})
    model_dir = root / f"{arch}-model"
    config = write_model(model_dir, spec, seed=seed, shards=shards, extra_config=extra_config)
    return model_dir, config


def write_zoo(root: Path, config: ModelConfig, seed: int = 1,
              cases: Sequence[dict] = ZOO) -> dict[int, Path]:
    """Adapter folders ``root/<id>`` for each case; returns id -> folder."""
    rng = np.random.default_rng(seed)
    folders = {}
    for i, cfg in enumerate(cases):
        folders[i] = root / str(i)
        write_adapter(folders[i], config, cfg, rng)
    return folders


@pytest.fixture(autouse=True, scope="module")
def one_cpu_thread():
    """Tiny matrices run fastest on one thread, and a shared 2-core machine makes two
    spinning OpenMP threads ~20x slower; restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Oracle:
    """transformers + PEFT over the same folders; one request at a time, fp32."""

    def __init__(self, model_dir: Path, adapters: dict[int, Path]) -> None:
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        base.eval()
        self.model = base
        if adapters:
            ids = list(adapters)
            self.model = PeftModel.from_pretrained(base, adapters[ids[0]],
                                                   adapter_name=str(ids[0]))
            for aid in ids[1:]:
                self.model.load_adapter(adapters[aid], adapter_name=str(aid))
            self.model.eval()

    @torch.no_grad()
    def logits(self, tokens: Sequence[int], adapter_id: int) -> torch.Tensor:
        """Logits [len(tokens), V] of one sequence run alone (teacher-forced)."""
        ids = torch.tensor([list(tokens)])
        if adapter_id < 0:
            if hasattr(self.model, "disable_adapter"):
                with self.model.disable_adapter():
                    return self.model(ids).logits[0].float()
            return self.model(ids).logits[0].float()
        self.model.set_adapter(str(adapter_id))
        return self.model(ids).logits[0].float()


def prompts(rng: np.random.Generator, count: int, vocab: int, low: int = 3,
            high: int = 12) -> list[list[int]]:
    return [rng.integers(3, vocab, int(rng.integers(low, high))).tolist() for _ in range(count)]
