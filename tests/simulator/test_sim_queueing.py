"""Queueing oracles: with batch size 1 and one output token per request, one prefill step is
the whole service and a replica is a single-server FIFO queue. Poisson arrivals at rate 0.5
against unit mean service (utilisation 0.5), 100,000 requests each:

- constant steps (M/D/1): mean wait = rho * D / (2 (1 - rho)) = 0.5 (Pollaczek-Khinchine);
- exponential steps (M/M/1): mean wait = rho / (mu - lambda) = 1.0.

The simulated mean wait (admission - arrival) must be within 3% of the closed form. Over
100,000 requests the sample mean itself scatters by about 1.4% (M/D/1) and 1.7% (M/M/1) from
seed to seed (Lindley recursions over 30 seeds), so that bound alone is a loose test; the
exact one is that every simulated wait equals the Lindley recursion
``W[n] = max(0, W[n-1] + S[n-1] - (A[n] - A[n-1]))`` over the same arrivals and service times.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from manylora.engine.model_shape import LLAMA2_7B
from manylora.engine.scheduler_config import ControlConfig
from manylora.simulator.queueing_cost_models import ConstantCostModel, ExponentialCostModel
from manylora.simulator.simulation import simulate
from manylora.traces import Trace

N = 100_000
RATE = 0.5
SERVICE_S = 1.0


def poisson_trace(seed: int) -> Trace:
    rng = np.random.default_rng(seed)
    requests = pd.DataFrame({"request_id": np.arange(N),
                             "arrival_s": np.cumsum(rng.exponential(1.0 / RATE, N)),
                             "adapter_id": -1, "prompt_len": 1, "output_len": 1})
    adapters = pd.DataFrame({"adapter_id": [0], "rank": [8], "alpha": [16.0],
                             "targets": ["q;k;v;o"]})
    return Trace(requests, adapters, {"generator": "poisson-test", "params": {}, "seed": seed})


def lindley(arrival_s: np.ndarray, service_s: np.ndarray) -> np.ndarray:
    """Waits of a FIFO single-server queue, [n]."""
    wait = np.zeros(len(arrival_s))
    gaps = np.diff(arrival_s).tolist()
    w = 0.0
    for n, (s, gap) in enumerate(zip(service_s.tolist(), gaps), start=1):
        w = max(0.0, w + s - gap)
        wait[n] = w
    return wait


@pytest.mark.parametrize("name, make_model, draw_services, expected", [
    ("M/D/1", lambda: ConstantCostModel(SERVICE_S), lambda: np.full(N, SERVICE_S),
     RATE * SERVICE_S * SERVICE_S / (2 * (1 - RATE * SERVICE_S))),
    ("M/M/1", lambda: ExponentialCostModel(SERVICE_S, seed=11),
     lambda: np.random.default_rng(11).exponential(SERVICE_S, N),  # the model's draws
     RATE / ((1 / SERVICE_S) * (1 / SERVICE_S - RATE))),
])
def test_mean_wait_matches_closed_form(name, make_model, draw_services, expected) -> None:
    trace = poisson_trace(seed=3)
    control = ControlConfig.from_flat({"max_batch_size": 1, "pool_pages": 64})
    result = simulate(trace, make_model(), control, LLAMA2_7B)
    assert all(r.state.value == "finished" for r in result.requests)
    assert len(result.steps) == N  # one step per request: the service is exactly one step
    wait = np.array([r.admitted_s - r.arrival_s for r in result.requests])  # [N]
    exact = lindley(trace.column("arrival_s"), draw_services())
    assert np.abs(wait - exact).max() < 1e-9, f"{name}: waits differ from the recursion"
    assert abs(wait.mean() / expected - 1) < 0.03, f"{name}: {wait.mean():.4f} vs {expected}"


def test_constant_service_is_exact_for_deterministic_arrivals() -> None:
    """D/D/1 below saturation never waits; above it the wait grows by the gap each time."""
    control = ControlConfig.from_flat({"max_batch_size": 1, "pool_pages": 64})
    adapters = pd.DataFrame({"adapter_id": [0], "rank": [8], "alpha": [16.0],
                             "targets": ["q"]})
    for gap, waits in ((1.5, [0.0] * 5), (0.75, [0.0, 0.25, 0.5, 0.75, 1.0])):
        requests = pd.DataFrame({"request_id": np.arange(5), "arrival_s": gap * np.arange(5),
                                 "adapter_id": -1, "prompt_len": 3, "output_len": 1})
        trace = Trace(requests, adapters, {"generator": "dd1", "params": {}, "seed": 0})
        result = simulate(trace, ConstantCostModel(1.0), control, LLAMA2_7B)
        assert [r.admitted_s - r.arrival_s for r in result.requests] == pytest.approx(waits)
