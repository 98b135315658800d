"""The workload and deployment a validation runs: which model, which traces, which engine.

``ValidateConfig`` holds every choice of ``manylora validate``, ``MODEL_SPECS`` the random
checkpoints it can write (validate.py writes them), and ``validation_trace`` the Gamma traces,
one per load level. Adapters come from each trace's
catalog (materialised by the replay as random PEFT folders), so the engine serves exactly the
ranks and targets the simulator prices.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Mapping

from manylora.analysis.capacity import CapacityConfig
from manylora.engine.anchor_config import AnchorConfig
from manylora.engine.model_shape import MODEL_SHAPES, ModelShape
from manylora.engine.profile_grid import GridConfig
from manylora.engine.serving_probes import ServingProbeConfig
from manylora.engine.tiny_spec import TinyModelSpec
from manylora.traces import (CatalogConfig, CycleRanks, GammaArrivals, TraceConfig,
                             UniformLengths, UniformPopularity, generate_trace)
from manylora.traces.trace import Trace


def _spec_of(shape: ModelShape) -> TinyModelSpec:
    return TinyModelSpec(layers=shape.num_layers, hidden=shape.hidden_size,
                         intermediate=shape.intermediate_size, heads=shape.num_heads,
                         kv_heads=shape.num_kv_heads, vocab=shape.vocab_size)


MODEL_SPECS: Mapping[str, TinyModelSpec] = MappingProxyType({
    "tiny": TinyModelSpec(),
    **{name: _spec_of(shape) for name, shape in MODEL_SHAPES.items()},
})
"""Random checkpoints ``--model-shape`` can write: make-tiny's default, and the named shapes."""

# Batches the validation workload produces (prompts <= 64, outputs <= 32 tokens, up to ~100
# running requests): the profile is measured where the runs will be.
VALIDATION_GRID = GridConfig(
    decode_batches=(1, 2, 4, 8, 16, 32, 64, 128), decode_contexts=(16, 48, 96),
    prefill_requests=(1, 2, 4, 8), prefill_lens=(8, 32, 64), lora_batches=(4, 16, 64),
    lora_distinct=(1, 4, 16, 64), ranks=(8, 16, 32, 64), random_points=40,
    max_step_tokens=1024, max_kv_tokens=16384, max_context=128)


@dataclass(frozen=True)
class ValidateConfig:
    """Everything ``manylora validate`` decides."""

    levels: tuple[float, ...] = (0.5, 0.85, 1.2)   # offered load as a share of capacity
    min_requests: int = 300        # requests per level, at least
    minutes: float = 4.0           # engine replay budget; more requests per level if it allows
    num_adapters: int = 100        # catalog per trace (uniform popularity: most get used)
    min_adapters: int = 50         # distinct adapters each level must use
    prompt_range: tuple[int, int] = (8, 64)
    output_range: tuple[int, int] = (8, 32)
    ranks: tuple[int, ...] = (8, 16, 32, 64)
    cv: float = 1.0
    tolerance: float = 0.10
    engine_repeats: int = 1        # 2: replay each trace twice to measure the machine's noise
    anchor: AnchorConfig | None = field(default_factory=AnchorConfig)  # None: no speed anchors
    capacity: CapacityConfig = field(default_factory=CapacityConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.levels or min(self.levels) <= 0:
            raise ValueError(f"ValidateConfig.levels must be load shares > 0, got {self.levels}")
        if self.min_requests < 1 or self.num_adapters < 1 or self.min_adapters < 1:
            raise ValueError("ValidateConfig.min_requests, num_adapters and min_adapters must "
                             "be >= 1")
        if self.min_adapters > self.num_adapters:
            raise ValueError(f"ValidateConfig.min_adapters ({self.min_adapters}) exceeds "
                             f"num_adapters ({self.num_adapters})")
        if not (math.isfinite(self.minutes) and self.minutes > 0):
            raise ValueError(f"ValidateConfig.minutes must be > 0, got {self.minutes!r}")
        if not (math.isfinite(self.cv) and self.cv > 0):
            raise ValueError(f"ValidateConfig.cv must be > 0, got {self.cv!r}")
        if self.engine_repeats < 1:
            raise ValueError(f"ValidateConfig.engine_repeats must be >= 1, got "
                             f"{self.engine_repeats!r}")
        if not 0 < self.tolerance < 1:
            raise ValueError(f"ValidateConfig.tolerance must be in (0, 1), got "
                             f"{self.tolerance!r}")

    def serving_probes(self, base: ServingProbeConfig) -> ServingProbeConfig:
        """``base``'s probes over this workload, seeded apart from the validated traces (which
        use ``seed`` and ``seed + 1``), with this validation's speed anchor, and one more
        probe at the highest level when ``base`` stops short of it: near and past saturation
        the replays run batches of 100-256 requests that the default probes (at most ~70 at
        0.9) never do, and there the calibration decides the latency."""
        top = max(self.levels)
        loads = base.loads if top <= max(base.loads) else (*base.loads, top)
        return replace(base, loads=loads, num_adapters=self.num_adapters,
                       prompt_range=self.prompt_range, output_range=self.output_range,
                       ranks=self.ranks, cv=self.cv, seed=self.seed + 1000, anchor=self.anchor)

    def requests_per_level(self, capacity_rps: float) -> int:
        """As many requests as fit in ``minutes`` of replay over all levels (a level at load
        l takes about n / (l x capacity) seconds), but at least ``min_requests``."""
        seconds_per_request = self.engine_repeats * sum(1.0 / (level * capacity_rps)
                                                        for level in self.levels)
        # the epsilon keeps an exact fit (180 s / 0.3 s) from rounding down to one less
        return max(self.min_requests, int(self.minutes * 60 / seconds_per_request + 1e-9))


def validation_trace(config: ValidateConfig, rate_rps: float, num_requests: int,
                     seed_offset: int = 0) -> Trace:
    """Gamma arrivals at ``rate_rps`` over a uniformly popular catalog of short requests."""
    return generate_trace(TraceConfig(
        num_adapters=config.num_adapters, arrivals=GammaArrivals(rate=rate_rps, cv=config.cv),
        popularity=UniformPopularity(),
        lengths=UniformLengths(input_range=config.prompt_range,
                               output_range=config.output_range),
        catalog=CatalogConfig(ranks=CycleRanks(ranks=config.ranks)),
        duration_s=None, num_requests=num_requests, seed=config.seed + seed_offset))
