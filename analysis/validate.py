"""``manylora validate``: does the simulator reproduce the engine on this machine?

1. the checkpoint (given, or random of a named shape; the tiny model by default);
2. profile the engine over the batch shapes the validation will produce and fit the cost model
   (``profile.json``, with its cross-validated error);
3. capacity: the highest rate the engine keeps up with, by simulation over the fitted model
   (``capacity.py``; ``capacity.csv`` lists the probes);
4. one Gamma trace per load level (50%, 85%, 120% of capacity by default), each replayed on
   the engine and simulated with the fitted model over the same pool;
5. ``manylora compare`` of each pair, and a summary: throughput, mean latency and P90 TTFT of
   simulation vs engine at each level, within the tolerance or not (``summary.csv``,
   ``report.md``, ``fidelity.png``).

Speed anchors (engine/anchor_config.py, on unless ``ValidateConfig.anchor`` is None): every
second the serving probes the cost model is calibrated on, and every replay, pause their clock
and time one pass over a few fixed steps that are not the replay's own. A shared machine
drifts by 3-10% within a minute; a replay's passes over the probes' say how many times slower
or faster the machine ran at each moment of it than during calibration, and the simulation of
that replay runs on a machine of that speed (``SpeedProfile``: simulated in the machine's work
time, reported in wall time). The summary keeps the simulation at profiling speed beside it
(``simulator_unanchored``).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from manylora.analysis.capacity import CapacityEstimate, measure_capacity
from manylora.analysis.compare import CompareConfig, compare_runs, fidelity_table
from manylora.analysis.experiment import Deployment, requests_frame
from manylora.analysis.outputs import write_csv
from manylora.analysis.run_folder import Run, read_run
from manylora.analysis.style import save_figure
from manylora.analysis.validate_results import (LevelResult, plot_fidelity, report_text,
                                                step_table, summary_table)
from manylora.analysis.validate_workload import (MODEL_SPECS, VALIDATION_GRID, ValidateConfig,
                                                 validation_trace)
from manylora.engine.anchor_config import (anchor_passes, anchor_times, check_same_steps,
                                           mean_pass)
from manylora.engine.engine_config import EngineConfig
from manylora.engine.make_tiny import write_model
from manylora.engine.profiler import ProfilerConfig, profile_engine
from manylora.engine.replay import ReplayConfig, in_fresh_process, replay_trace_fresh
from manylora.engine.tiny_spec import TINY_DTYPES
from manylora.simulator.cost_model import fitted_cost_model
from manylora.simulator.fitted_cost_model import fit_profile
from manylora.simulator.profile_file import (Profile, profile_from_dict, read_profile,
                                             write_profile)
from manylora.simulator.speed_profile import SpeedProfile
from manylora.traces import write_trace
from manylora.traces.atomic_io import atomic_write_text

Log = Callable[[str], None]


class ValidationError(ValueError):
    """A validation cannot run as configured (e.g. a level would use too few adapters)."""


@dataclass(frozen=True)
class ValidationResult:
    summary: pd.DataFrame              # load, rate_rps, requests, metric, engine, simulator, ...
    capacity: CapacityEstimate
    levels: dict[float, LevelResult]
    report: Path

    @property
    def passed(self) -> bool:
        return bool(self.summary["within_tolerance"].all())


def ensure_model(model_dir: str | Path | None, model_shape: str | None, work: Path,
                 seed: int, dtype: str = "float32") -> Path:
    """The checkpoint to validate: ``model_dir`` as given, else a random one of
    ``model_shape`` (default: the tiny model) written to ``work/model`` in ``dtype`` (the
    engine's, when make-tiny can store it: a Llama-7B shape in bf16 is 13 GB, in fp32 27)."""
    if model_dir is not None:
        return Path(model_dir)
    name = model_shape or "tiny"
    if name not in MODEL_SPECS:
        raise ValueError(f"unknown model shape {name!r}; choose one of {', '.join(MODEL_SPECS)}")
    target = work / "model"
    if not (target / "config.json").is_file():
        spec = MODEL_SPECS[name]
        write_model(target, replace(spec, dtype=dtype if dtype in TINY_DTYPES else spec.dtype),
                    seed)
    return target


def profile_and_fit(model: Path, engine: EngineConfig, profiler: ProfilerConfig, out: Path,
                    log: Log) -> Path:
    log(f"profiling the engine ({model}) ...")
    # in a process of its own, like every replay it will be compared with
    measured = in_fresh_process(profile_engine, model, None, engine, profiler)
    path = out / "profile.json"
    profile = profile_from_dict(measured, str(path))
    fit = fit_profile(profile)
    write_profile(profile.with_fit(fit), path)
    error = fit["cv"]["forms"][fit["form"]]["mape_pct"]
    log(f"wrote {path}: cost model {fit['form']!r}, cross-validated MAPE {error:.1f}%")
    return path


def deployment(profile_path: Path, engine: EngineConfig) -> tuple[Deployment, Profile]:
    """The fitted cost model over the engine's pool (the same pages the replay gets)."""
    profile = read_profile(profile_path)
    return Deployment.for_engine(fitted_cost_model(profile_path), profile.model, engine), profile


def find_capacity(config: ValidateConfig, setup: Deployment, out: Path,
                  log: Log) -> CapacityEstimate:
    def run(rate: float, n: int) -> pd.DataFrame:
        return requests_frame(setup.simulate(validation_trace(config, rate, n, 1)).requests)

    estimate = measure_capacity(run, config.capacity)
    write_csv(estimate.probes, out / "capacity.csv")
    log(f"capacity: {estimate.capacity_rps:.3g} req/s ({len(estimate.probes)} simulated probes)")
    return estimate


def _load_average() -> float:
    """The machine's 1-minute load average (NaN where the OS has none): a replay measures
    the engine's speed, so other work on the machine shows in it."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan


def replay_speed(run: Run, reference: tuple[list, list[float]] | None,
                 window: int) -> SpeedProfile | None:
    """How many times slower than during calibration the machine ran over the replay, from
    its speed-anchor passes against the probes' (``reference``: steps and pass seconds); None
    without anchors on either side."""
    record = run.meta.get("anchor")
    if reference is None or record is None:
        return None
    where = f"{run.path / 'meta.json'}: anchor"
    steps, passes = anchor_passes(record, where)
    check_same_steps(steps, reference[0])
    return SpeedProfile.from_passes(anchor_times(record, where), passes,
                                    mean_pass(reference[1]), window,
                                    f"speed anchor of {run.path.name} over the serving probes'")


def run_level(config: ValidateConfig, setup: Deployment, model: Path, engine: EngineConfig,
              level: float, rate: float, n: int, out: Path, log: Log,
              reference: tuple[list, list[float]] | None = None) -> LevelResult:
    """Trace at ``rate``; engine replay(s) and simulation of it (on the machine's speed over
    the compared replay, when the replays and ``reference``, the calibration's anchor, have
    speed anchors); their comparisons."""
    folder = out / f"load-{round(level * 100):03d}"
    trace = validation_trace(config, rate, n)
    used = len(np.unique(trace.column("adapter_id")))
    if used < config.min_adapters:
        raise ValidationError(f"the level-{level:g} trace uses {used} adapters, fewer than "
                              f"{config.min_adapters}; raise num_adapters or requests")
    write_trace(trace, folder / "trace")
    log(f"load {level:.0%}: {n} requests over {used} adapters at {rate:.3g} req/s; replaying "
        f"on the engine (about {n / rate / 60:.1f} min) ...")
    names = ["engine"] + [f"engine-{k + 1}" for k in range(1, config.engine_repeats)]
    before = _load_average()
    for name in names:
        replay_trace_fresh(folder / "trace", model, None, folder / name,
                           setup.engine_config(engine),
                           ReplayConfig(materialize_missing=True, seed=config.seed,
                                        anchor=config.anchor))
    machine_load = (before, _load_average())
    runs = {name: read_run(folder / name) for name in names}
    compared, farthest = reference_replay(runs)
    speed = replay_speed(runs[compared], reference,
                         config.anchor.smooth_passes if config.anchor is not None else 1)
    compare = CompareConfig(tolerance=config.tolerance, labels=("engine", "simulator"))
    slowdown, unanchored = (math.nan,) * 3, None
    if speed is not None:  # anchored: the fitted model at profiling speed beside it
        steps = runs[compared].steps
        end = float((steps["start_s"] + steps["duration_s"]).max()) if len(steps) else 0.0
        slowdown = (speed.mean_factor(end), min(speed.factors), max(speed.factors))
        log(f"  speed anchor during {compared}: {slowdown[0]:.3f} x the calibration's "
            f"step time on average ({slowdown[1]:.3f}-{slowdown[2]:.3f})")
        setup.simulate_run(trace, folder / "sim-unanchored", config.seed)
        unanchored = fidelity_table(runs[compared], read_run(folder / "sim-unanchored"),
                                    compare)
    setup.simulate_run(trace, folder / "sim", config.seed, speed)
    comparison = compare_runs(runs[compared], read_run(folder / "sim"), folder / "compare",
                              compare, setup.cost_model)
    repeat = None
    if farthest is not None:
        repeat = compare_runs(runs[compared], runs[farthest], folder / "engine-repeat",
                              CompareConfig(tolerance=config.tolerance,
                                            labels=(compared, farthest)))
    return LevelResult(rate, n, comparison, repeat, machine_load, compared, slowdown,
                       unanchored)


def reference_replay(runs: dict[str, Run]) -> tuple[str, str | None]:
    """Which engine replay the simulator is compared with, and which one shows the machine's
    spread. One replay: itself, none. Two: the first, the second. Three or more: the replay of
    median mean step time (steps tile a replay's time, so a machine that runs slower shows as
    longer steps), and the replay whose mean step lies farthest from it; on a shared machine a
    neighbour's work then moves one replay, not the comparison."""
    names = list(runs)
    speed = {name: float(run.steps["duration_s"].mean()) for name, run in runs.items()}
    if len(names) < 3:
        return names[0], (names[1] if len(names) > 1 else None)
    reference = sorted(names, key=speed.__getitem__)[(len(names) - 1) // 2]
    farthest = max((n for n in names if n != reference),
                   key=lambda n: abs(speed[n] - speed[reference]))
    return reference, farthest


def run_validation(out_dir: str | Path, config: ValidateConfig = ValidateConfig(), *,
                   model_dir: str | Path | None = None, model_shape: str | None = None,
                   engine: EngineConfig = EngineConfig(),
                   profiler: ProfilerConfig = ProfilerConfig(grid=VALIDATION_GRID),
                   log: Log = lambda message: None) -> ValidationResult:
    """Run the whole validation (module docstring) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if profiler.serving is not None:  # calibrate on this workload, with other seeds
        profiler = replace(profiler, serving=config.serving_probes(profiler.serving))
    model = ensure_model(model_dir, model_shape, out, config.seed, engine.dtype)
    profile_path = profile_and_fit(model, engine, profiler, out, log)
    setup, profile = deployment(profile_path, engine)
    reference = None
    if config.anchor is not None:
        # every probe's passes, the saturation probe's too: the machine's speed while the
        # profile was measured
        reference = profile.serving.anchor() if profile.serving is not None else None
        if reference is None:
            log("no speed anchor in the serving probes: simulations priced by the fitted "
                "model alone")
    capacity = find_capacity(config, setup, out, log)
    n = config.requests_per_level(capacity.capacity_rps)
    levels = {level: run_level(config, setup, model, engine, level,
                               level * capacity.capacity_rps, n, out, log, reference)
              for level in config.levels}
    summary = summary_table(levels)
    write_csv(summary, out / "summary.csv")
    save_figure(plot_fidelity(summary, config.tolerance), out, "fidelity")
    report = atomic_write_text(out / "report.md",
                               report_text(config, summary, step_table(levels), capacity, profile))
    return ValidationResult(summary, capacity, levels, report)
