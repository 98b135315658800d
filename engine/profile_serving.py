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

from manylora.engine.anchor_config import anchor_record
from manylora.engine.engine import Engine
from manylora.engine.engine_config import EngineConfig
from manylora.engine.model_config import load_model_config
from manylora.engine.replay import ReplayConfig, drive, in_fresh_process, materialize_adapters
from manylora.engine.run_folder import STEP_COLUMNS, StepLog
from manylora.engine.serving_probes import (BURST_RATE, SATURATION_PROBE, ServingProbeConfig,
                                            saturation_throughput)
from manylora.engine.step_shape import STEP_SHAPE_FIELDS


def _steps(log: StepLog) -> dict[str, list]:
    """The probe's steps, one list per StepShape field and ``duration_s``."""
    ints, times = log.columns()
    out: dict[str, list] = {name: ints[:, STEP_COLUMNS.index(name) - 2].tolist()
                            for name in STEP_SHAPE_FIELDS}
    out["duration_s"] = times[:, 1].tolist()
    return out


def _probe(model_dir: str | Path, engine_config: EngineConfig, config: ServingProbeConfig,
           targets: Sequence[str], folders: dict[int, Path], seed: int, index: int, name: str,
           rate: float, n: int) -> tuple[dict[str, Any], float]:
    """One probe on an engine of its own: its profile entry and its completion rate while
    requests waited (the saturation throughput, for the saturation probe)."""
    engine = Engine(model_dir, folders, engine_config)
    trace = config.trace(rate, n, index, targets)
    log = StepLog()
    passes = drive(engine, trace, ReplayConfig(seed=seed, anchor=config.anchor), log)
    served = [engine.requests[int(i)] for i in trace.column("request_id")]
    entry = {"probe": name, "offered_rps": rate, "requests": n, "steps": _steps(log)}
    if config.anchor is not None:
        entry["anchor"] = anchor_record(config.anchor, passes)
    return entry, saturation_throughput(served)


def run_serving_probes(model_dir: str | Path, engine_config: EngineConfig,
                       config: ServingProbeConfig, targets: Sequence[str], scratch: Path,
                       seed: int) -> dict[str, Any]:
    """Replay the probes, each on a fresh engine in a fresh process (``in_fresh_process``: on
    a small CPU, work that followed other work in one process ran up to ~10% slower, and the
    replays the profile is compared with run in fresh processes); the profile's ``serving``
    entry."""
    catalog = config.trace(1.0, 1, 0, targets)  # every probe's trace has this catalog
    folders = materialize_adapters(catalog, list(catalog.adapters["adapter_id"]),
                                   load_model_config(model_dir), scratch, seed)
    probes: list[dict[str, Any]] = []

    def run(name: str, rate: float, n: int) -> float:
        probe, completion_rate = in_fresh_process(_probe, model_dir, engine_config, config,
                                                  targets, folders, seed, len(probes), name,
                                                  rate, n)
        probes.append(probe)
        return completion_rate

    saturation = run(SATURATION_PROBE, BURST_RATE, config.burst_requests)
    for load in config.loads:
        rate = load * saturation
        run(f"load-{load:g}", rate, max(config.min_requests, int(round(rate * config.seconds))))
    return {"saturation_rps": saturation, "probes": probes}
