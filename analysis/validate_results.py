"""What ``manylora validate`` reports: each load level's result, the summary and step tables,
the fidelity figure and ``report.md`` (validate.py runs the validation)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from manylora.analysis.capacity import CapacityEstimate
from manylora.analysis.compare import FIDELITY_METRICS, Comparison
from manylora.analysis.report import figure_links, markdown_table
from manylora.analysis.style import (PALETTE, REFERENCE_COLOR, legend_outside, new_figure,
                                     styled)
from manylora.analysis.validate_workload import ValidateConfig
from manylora.simulator.profile_file import Profile


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
        "(decode batches of 1-128, prefills beside decodes), not the replay's own, after "
        f"{config.anchor.settle_passes} untimed pass(es) that make each timed one start alike "
        "(`anchor` in each run's meta.json and in profile.json). Each simulation runs on a "
        "machine as many times slower than during calibration as its replay's passes (median "
        f"of {config.anchor.smooth_passes} around each) over the probes' mean (10% trimmed), "
        "moment by "
        "moment (`speed_profile` in the simulated run's meta.json): `speed_factor` is its mean "
        "over the replay, `speed_min` / `speed_max` its extremes (the machine's drift). "
        "`simulator_unanchored` / `rel_error_unanchored_pct`: the same trace simulated at "
        "profiling speed; its largest error per level: " + ", ".join(
            f"{level:.0%} {value * 100:.1f}%" for level, value in worst.items()) + ".", ""]


def report_text(config: ValidateConfig, summary: pd.DataFrame, steps: pd.DataFrame,
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
