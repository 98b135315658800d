"""``DemoConfig``: what ``manylora demo`` runs (policies, loads, burstiness, workload, SLOs).

Kept apart from the demo itself (demo.py, which imports the engine and the simulator) so that
the command line can state its defaults without importing them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from manylora.analysis.slo import SLO
from manylora.traces import (GammaArrivals, SLoRAPopularity, TraceConfig, UniformLengths,
                             generate_trace)
from manylora.traces.trace import Trace


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs. Rates are shares of the simulated capacity, so the curves cross
    the SLO wherever the shipped profile's hardware puts it."""

    num_adapters: int = 1000
    policies: tuple[str, ...] = ("fcfs", "early-abort", "lifo")
    loads: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
    cvs: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    cv_load: float = 1.0             # load of the cv sweep (at capacity bursts cause misses)
    cv: float = 1.0                  # cv of the rate sweep
    alpha: float = 0.5               # S-LoRA popularity (1 = uniform; smaller = skewed)
    duration_s: float = 120.0
    prompt_range: tuple[int, int] = (8, 256)
    output_range: tuple[int, int] = (8, 128)
    slo: SLO = field(default_factory=SLO)
    slo_scales: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
    replay_requests: int = 80
    replay_load: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_adapters < 1:
            raise ValueError(f"DemoConfig.num_adapters must be >= 1, got {self.num_adapters}")
        for name in ("policies", "loads", "cvs", "slo_scales"):
            if not getattr(self, name):
                raise ValueError(f"DemoConfig.{name} must not be empty")
        for name in ("duration_s", "cv_load", "cv", "alpha", "replay_load"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"DemoConfig.{name} must be > 0, got {value!r}")
        if self.replay_requests < 1:
            raise ValueError(f"DemoConfig.replay_requests must be >= 1, got "
                             f"{self.replay_requests}")

    @classmethod
    def quick(cls) -> "DemoConfig":
        """A reduced demo for tests and a first look: seconds, not minutes."""
        return cls(policies=("fcfs", "early-abort"), loads=(0.5, 1.25), cvs=(1.0, 4.0),
                   duration_s=20.0, prompt_range=(8, 32), output_range=(4, 16),
                   slo_scales=(0.5, 1.0, 2.0), replay_requests=6)

    def trace(self, rate_rps: float, cv: float, *, duration_s: float | None = None,
              num_requests: int | None = None) -> Trace:
        """The demo workload at one rate: same seed, so policies see the same requests."""
        if num_requests is None:
            duration_s = duration_s or self.duration_s
        return generate_trace(TraceConfig(
            num_adapters=self.num_adapters, arrivals=GammaArrivals(rate=rate_rps, cv=cv),
            popularity=SLoRAPopularity(alpha=self.alpha),
            lengths=UniformLengths(input_range=self.prompt_range,
                                   output_range=self.output_range),
            duration_s=duration_s, num_requests=num_requests, seed=self.seed))
