"""Cost models for queueing studies: every step takes a constant time, or an exponential one.

With batch size 1 and one output token per request (one prefill step is the whole service),
the simulator becomes a single-server queue: constant steps give M/D/1, exponential steps
M/M/1 under Poisson arrivals, so the simulator can be checked against closed forms. Both
satisfy the CostModel protocol (cost_base.py).

``ExponentialCostModel`` draws from a seeded Generator, one draw per step in call order, so it
is reproducible but not a function of the shape: its ``deterministic`` is False, which tells
the simulator not to cost steps in blocks (a block would draw for steps it then discards).
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from manylora.engine.step_shape import StepShape
from manylora.simulator.cost_base import check_tier


class ConstantCostModel:
    """Every step takes ``step_s``; every adapter load ``load_s`` per tier."""

    deterministic: ClassVar[bool] = True

    def __init__(self, step_s: float, load_s: float = 0.0) -> None:
        if not step_s > 0.0:
            raise ValueError(f"ConstantCostModel.step_s must be > 0, got {step_s}")
        if not load_s >= 0.0:
            raise ValueError(f"ConstantCostModel.load_s must be >= 0, got {load_s}")
        self.step_s = float(step_s)
        self.load_s = float(load_s)

    def step_times(self, shapes: np.ndarray) -> np.ndarray:
        return np.full(len(shapes), self.step_s, dtype=np.float64)  # [n]

    def step_time(self, shape: StepShape) -> float:
        return self.step_s

    def adapter_load_time(self, num_bytes: int, tier: str) -> float:
        check_tier(tier)
        return self.load_s

    def describe(self) -> dict[str, Any]:
        return {"name": "constant", "step_s": self.step_s, "load_s": self.load_s}


class ExponentialCostModel:
    """Step times i.i.d. exponential with mean ``mean_s``, from ``Generator(PCG64(seed))``."""

    deterministic: ClassVar[bool] = False

    def __init__(self, mean_s: float, seed: int, load_s: float = 0.0) -> None:
        if not mean_s > 0.0:
            raise ValueError(f"ExponentialCostModel.mean_s must be > 0, got {mean_s}")
        if not load_s >= 0.0:
            raise ValueError(f"ExponentialCostModel.load_s must be >= 0, got {load_s}")
        self.mean_s = float(mean_s)
        self.seed = int(seed)
        self.load_s = float(load_s)
        self._rng = np.random.default_rng(self.seed)

    def step_times(self, shapes: np.ndarray) -> np.ndarray:
        return self._rng.exponential(self.mean_s, size=len(shapes))  # [n]

    def step_time(self, shape: StepShape) -> float:
        return float(self._rng.exponential(self.mean_s))

    def adapter_load_time(self, num_bytes: int, tier: str) -> float:
        check_tier(tier)
        return self.load_s

    def describe(self) -> dict[str, Any]:
        return {"name": "exponential", "mean_s": self.mean_s, "seed": self.seed,
                "load_s": self.load_s}
