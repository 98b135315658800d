"""Comparing two runs of one trace (typically engine vs simulator): the validation report.

Run A is the reference (the measured engine run), run B the candidate (the simulation); every
relative error is ``(B - A) / |A|``. The report folder gets ``metrics.csv`` (every metric of
both runs side by side), ``outcomes.csv`` (requests per status and reason), ``report.md``, and
figures as PNG and PDF: latency and TTFT CDFs of both runs, and step times - predicted vs
measured for run A's steps when a cost model is given (each steps.csv row's shape columns are
exactly what a cost model prices), otherwise the two runs' step-time distributions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from manylora.analysis.metrics import outcome_counts, summarize
from manylora.analysis.outputs import write_csv
from manylora.analysis.plots_run import plot_cdfs, plot_step_distributions, plot_step_durations
from manylora.analysis.report import figure_links, markdown_table
from manylora.analysis.run_folder import Run
from manylora.analysis.slo import SLO
from manylora.analysis.style import save_figure
from manylora.analysis.window import Window
from manylora.engine.step_shape import STEP_SHAPE_FIELDS
from manylora.simulator.cost_base import CostModel
from manylora.traces.atomic_io import atomic_write_text

FIDELITY_METRICS = ("throughput_rps", "latency_mean_s", "ttft_p90_s")
"""The metrics a simulator must reproduce within tolerance (issue 7's acceptance)."""
DEFAULT_TOLERANCE = 0.10


class RunMismatchError(ValueError):
    """The two runs do not replay the same trace, so comparing them means nothing."""


@dataclass(frozen=True)
class CompareConfig:
    slo: SLO = SLO()
    window: Window = Window()
    tolerance: float = DEFAULT_TOLERANCE
    labels: tuple[str, str] | None = None   # legend names for A and B; default: run labels

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tolerance) and self.tolerance > 0):
            raise ValueError(f"CompareConfig.tolerance must be > 0, got {self.tolerance!r}")
        if self.labels is not None and len(self.labels) != 2:
            raise ValueError(f"CompareConfig.labels must name two runs, got {self.labels!r}")


@dataclass(frozen=True)
class Comparison:
    metrics: pd.DataFrame                  # metric, A, B, rel_error
    fidelity: pd.DataFrame                 # FIDELITY_METRICS rows with a within-tolerance flag
    step_times: pd.DataFrame               # step-time statistics
    files: list[Path] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.fidelity["within_tolerance"].all())


