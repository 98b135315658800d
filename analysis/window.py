"""Warm-up and cool-down exclusion: which requests of a run a metric is computed over.

A run starts with an empty system and ends draining its queue; neither is the steady state a
study usually wants. Requests are selected by arrival, either by time (drop those arriving in
the first ``warmup_s`` seconds after the first arrival, or in the last ``cooldown_s`` seconds
before the last arrival) or by fraction (drop the first ``warmup_frac`` and last
``cooldown_frac`` of requests in arrival order, rounded down). The two ways cannot be mixed.
Metrics then treat the kept requests as the whole run (see ``metrics.measurement_interval``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Window:
    """Which requests count; the default keeps them all."""

    warmup_s: float = 0.0
    cooldown_s: float = 0.0
    warmup_frac: float = 0.0
    cooldown_frac: float = 0.0

    def __post_init__(self) -> None:
        for name in ("warmup_s", "cooldown_s", "warmup_frac", "cooldown_frac"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"Window.{name} must be a finite number >= 0, got {value!r}")
        if self.warmup_frac + self.cooldown_frac >= 1:
            raise ValueError(f"Window.warmup_frac + cooldown_frac must be < 1, got "
                             f"{self.warmup_frac} + {self.cooldown_frac}")
        if (self.warmup_s or self.cooldown_s) and (self.warmup_frac or self.cooldown_frac):
            raise ValueError("Window.warmup_s/cooldown_s and warmup_frac/cooldown_frac cannot "
                             "be combined; exclude by time or by fraction")

    @property
    def is_everything(self) -> bool:
        return not (self.warmup_s or self.cooldown_s or self.warmup_frac or self.cooldown_frac)

    def describe(self) -> str:
        """One line for reports, e.g. 'all requests' or 'excluding the first 10 s ...'."""
        if self.is_everything:
            return "all requests"
        if self.warmup_frac or self.cooldown_frac:
            return (f"excluding the first {self.warmup_frac:.0%} and last "
                    f"{self.cooldown_frac:.0%} of requests by arrival")
        return (f"excluding requests arriving in the first {self.warmup_s:g} s and last "
                f"{self.cooldown_s:g} s")

    def select(self, requests: pd.DataFrame) -> pd.DataFrame:
        """The rows of a requests table inside the window (same columns, original order)."""
        if self.is_everything or requests.empty:
            return requests
        arrival = requests["arrival_s"].to_numpy()
        if self.warmup_frac or self.cooldown_frac:
            n = len(arrival)
            order = np.argsort(arrival, kind="stable")
            keep = np.zeros(n, dtype=bool)
            keep[order[int(n * self.warmup_frac):n - int(n * self.cooldown_frac)]] = True
        else:
            start, end = arrival.min() + self.warmup_s, arrival.max() - self.cooldown_s
            keep = (arrival >= start) & (arrival <= end)
        return requests[keep]
