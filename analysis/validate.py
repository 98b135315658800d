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
from matplotlib.figure import Figure
from scipy.stats import trim_mean

from manylora.analysis.capacity import CapacityEstimate, measure_capacity
from manylora.analysis.compare import (FIDELITY_METRICS, CompareConfig, Comparison,
                                       compare_runs, fidelity_table)
from manylora.analysis.experiment import Deployment, requests_frame
from manylora.analysis.outputs import write_csv
from manylora.analysis.report import figure_links, markdown_table
from manylora.analysis.run_folder import Run, read_run
from manylora.analysis.style import (PALETTE, REFERENCE_COLOR, legend_outside, new_figure,
                                     save_figure, styled)
from manylora.analysis.validate_workload import (MODEL_SPECS, VALIDATION_GRID, ValidateConfig,
                                                 validation_trace)
from manylora.engine.anchor_config import TRIM, anchor_factor, anchor_passes, anchor_times
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
class LevelResult:
    """One load level: simulation vs engine, and another engine replay vs the one compared
    (the machine's run-to-run noise) when the engine was replayed more than once."""

    rate_rps: float
    requests: int
    comparison: Comparison
    repeat: Comparison | None = None
    machine_load: tuple[float, float] = (math.nan, math.nan)  # 1-min load avg, before/after
    reference: str = "engine"  # the replay compared with the simulator (reference_replay)
    speed: tuple[float, float, float] = (math.nan,) * 3  # anchored slowdown: mean, min, max
    unanchored: pd.DataFrame | None = None  # fidelity at profiling speed (without anchors)

    @property
    def factor(self) -> float:
        """The simulated machine's mean slowdown over the replay (1 without anchors)."""
        return 1.0 if math.isnan(self.speed[0]) else self.speed[0]


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
    anchor_factor(steps, passes, *reference)  # the same steps, or AnchorMismatchError
    return SpeedProfile.from_passes(anchor_times(record, where), passes,
                                    float(trim_mean(reference[1], TRIM)), window,
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
    result = LevelResult(rate, n, None, machine_load=machine_load,  # type: ignore[arg-type]
                         reference=compared)
    if speed is not None:  # anchored: the fitted model at profiling speed beside it
        end = float((runs[compared].steps["start_s"] + runs[compared].steps["duration_s"])
                    .max()) if len(runs[compared].steps) else 0.0
        result = replace(result, speed=(speed.mean_factor(end), min(speed.factors),
                                        max(speed.factors)))
        log(f"  speed anchor during {compared}: {result.speed[0]:.3f} x the calibration's "
            f"step time on average ({result.speed[1]:.3f}-{result.speed[2]:.3f})")
        setup.simulate_run(trace, folder / "sim-unanchored", config.seed)
        result = replace(result, unanchored=fidelity_table(
            runs[compared], read_run(folder / "sim-unanchored"), compare))
    setup.simulate_run(trace, folder / "sim", config.seed, speed)
    comparison = compare_runs(runs[compared], read_run(folder / "sim"), folder / "compare",
                              compare, setup.cost_model)
    repeat = None
    if farthest is not None:
        repeat = compare_runs(runs[compared], runs[farthest], folder / "engine-repeat",
                              CompareConfig(tolerance=config.tolerance,
                                            labels=(compared, farthest)))
    return replace(result, comparison=comparison, repeat=repeat)


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


def summary_table(levels: dict[float, LevelResult]) -> pd.DataFrame:
    """One row per (load level, fidelity metric); ``engine_noise`` is the second engine
    replay's relative difference from the first (NaN without a repeat); ``speed_factor`` what
    the simulation's step times were multiplied by (speed anchors; 1 without), and the
    simulation with the fitted model alone beside it (NaN without anchors)."""
    rows = []
    for level, result in levels.items():
        noise = (result.repeat.fidelity.set_index("metric")["rel_error"]
                 if result.repeat is not None else {})
        alone = (result.unanchored.set_index("metric")
                 if result.unanchored is not None else None)
        for row in result.comparison.fidelity.itertuples(index=False):
            rows.append({"load": level, "rate_rps": result.rate_rps,
                         "requests": result.requests, "engine_run": result.reference,
                         "metric": row.metric, "engine": row.A,
                         "simulator": row.B, "rel_error": row.rel_error,
                         "within_tolerance": bool(row.within_tolerance),
                         "engine_noise": float(noise.get(row.metric, math.nan)),
                         "speed_factor": result.factor,
                         "simulator_unanchored": math.nan if alone is None
                         else float(alone.at[row.metric, "B"]),
                         "rel_error_unanchored": math.nan if alone is None
                         else float(alone.at[row.metric, "rel_error"])})
    return pd.DataFrame(rows)


def step_table(levels: dict[float, LevelResult]) -> pd.DataFrame:
    """Per load level: the two runs' steps and busy time, the (anchored) cost model's busy-time
    bias and mean error on the engine's own steps (what continuous batching amplifies), the
    speed anchors around the replay and what its steps say of the machine's speed."""
    rows = []
    for level, result in levels.items():
        stats = result.comparison.step_times.set_index("run")
        engine, sim = stats.iloc[0], stats.iloc[1]
        model = stats.iloc[2] if len(stats) > 2 else pd.Series(dtype=float)
        rows.append({"load": level, "engine_steps": int(engine["steps"]),
                     "sim_steps": int(sim["steps"]), "engine_busy_s": engine["busy_s"],
                     "sim_busy_s": sim["busy_s"],
                     "model_busy_bias_pct": model.get("busy_rel_error", math.nan) * 100,
                     "model_mape_pct": model.get("mape_pct", math.nan),
                     "speed_factor": result.factor, "speed_min": result.speed[1],
                     "speed_max": result.speed[2],
                     "load_avg_before": result.machine_load[0],
                     "load_avg_after": result.machine_load[1]})
    return pd.DataFrame(rows)


def _calibration(profile: Profile) -> list[str]:
    """What the fit says about the serving probes (empty without them)."""
    fit = profile.fit or {}
    if not fit.get("serving_in_sample"):
        return []
    lines = [f"- serving probes: {', '.join(fit['serving_in_sample'])} (short replays of this "
             f"workload with other seeds; fit weight {fit.get('serving_weight', 0):g} on "
             f"them); busy-time bias of the fitted model on each: " + ", ".join(
                 f"{name} {e['busy_bias_pct']:+.2f}%"
                 for name, e in fit["serving_in_sample"].items())]
    held_out = (fit["cv"].get("serving") or {}).get("candidates", [])
    chosen = [c for c in held_out if c["form"] == fit["form"]
              and c["serving_weight"] == fit.get("serving_weight")]
    if chosen:
        lines.append("- cross-validated (each probe predicted by a fit without it): " + ", ".join(
            f"{name} {e['busy_bias_pct']:+.2f}%" for name, e in chosen[0]["probes"].items()))
    return lines


def plot_fidelity(summary: pd.DataFrame, tolerance: float) -> Figure:
    """Relative error of each fidelity metric at each load level, against the tolerance."""
    levels = sorted(summary["load"].unique())
    width = 0.8 / len(FIDELITY_METRICS)
    with styled():
        fig, (ax,) = new_figure()
        for i, metric in enumerate(FIDELITY_METRICS):
            rows = summary[summary["metric"] == metric].set_index("load").loc[levels]
            x = np.arange(len(levels)) + (i - (len(FIDELITY_METRICS) - 1) / 2) * width
            ax.bar(x, rows["rel_error"] * 100, width, color=PALETTE[i], label=metric)
            noise = rows["engine_noise"].to_numpy() * 100
            if not np.isnan(noise).all():
                ax.plot(x, noise, linestyle="none", marker="D", color="black", markersize=5,
                        label="engine vs engine" if i == 0 else None)
        ax.axhspan(-tolerance * 100, tolerance * 100, color=REFERENCE_COLOR, alpha=0.12,
                   label=f"within {tolerance:.0%}")
        ax.axhline(0, color=REFERENCE_COLOR, linewidth=0.8)
        ax.set_xticks(np.arange(len(levels)), [f"{level:.0%}" for level in levels])
        ax.set_xlabel("Offered load (share of capacity)")
        ax.set_ylabel("Simulator vs engine error (%)")
        legend_outside(fig, ax)
    return fig


def _anchoring(config: ValidateConfig, summary: pd.DataFrame) -> list[str]:
    """How fast the simulated machine ran: as the speed anchors say, or as profiled."""
    if config.anchor is None:
        return ["Speed anchors were off (`--no-anchor`): every simulation runs at the speed "
                "the engine was profiled at.", ""]
    worst = summary.assign(a=summary["rel_error_unanchored"].abs()).groupby("load")["a"].max()
    return [
        f"Speed anchors: every {config.anchor.every_s:g} s the serving probes (which calibrate "
        "the cost model) and every replay paused their clock and timed one pass over a few "
        "fixed steps "
        "(decode batches of 1-128, prefills beside decodes), not the replay's own "
        "(`anchor` in each run's meta.json and in profile.json). Each simulation runs on a "
        "machine as many times slower than during calibration as its replay's passes (median "
        f"of {config.anchor.smooth_passes} around each) over the probes' mean (10% trimmed), "
        "moment by "
        "moment (`speed_profile` in the simulated run's meta.json): `speed_factor` is its mean "
        "over the replay, `speed_min` / `speed_max` its extremes (the machine's drift). "
        "`simulator_unanchored` / `rel_error_unanchored_pct`: the same trace simulated at "
        "profiling speed; its largest error per level: " + ", ".join(
            f"{level:.0%} {value * 100:.1f}%" for level, value in worst.items()) + ".", ""]


def _report(config: ValidateConfig, summary: pd.DataFrame, steps: pd.DataFrame,
            capacity: CapacityEstimate, profile: Profile) -> str:
    cv = profile.fit["cv"]["forms"][profile.fit["form"]] if profile.fit else {}
    verdict = "PASS" if summary["within_tolerance"].all() else "FAIL"
    table = summary.assign(rel_error_pct=summary["rel_error"] * 100,
                           engine_noise_pct=summary["engine_noise"] * 100,
                           rel_error_unanchored_pct=summary["rel_error_unanchored"] * 100)
    table = table.drop(columns=["rel_error", "engine_noise", "rel_error_unanchored"])
    return "\n".join([
        "# Simulator validation against the engine", "",
        f"- machine: {profile.hardware.get('device_name') or profile.hardware.get('device')}, "
        f"{profile.hardware.get('cpu_model', '')} ({profile.hardware.get('cpu_affinity')} "
        f"cores usable, {profile.hardware.get('torch_threads')} torch threads)",
        f"- model: {profile.model.name} ({profile.model.num_layers} layers, hidden "
        f"{profile.model.hidden_size})",
        f"- cost model: fitted form {profile.fit['form'] if profile.fit else 'n/a'}, "
        f"cross-validated MAPE {cv.get('mape_pct', math.nan):.1f}% over "
        f"{len(profile.steps)} profiled step shapes",
        *_calibration(profile),
        f"- capacity: {capacity.capacity_rps:.3g} req/s, the simulated saturation throughput "
        f"(probes in capacity.csv)",
        f"- workload: Gamma arrivals cv {config.cv:g}, prompts {config.prompt_range[0]}-"
        f"{config.prompt_range[1]}, outputs {config.output_range[0]}-{config.output_range[1]} "
        f"tokens, {config.num_adapters} adapters of ranks "
        f"{', '.join(map(str, config.ranks))} (uniform popularity)", "",
        f"## Fidelity: {verdict} (tolerance {config.tolerance:.0%})", "",
        markdown_table(table), "",
        "`engine_noise_pct`: another replay of the same trace on the engine, relative to the "
        "one compared (with 3 or more replays: the replay of median mean step time, against "
        "the one farthest from it) - the machine's own run-to-run spread, which bounds the "
        "fidelity one can demonstrate here (empty unless `--engine-repeats` is 2 or more).",
        "",
        *_anchoring(config, summary),
        "## Step times", "",
        markdown_table(steps), "",
        "`model_busy_bias_pct`: the cost model's total over the engine's own steps, relative "
        "to their measured total (steps tile the replay's time, so this is the time the "
        "simulator would miss or add for the same batches). `load_avg_*`: the machine's "
        "1-minute load average before and after the level's replays (on "
        f"{profile.hardware.get('cpu_affinity')} usable cores; other work on the machine "
        "slows the engine, not the simulator). The cost model here is the fitted one at "
        "profiling speed: with anchors, `model_busy_bias_pct` near `1 / speed_factor - 1` "
        "says the anchors measured the replay's speed.", "",
        "Each load level's folder holds the trace, the engine run(s), the simulated run and the "
        "full comparison (`load-NNN/compare/report.md`).", "",
        figure_links(["fidelity"], ["Simulator vs engine relative error per load level"]), "",
    ])


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
                               _report(config, summary, step_table(levels), capacity, profile))
    return ValidationResult(summary, capacity, levels, report)
