"""Capacity of a deployment: the highest request rate it keeps up with, found by simulation.

A workload's trace is simulated at an offered rate. The system keeps up when, over the late
part of the arrival period (after the first ``settle_frac`` of it, once batches have filled),
requests finish about as fast as they arrive: completions >= ``keep_up_ratio`` x arrivals in
that window. The rate is doubled from ``start_rps`` until the system falls behind, then the
bracket [kept up, fell behind] is bisected ``refinements`` times; capacity is the highest rate
that was kept up with (within 2**-refinements of the bracket).

Simulating with a cost model fitted to the engine's own profile makes this a measurement of
the engine (its step times) that costs seconds instead of minutes of replay.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd


class CapacityError(ValueError):
    """The probed rates never bracket the capacity (the workload is too light or too heavy
    for the start rate and the allowed doublings)."""


@dataclass(frozen=True)
class CapacityConfig:
    start_rps: float = 0.25
    max_doublings: int = 14
    refinements: int = 4
    settle_frac: float = 0.3       # skip this share of the arrival period (batches filling)
    keep_up_ratio: float = 0.9     # completions / arrivals in the window to count as keeping up
    busy_s: float = 120.0          # seconds of arrivals per probe
    min_requests: int = 200        # requests per probe, at least

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start_rps) and self.start_rps > 0):
            raise ValueError(f"CapacityConfig.start_rps must be > 0, got {self.start_rps!r}")
        for name in ("max_doublings", "refinements"):
            if getattr(self, name) < 1:
                raise ValueError(f"CapacityConfig.{name} must be >= 1, got "
                                 f"{getattr(self, name)!r}")
        if not 0 <= self.settle_frac < 1:
            raise ValueError(f"CapacityConfig.settle_frac must be in [0, 1), got "
                             f"{self.settle_frac!r}")
        if not 0 < self.keep_up_ratio < 1:
            raise ValueError(f"CapacityConfig.keep_up_ratio must be in (0, 1), got "
                             f"{self.keep_up_ratio!r}")
        if not self.busy_s > 0:
            raise ValueError(f"CapacityConfig.busy_s must be > 0, got {self.busy_s!r}")
        if self.min_requests < 10:
            raise ValueError(f"CapacityConfig.min_requests must be >= 10, got "
                             f"{self.min_requests!r}")


@dataclass(frozen=True)
class CapacityEstimate:
    capacity_rps: float
    probes: pd.DataFrame   # offered_rps, requests, arrival_rps, completion_rps, kept_up


def window_rates(requests: pd.DataFrame, settle_frac: float) -> tuple[float, float]:
    """(arrivals, finished requests) per second over the arrival period after its first
    ``settle_frac``."""
    arrival = requests["arrival_s"].to_numpy(dtype=np.float64)
    start = arrival.min() + settle_frac * (arrival.max() - arrival.min())
    end = arrival.max()
    if not end > start:
        return math.nan, math.nan
    finish = requests["finish_s"].to_numpy(dtype=np.float64)
    done = (requests["status"] == "finished").to_numpy() & (finish >= start) & (finish <= end)
    arrived = (arrival >= start) & (arrival <= end)
    return float(arrived.sum() / (end - start)), float(done.sum() / (end - start))


def measure_capacity(run: Callable[[float, int], pd.DataFrame],
                     config: CapacityConfig = CapacityConfig()) -> CapacityEstimate:
    """Capacity from ``run(rate_rps, num_requests)``, which simulates the workload at that
    offered rate and returns the run's requests table."""
    probes: list[tuple[float, int, float, float, bool]] = []

    def keeps_up(rate: float) -> bool:
        n = max(config.min_requests, int(math.ceil(rate * config.busy_s)))
        arrived, done = window_rates(run(rate, n), config.settle_frac)
        ok = bool(done >= config.keep_up_ratio * arrived)
        probes.append((rate, n, arrived, done, ok))
        return ok

    low, high = 0.0, config.start_rps
    for _ in range(config.max_doublings):
        if not keeps_up(high):
            break
        low, high = high, high * 2
    else:
        raise CapacityError(f"still keeping up at {low:g} req/s after "
                            f"{config.max_doublings} doublings; the workload may be too light")
    if low == 0.0:
        raise CapacityError(f"overloaded already at {high:g} req/s; lower "
                            f"CapacityConfig.start_rps")
    for _ in range(config.refinements):
        middle = (low + high) / 2
        low, high = (middle, high) if keeps_up(middle) else (low, middle)
    return CapacityEstimate(low, pd.DataFrame(probes, columns=[
        "offered_rps", "requests", "arrival_rps", "completion_rps", "kept_up"]))
