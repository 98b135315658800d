"""Adapter load time per tier: a fixed latency plus bytes over a bandwidth, and its fit.

Both cost models use it: the roofline model takes latency and bandwidth from a hardware
preset; the fitted model fits them from the load timings in a profile by non-negative least
squares on relative error (a load of a few kilobytes and one of a hundred megabytes count
alike).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import nnls

from manylora.simulator.cost_base import TIERS, check_tier


@dataclass(frozen=True)
class TierCost:
    """seconds = latency_s + num_bytes / bytes_per_s."""

    latency_s: float
    bytes_per_s: float

    def __post_init__(self) -> None:
        if not self.latency_s >= 0.0:
            raise ValueError(f"TierCost.latency_s must be >= 0, got {self.latency_s}")
        if not self.bytes_per_s > 0.0:
            raise ValueError(f"TierCost.bytes_per_s must be > 0, got {self.bytes_per_s}")

    def time(self, num_bytes: float) -> float:
        return self.latency_s + num_bytes / self.bytes_per_s


@dataclass(frozen=True)
class AdapterLoadModel:
    """One TierCost per tier."""

    host: TierCost   # host memory -> pool
    disk: TierCost   # disk -> host memory

    def time(self, num_bytes: int, tier: str) -> float:
        if num_bytes < 0:
            raise ValueError(f"adapter load size must be >= 0 bytes, got {num_bytes}")
        return getattr(self, check_tier(tier)).time(num_bytes)

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {t: {"latency_s": getattr(self, t).latency_s,
                    "bytes_per_s": getattr(self, t).bytes_per_s} for t in TIERS}

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, float]]) -> AdapterLoadModel:
        return cls(**{t: TierCost(float(data[t]["latency_s"]), float(data[t]["bytes_per_s"]))
                      for t in TIERS})


def fit_tier(num_bytes: Sequence[float], seconds: Sequence[float]) -> TierCost:
    """Latency and bandwidth that best explain ``seconds`` for loads of ``num_bytes``.

    Relative-error NNLS on [1, bytes]. With a single load size latency and bandwidth cannot be
    told apart; the whole time is then put on bandwidth (latency 0), which is exact at that size.
    """
    x = np.asarray(num_bytes, dtype=np.float64)  # [n]
    y = np.asarray(seconds, dtype=np.float64)    # [n]
    if x.shape != y.shape or x.size == 0:
        raise ValueError(f"need matching non-empty sizes and times, got {x.shape} and {y.shape}")
    if np.any(y <= 0) or np.any(x <= 0):
        raise ValueError("load sizes and times must be > 0")
    if np.unique(x).size < 2:
        return TierCost(0.0, float(np.sum(x) / np.sum(y)))
    scale = float(np.max(x))
    design = np.stack([np.ones_like(x), x / scale], axis=1) / y[:, None]  # [n, 2]
    (latency, per_scaled_byte), _ = nnls(design, np.ones_like(y))
    if per_scaled_byte <= 0.0:
        # Times do not grow with size at all: a pure latency, with bandwidth far above it.
        return TierCost(float(latency), float(scale / (1e-9 * latency)))
    return TierCost(float(latency), float(scale / per_scaled_byte))
