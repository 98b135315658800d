"""One sweep point in a worker: generate the trace, simulate it, score it, return the rows.

Everything comes from the task (sweep_grid.PointTask): the trace is drawn from its config and
seed in the worker, so nothing but the small task travels to a worker and nothing but the
rows (and, when runs are kept, the run folder's bytes) comes back; Ray workers on other
machines need no shared filesystem. Cost models are built once per worker process
(sweep_options' caches).

The run is scored from exactly the text the run folder's requests.csv holds (times rounded
to microseconds), so a point's metrics equal ``manylora metrics`` on its kept run folder.
"""
from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import pandas as pd

from manylora.analysis.sweep_grid import PointTask
from manylora.analysis.sweep_options import cost_args, cost_model, placed, simulation_config
from manylora.analysis.sweep_store import PointResult
from manylora.analysis.sweep_table import sweep_rows
from manylora.engine.run_folder import RUN_FILES, requests_text, write_run_folder
from manylora.simulator.simulation import SimulationResult, simulate, simulation_meta
from manylora.traces import Trace, generate_trace

_TIME_COLUMNS = ("admitted_s", "first_token_s", "finish_s")


def requests_table(result: SimulationResult) -> pd.DataFrame:
    """The run's requests.csv as a frame (empty time cells are NaN)."""
    return pd.read_csv(io.StringIO(requests_text(result.requests)), keep_default_na=False,
                       na_values={c: [""] for c in _TIME_COLUMNS}, dtype={"reason": str})


def _run_files(task: PointTask, trace: Trace, result: SimulationResult) -> dict[str, bytes]:
    profile, hardware, model_shape = cost_args(task.simulate)
    meta = simulation_meta(trace, cost_model(profile, hardware, model_shape), task.control,
                           result, simulation_config(task.simulate, task.trace.seed))
    # The policy's name from the sweep file, which `manylora plot` uses as the run's label.
    meta["policy"] = task.keys["policy"]
    with tempfile.TemporaryDirectory(prefix="manylora-point-") as tmp:
        folder = write_run_folder(Path(tmp) / "run", result.requests, result.steps, meta)
        return {name: (folder / name).read_bytes() for name in RUN_FILES}


def run_point(task: PointTask) -> PointResult:
    """Simulate one point and return its sweep-table rows (one per SLO scale)."""
    start = time.perf_counter()
    trace = generate_trace(task.trace)
    profile, hardware, model_shape = cost_args(task.simulate)
    result = simulate(trace, cost_model(profile, hardware, model_shape), task.control,
                      placed(task.control, task.simulate).shape,
                      config=simulation_config(task.simulate, task.trace.seed))
    metrics = task.metrics
    rows = sweep_rows(requests_table(result), task.keys, metrics.slo, metrics.slo_scales,
                      metrics.window)
    files = _run_files(task, trace, result) if task.keep_run else {}
    return PointResult(task.point_id, task.index, rows.to_dict(orient="records"),
                       time.perf_counter() - start, files)
