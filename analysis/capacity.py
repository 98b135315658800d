"""Capacity of a deployment: its saturation throughput, found by simulation.

A workload's trace is simulated at an offered rate. Over the late part of the arrival period
(after the first ``settle_frac`` of it, once batches have filled) the probe measures arrivals
and completions per second. The system keeps up when completions >= ``keep_up_ratio`` x
arrivals; otherwise it is overloaded, its queue grows through the whole window and the
completion rate there is what the system serves flat out. The rate is doubled from
``start_rps`` until a probe is overloaded; capacity is that probe's completion rate, the
saturation throughput, so a load of 0.85 means 85% of the most the system can serve.

(The highest rate that still "keeps up" is not used: completions within 10% of arrivals
also hold 10% above the saturation throughput, so levels defined on it sit that much closer
to saturation than they say.)

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
    """The probed rates never overload the system (the workload is too light for the start
    rate and the allowed doublings), or a probe's window holds no arrivals."""


@dataclass(frozen=True)
class CapacityConfig:
    start_rps: float = 0.25
    max_doublings: int = 14
    settle_frac: float = 0.3       # skip this share of the arrival period (batches filling)
    keep_up_ratio: float = 0.9     # completions / arrivals in the window to count as keeping up
    busy_s: float = 120.0          # seconds of arrivals per probe
    min_requests: int = 200        # requests per probe, at least

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start_rps) and self.start_rps > 0):
            raise ValueError(f"CapacityConfig.start_rps must be > 0, got {self.start_rps!r}")
        if self.max_doublings < 1:
            raise ValueError(f"CapacityConfig.max_doublings must be >= 1, got "
                             f"{self.max_doublings!r}")
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
    """Saturation throughput from ``run(rate_rps, num_requests)``, which simulates the
    workload at that offered rate and returns the run's requests table."""
    probes: list[tuple[float, int, float, float, bool]] = []
    rate = config.start_rps
    for _ in range(config.max_doublings):
        n = max(config.min_requests, int(math.ceil(rate * config.busy_s)))
        arrived, done = window_rates(run(rate, n), config.settle_frac)
        if math.isnan(arrived):
            raise CapacityError(f"the probe at {rate:g} req/s has no arrival period; raise "
                                f"CapacityConfig.min_requests")
        kept_up = bool(done >= config.keep_up_ratio * arrived)
        probes.append((rate, n, arrived, done, kept_up))
        if not kept_up:
            break
        rate *= 2
    else:
        raise CapacityError(f"still keeping up at {probes[-1][0]:g} req/s after "
                            f"{config.max_doublings} doublings; the workload may be too light")
    return CapacityEstimate(probes[-1][3], pd.DataFrame(probes, columns=[
        "offered_rps", "requests", "arrival_rps", "completion_rps", "kept_up"]))
