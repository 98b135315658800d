"""A cheap stand-in for the sweep's point function, for tests of the sweep machinery.

``standin_point`` scores a small synthetic requests table derived from the point's keys
(deterministic: higher rate and cv mean later first tokens), so its rows pass the sweep-table
schema and differ between points. Each call leaves a marker file in ``$SWEEP_STANDIN_LOG``
(when set), so a test can count executions across worker processes, and sleeps
``$SWEEP_STANDIN_SLEEP_S`` seconds (when set), so a test can kill a sweep mid-run. The point
whose grid index is ``$SWEEP_STANDIN_FAIL_AT`` (when set) raises :class:`StandinFailure`.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from manylora.analysis.sweep_grid import PointTask
from manylora.analysis.sweep_store import PointResult
from manylora.analysis.sweep_table import sweep_rows

LOG_ENV = "SWEEP_STANDIN_LOG"
SLEEP_ENV = "SWEEP_STANDIN_SLEEP_S"
FAIL_ENV = "SWEEP_STANDIN_FAIL_AT"


class StandinFailure(RuntimeError):
    """A deliberate failure of one point (a bug in a worker, as far as the sweep knows)."""


def synthetic_requests(task: PointTask, n: int = 20) -> pd.DataFrame:
    keys = task.keys
    arrival = np.arange(n, dtype=np.float64) / keys["rate"]
    ttft = 0.5 * keys["cv"] * keys["rate"] * (1 + np.arange(n) % 4) / (1 + keys["seed"])
    finished = ttft < 20
    first = np.where(finished, arrival + ttft, np.nan)
    return pd.DataFrame({
        "request_id": np.arange(n), "arrival_s": arrival, "adapter_id": np.arange(n) % 3,
        "prompt_len": 8, "output_len": 4,
        "status": np.where(finished, "finished", "aborted"),
        "reason": np.where(finished, "", "ttft-slo-unreachable"),
        "admitted_s": arrival, "first_token_s": first, "finish_s": first + 0.3,
        "output_tokens": np.where(finished, 4, 0), "preemptions": 0, "replica": 0})


def standin_point(task: PointTask) -> PointResult:
    if os.environ.get(FAIL_ENV) == str(task.index):
        raise StandinFailure(f"point {task.index} failed on purpose")
    delay = float(os.environ.get(SLEEP_ENV, "0"))
    if delay:
        time.sleep(delay)
    log = os.environ.get(LOG_ENV)
    if log:
        (Path(log) / f"{task.point_id}-{os.getpid()}-{time.perf_counter_ns()}").touch()
    metrics = task.metrics
    rows = sweep_rows(synthetic_requests(task), task.keys, metrics.slo, metrics.slo_scales,
                      metrics.window)
    return PointResult(task.point_id, task.index, rows.to_dict(orient="records"), 0.001)


def executions(log: Path) -> list[str]:
    """Point ids run so far, one entry per execution."""
    return [p.name.split("-")[0] for p in log.iterdir()]
