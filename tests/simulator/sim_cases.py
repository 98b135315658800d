"""Shared helpers for the simulator tests: small traces built in memory, a deterministic
linear cost model (a test double with per-row arithmetic, so blocks equal rows bit for bit),
and one call that simulates and writes a run folder."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from manylora.engine.model_shape import ModelShape
from manylora.engine.policy_options import policies_from_options
from manylora.engine.run_folder import write_run_folder
from manylora.engine.step_shape import StepShape
from manylora.simulator.cost_base import check_tier, step_columns
from manylora.simulator.simulation import (SimulationConfig, SimulationResult, simulate,
                                           simulation_meta)
from manylora.traces import Trace

# A small Llama-like shape: page = 2 x 64 x 2 layers x 2 bytes = 512 bytes at 1 token/page.
SMALL_SHAPE = ModelShape("small-test", 2, 128, 256, 4, 2, 32, 1000)


class LinearCostModel:
    """seconds = 2 ms + 20 us/token + 50 ns/context token + 1 us/rank + host copies."""

    deterministic = True

    def _evaluate(self, s: StepShape) -> Any:
        tokens = s.prefill_tokens + s.decode_requests
        return (2e-3 + tokens * 2e-5 + s.decode_context_tokens * 5e-8 + s.sum_ranks * 1e-6
                + s.prefill_sq_tokens * 1e-9 + s.adapter_loads * 1e-4
                + s.adapter_load_bytes / 4e9)

    def step_times(self, shapes: np.ndarray) -> np.ndarray:
        return np.asarray(self._evaluate(step_columns(shapes)), dtype=np.float64)

    def step_time(self, shape: StepShape) -> float:
        return float(self._evaluate(shape))

    def adapter_load_time(self, num_bytes: int, tier: str) -> float:
        return {"host": 1e-4 + num_bytes / 4e9, "disk": 2e-3 + num_bytes / 1e9}[check_tier(tier)]

    def describe(self) -> dict[str, Any]:
        return {"name": "linear-test-double"}


def small_trace(n: int = 120, num_adapters: int = 12, rate: float = 40.0, seed: int = 0,
                cv: float = 2.0, max_len: int = 96) -> Trace:
    """Gamma arrivals, Zipf-ish adapters (some base-model requests), uniform lengths."""
    rng = np.random.default_rng(seed)
    gaps = rng.gamma(1.0 / cv**2, cv**2 / rate, n)
    weights = 1.0 / np.arange(1, num_adapters + 2)
    adapters = rng.choice(num_adapters + 1, size=n, p=weights / weights.sum()) - 1
    requests = pd.DataFrame({
        "request_id": np.arange(n), "arrival_s": np.round(np.cumsum(gaps), 6),
        "adapter_id": adapters, "prompt_len": rng.integers(1, max_len + 1, n),
        "output_len": rng.integers(1, max_len + 1, n)})
    ranks = np.array([8, 16, 32, 4])[np.arange(num_adapters) % 4]
    catalog = pd.DataFrame({"adapter_id": np.arange(num_adapters), "rank": ranks,
                            "alpha": 2.0 * ranks, "targets": "q;k;v;o"})
    return Trace(requests, catalog, {"generator": "sim-test", "params": {"n": n}, "seed": seed})


def run_sim(trace: Trace, options: dict[str, Any] | None = None, *, replicas: int = 1,
            router: str = "round-robin", jumps: bool = True, cost_model: Any = None,
            pool_pages: int = 6000) -> tuple[SimulationResult, dict[str, Any]]:
    """Simulate ``trace`` on SMALL_SHAPE; returns the result and its meta.json."""
    control = policies_from_options({"pool_pages": pool_pages, **(options or {})})
    config = SimulationConfig(replicas=replicas, router=router, jumps=jumps)
    cost = cost_model or LinearCostModel()
    result = simulate(trace, cost, control, SMALL_SHAPE, config=config)
    return result, simulation_meta(trace, cost, control, result, config)


def write_sim(trace: Trace, folder: Path, options: dict[str, Any] | None = None,
              **kwargs: Any) -> Path:
    result, meta = run_sim(trace, options, **kwargs)
    return write_run_folder(folder, result.requests, result.steps, meta)
