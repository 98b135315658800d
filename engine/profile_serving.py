"""Serving probes: short real replays whose steps calibrate the cost model on serving batches.

The grid (profile_grid.py) times synthetic batches one at a time. A serving engine's steps also
schedule, complete and run the replay loop, read KV and adapter pages scattered over the pool
by admission and release, and follow one another through the caches; on a CPU that made real
steps 2-4% slower than grid points of the same shape, and a simulator with continuous
batching amplifies such a bias several times in latency (batch ~ rate x latency, latency ~
steps x step time). So the profiler also replays a few seeded synthetic traces on the engine
itself and records every step's shape and duration (the replay's tiled durations, which are
what a simulated step stands for):

1. ``saturation``: ``burst_requests`` requests arriving at once, so the engine serves flat
   out (batches as large as its limits allow) and then drains; its completion rate while
   requests still wait is the saturation throughput;
2. one open-loop Gamma trace per share in ``loads`` of that throughput, ``seconds`` long.

The workload (lengths, ranks, catalog size) is the caller's: ``manylora validate`` probes its
own workload with other seeds than the traces it validates on. Data plane: imports torch
through the engine.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from manylora.engine.engine import Engine
from manylora.engine.engine_config import EngineConfig
from manylora.engine.model_config import load_model_config
from manylora.engine.replay import ReplayConfig, drive, materialize_adapters
from manylora.engine.request import Request
from manylora.engine.run_folder import STEP_COLUMNS, StepLog
from manylora.engine.serving_probes import BURST_RATE, ServingProbeConfig, saturation_throughput
from manylora.engine.step_shape import STEP_SHAPE_FIELDS
from manylora.traces.trace import Trace


def _steps(log: StepLog) -> dict[str, list]:
    """The probe's steps, one list per StepShape field and ``duration_s``."""
    ints, times = log.columns()
    out: dict[str, list] = {name: ints[:, STEP_COLUMNS.index(name) - 2].tolist()
                            for name in STEP_SHAPE_FIELDS}
    out["duration_s"] = times[:, 1].tolist()
    return out


def _renumbered(trace: Trace, first_id: int) -> Trace:
    """The trace with request ids from ``first_id`` on (probes share one engine)."""
    return Trace(trace.requests.assign(request_id=trace.requests["request_id"] + first_id),
                 trace.adapters, trace.meta)


def run_serving_probes(model_dir: str | Path, engine_config: EngineConfig,
                       config: ServingProbeConfig, targets: Sequence[str], scratch: Path,
                       seed: int) -> dict[str, Any]:
    """Replay the probes on one engine; the profile's ``serving`` entry."""
    catalog = config.trace(1.0, 1, 0, targets)  # every probe's trace has this catalog
    folders = materialize_adapters(catalog, list(catalog.adapters["adapter_id"]),
                                   load_model_config(model_dir), scratch, seed)
    engine = Engine(model_dir, folders, engine_config)
    replay = ReplayConfig(seed=seed)
    probes: list[dict[str, Any]] = []

    def run(name: str, rate: float, n: int) -> list[Request]:
        # probes share the engine, so request ids continue where the last probe's ended
        trace = _renumbered(config.trace(rate, n, len(probes), targets), len(engine.requests))
        log = StepLog()
        drive(engine, trace, replay, log)
        probes.append({"probe": name, "offered_rps": rate, "requests": n,
                       "steps": _steps(log)})
        return [engine.requests[int(i)] for i in trace.column("request_id")]

    saturation = saturation_throughput(run("saturation", BURST_RATE, config.burst_requests))
    for load in config.loads:
        rate = load * saturation
        run(f"load-{load:g}", rate, max(config.min_requests, int(round(rate * config.seconds))))
    return {"saturation_rps": saturation, "probes": probes}
