"""Capacity search against a queue whose capacity is known: one FIFO server, fixed service time."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from manylora.analysis.capacity import (CapacityConfig, CapacityError, measure_capacity,
                                        window_rates)

SERVICE_S = 0.25   # capacity 4 req/s


def single_server(rate: float, n: int, seed: int = 0) -> pd.DataFrame:
    """Poisson arrivals into a FIFO server with constant service (Lindley's recursion)."""
    arrival = np.cumsum(np.random.default_rng(seed).exponential(1 / rate, n))
    finish = np.empty(n)
    free_at = 0.0
    for i, t in enumerate(arrival):
        free_at = max(free_at, t) + SERVICE_S
        finish[i] = free_at
    return pd.DataFrame({"arrival_s": arrival, "status": "finished", "finish_s": finish})


def test_window_rates_of_an_overloaded_server():
    arrived, done = window_rates(single_server(8.0, 4000), settle_frac=0.3)
    assert arrived == pytest.approx(8.0, rel=0.05)
    assert done == pytest.approx(1 / SERVICE_S, rel=0.01)


def test_capacity_of_a_single_server_is_its_service_rate():
    estimate = measure_capacity(single_server, CapacityConfig(start_rps=0.5, busy_s=400))
    # the first overloaded probe (8 req/s) serves flat out: 1 / SERVICE_S, not the 10% more
    # that "completions within 90% of arrivals" would still accept
    assert estimate.capacity_rps == pytest.approx(1 / SERVICE_S, rel=0.01)
    probes = estimate.probes
    assert probes["offered_rps"].tolist() == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert probes["kept_up"].tolist() == [True] * 4 + [False]
    assert estimate.capacity_rps == probes["completion_rps"].iloc[-1]


def test_an_overloaded_first_probe_already_measures_capacity():
    estimate = measure_capacity(single_server, CapacityConfig(start_rps=100, busy_s=50))
    assert len(estimate.probes) == 1
    assert estimate.capacity_rps == pytest.approx(1 / SERVICE_S, rel=0.01)


def test_capacity_search_limits():
    with pytest.raises(CapacityError, match="still keeping up"):
        measure_capacity(single_server, CapacityConfig(start_rps=0.01, max_doublings=3))
    with pytest.raises(ValueError, match="CapacityConfig.keep_up_ratio"):
        CapacityConfig(keep_up_ratio=1.5)