def relative_error(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """(candidate - reference) / |reference|; NaN where the reference is 0 or NaN."""
    reference = np.asarray(reference, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(reference != 0, (np.asarray(candidate) - reference) / np.abs(reference),
                        np.nan)


def check_same_trace(a: Run, b: Run) -> None:
    columns = ["request_id", "arrival_s", "adapter_id", "prompt_len", "output_len"]
    ra, rb = a.requests[columns], b.requests[columns]
    if len(ra) != len(rb) or not np.array_equal(ra.to_numpy(), rb.to_numpy()):
        raise RunMismatchError(f"{a.path} and {b.path} do not hold the same trace requests "
                               f"({len(ra)} vs {len(rb)} rows, or different arrivals/lengths)")


def metric_table(a: Run, b: Run, config: CompareConfig) -> pd.DataFrame:
    sa = summarize(a.requests, config.slo, config.window)
    sb = summarize(b.requests, config.slo, config.window)
    return pd.DataFrame({"metric": sa.index, "A": sa.to_numpy(), "B": sb.to_numpy(),
                         "rel_error": relative_error(sa.to_numpy(), sb.to_numpy())})


def _fidelity(metrics: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    rows = metrics.set_index("metric").loc[list(FIDELITY_METRICS)].reset_index()
    rows["within_tolerance"] = np.abs(rows["rel_error"].to_numpy()) <= tolerance
    return rows


def fidelity_table(a: Run, b: Run, config: CompareConfig = CompareConfig()) -> pd.DataFrame:
    """The fidelity rows (FIDELITY_METRICS: A, B, rel_error, within_tolerance) of ``b``
    against reference ``a``, without writing a report."""
    check_same_trace(a, b)
    return _fidelity(metric_table(a, b, config), config.tolerance)


def _step_stats(runs: Sequence[Run], labels: Sequence[str],
                predicted: np.ndarray | None) -> pd.DataFrame:
    rows = []
    for run, label in zip(runs, labels):
        d = run.steps["duration_s"].to_numpy(dtype=np.float64)
        p50, p90 = np.percentile(d, [50, 90]) if len(d) else (math.nan, math.nan)
        rows.append({"run": label, "steps": len(d), "busy_s": d.sum(),
                     "mean_ms": d.mean() * 1e3 if len(d) else math.nan,
                     "p50_ms": p50 * 1e3, "p90_ms": p90 * 1e3})
    if predicted is not None:
        measured = runs[0].steps["duration_s"].to_numpy(dtype=np.float64)
        ape = np.abs(relative_error(measured, predicted))
        p50, p90 = np.percentile(predicted, [50, 90]) if len(predicted) else (math.nan,) * 2
        rows.append({"run": f"cost model on {labels[0]}'s steps", "steps": len(predicted),
                     "busy_s": predicted.sum(), "mean_ms": predicted.mean() * 1e3,
                     "p50_ms": p50 * 1e3, "p90_ms": p90 * 1e3,
                     "mape_pct": np.nanmean(ape) * 100, "median_ape_pct": np.nanmedian(ape) * 100,
                     "busy_rel_error": relative_error(measured.sum(), predicted.sum())})
    return pd.DataFrame(rows)


def predict_steps(run: Run, cost_model: CostModel) -> np.ndarray:
    """The cost model's duration for every step of ``run`` (float64 [steps] seconds)."""
    shapes = run.steps[list(STEP_SHAPE_FIELDS)].to_numpy(dtype=np.float64)
    return np.asarray(cost_model.step_times(shapes), dtype=np.float64)


def _report(a: Run, b: Run, labels: Sequence[str], result: Comparison, config: CompareConfig,
            outcomes: pd.DataFrame, step_caption: str, ks: tuple[float, float]) -> str:
    verdict = "PASS" if result.passed else "FAIL"
    fidelity = result.fidelity.assign(rel_error_pct=result.fidelity["rel_error"] * 100)
    metrics = result.metrics.assign(rel_error_pct=result.metrics["rel_error"] * 100)
    lines = [
        f"# Run comparison: {labels[1]} vs {labels[0]}", "",
        f"- A (reference): `{a.path.name}`, source {a.source}",
        f"- B (candidate): `{b.path.name}`, source {b.source}",
        f"- SLO: first token < {config.slo.ttft_s:g} s (S-LoRA), TPOT <= {config.slo.tpot_s:g} s "
        f"(DistServe); measured over {config.window.describe()}",
        "- relative error = (B - A) / |A|", "",
        f"## Fidelity: {verdict} (tolerance {config.tolerance:.0%})", "",
        markdown_table(fidelity[["metric", "A", "B", "rel_error_pct", "within_tolerance"]]), "",
        "## All metrics", "",
        markdown_table(metrics[["metric", "A", "B", "rel_error_pct"]]), "",
        "## Outcomes (requests per status and reason)", "", markdown_table(outcomes), "",
        "## Step times", "", markdown_table(result.step_times), "",
        f"Two-sample Kolmogorov-Smirnov test of the step-time distributions: D = {ks[0]:.3g}, "
        f"p = {ks[1]:.3g}.", "",
        "## Figures", "",
        figure_links(["latency_cdf", "step_time"],
                     ["Latency and time-to-first-token CDFs of finished requests", step_caption]),
        "",
    ]
    return "\n".join(lines)


def compare_runs(a: Run, b: Run, out_dir: str | Path, config: CompareConfig = CompareConfig(),
                 cost_model: CostModel | None = None) -> Comparison:
    """Write the comparison report of ``b`` against reference ``a`` into ``out_dir``."""
    check_same_trace(a, b)
    out = Path(out_dir)
    labels = list(config.labels or (a.label, b.label))
    metrics = metric_table(a, b, config)
    predicted = predict_steps(a, cost_model) if cost_model is not None else None
    files = [write_csv(metrics, out / "metrics.csv")]
    outcomes = (outcome_counts(a.requests, config.window).rename(columns={"requests": "A"})
                .merge(outcome_counts(b.requests, config.window).rename(
                    columns={"requests": "B"}), on=["status", "reason"], how="outer")
                .fillna({"A": 0, "B": 0}).astype({"A": np.int64, "B": np.int64}))
    files.append(write_csv(outcomes, out / "outcomes.csv"))
    files += save_figure(plot_cdfs([a, b], labels=labels), out, "latency_cdf")
    if predicted is not None and len(predicted):
        measured = a.steps["duration_s"].to_numpy(dtype=np.float64)
        fig = plot_step_durations(measured, predicted, labels[0], "cost model")
        caption = f"Cost-model prediction vs measured time of {labels[0]}'s steps"
    else:
        fig = plot_step_distributions([a, b], labels)
        caption = "Step-time distributions, and mean decode step time by batch size"
    files += save_figure(fig, out, "step_time")
    da, db = (r.steps["duration_s"].to_numpy(dtype=np.float64) for r in (a, b))
    ks = tuple(stats.ks_2samp(da, db)) if len(da) and len(db) else (math.nan, math.nan)
    result = Comparison(metrics, _fidelity(metrics, config.tolerance),
                        _step_stats([a, b], labels, predicted), files)
    files.append(atomic_write_text(out / "report.md", _report(
        a, b, labels, result, config, outcomes, caption, (float(ks[0]), float(ks[1])))))
    return result
