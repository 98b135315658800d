"""Benchmark presets by model shape: the random model, its dtype and the workload sized for it.

``--model-shape`` picks one. ``small`` is the CPU run (4 layers, hidden 512, fp32) and
``llama-7b`` the GPU run (Llama-7B shape, random bf16 weights). ``tiny`` is for the smoke test.
The device memory every variant may use is ``memory_multiple`` copies of the model weights
(capped at 90% of a GPU's memory): S-LoRA's A100-80GB holds about 6 copies of Llama-7B in fp16,
an H200 about 10. Out of it manylora keeps one copy of the weights, ``reserve_multiple`` copies
for activations, and pools the rest; the merged baseline fits as many weight copies as memory
holds (``merged_weight_share`` of the budget) and shares the rest among them for KV cache.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Mapping

from manylora.engine.make_tiny import TinyModelSpec

ADAPTER_COUNTS = (1, 10, 100, 1000, 2000)


@dataclass(frozen=True)
class ScalingPreset:
    """A model shape with the workload and limits that suit it."""

    name: str
    model: TinyModelSpec
    dtype: str                          # torch dtype name of weights, pool and adapters
    num_requests: int                   # all arrive at t=0: throughput at saturation
    input_range: tuple[int, int]        # prompt lengths, uniform, both ends included
    output_range: tuple[int, int]       # output lengths (EOS ignored)
    max_batch_size: int
    token_budget: int                   # prefill + decode tokens per engine step
    ranks: tuple[int, ...] = (8, 16, 32, 64)
    targets: tuple[str, ...] = ("q", "k", "v", "o")
    distinct_weights: int = 8           # weight files per rank, shared by adapters of that rank
    memory_multiple: float = 6.0        # device memory = this many copies of the weights
    reserve_multiple: float = 0.25      # of that, kept for activations (manylora)
    merged_weight_share: float = 0.8    # share of the budget merged copies may fill with weights
    peft_load_limit_s: float = 300.0    # PEFT loads whose projected time exceeds this: not run
    cell_budget_s: float = 240.0        # serving longer than this stops: partial throughput
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_requests", "max_batch_size", "token_budget", "distinct_weights"):
            if getattr(self, name) < 1:
                raise ValueError(f"ScalingPreset.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("input_range", "output_range"):
            low, high = getattr(self, name)
            if not 1 <= low <= high:
                raise ValueError(f"ScalingPreset.{name} must be 1 <= low <= high, got "
                                 f"{getattr(self, name)}")
        if not self.ranks or min(self.ranks) < 1:
            raise ValueError(f"ScalingPreset.ranks must be ranks >= 1, got {self.ranks}")
        if not self.memory_multiple > 1 + self.reserve_multiple:
            raise ValueError(f"ScalingPreset.memory_multiple ({self.memory_multiple}) must "
                             f"exceed 1 + reserve_multiple ({1 + self.reserve_multiple})")
        if not 0 < self.merged_weight_share < 1:
            raise ValueError(f"ScalingPreset.merged_weight_share must be in (0, 1), got "
                             f"{self.merged_weight_share}")
        for name in ("peft_load_limit_s", "cell_budget_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ScalingPreset.{name} must be > 0, got {getattr(self, name)}")


PRESETS: Mapping[str, ScalingPreset] = MappingProxyType({p.name: p for p in (
    ScalingPreset(
        "small", TinyModelSpec(layers=4, hidden=512, intermediate=1408, heads=8, kv_heads=8,
                               vocab=8192, max_position_embeddings=1024),
        dtype="float32", num_requests=128, input_range=(8, 64), output_range=(8, 64),
        max_batch_size=32, token_budget=2048),
    ScalingPreset(
        "llama-7b", TinyModelSpec(layers=32, hidden=4096, intermediate=11008, heads=32,
                                  kv_heads=32, vocab=32000, max_position_embeddings=4096),
        dtype="bfloat16", num_requests=256, input_range=(8, 256), output_range=(8, 256),
        max_batch_size=64, token_budget=8192, distinct_weights=2, memory_multiple=10.0,
        reserve_multiple=0.5, peft_load_limit_s=60.0, cell_budget_s=60.0),
    ScalingPreset(
        "tiny", TinyModelSpec(layers=2, hidden=64, intermediate=128, heads=4, kv_heads=2,
                              vocab=96, max_position_embeddings=256),
        dtype="float32", num_requests=12, input_range=(3, 9), output_range=(2, 8),
        max_batch_size=4, token_budget=64, ranks=(4, 8), distinct_weights=64,
        peft_load_limit_s=60.0, cell_budget_s=60.0),
)})


def with_limits(chosen: ScalingPreset, max_batch_size: int = 0, token_budget: int = 0
                ) -> ScalingPreset:
    """``chosen`` with another batch limit and token budget (0 keeps the preset's)."""
    return replace(chosen, max_batch_size=max_batch_size or chosen.max_batch_size,
                   token_budget=token_budget or chosen.token_budget)


class UnknownPresetError(ValueError):
    """A --model-shape that no preset has."""


def preset(name: str) -> ScalingPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownPresetError(f"--model-shape: unknown {name!r}; choose one of "
                                 f"{', '.join(PRESETS)}") from None
