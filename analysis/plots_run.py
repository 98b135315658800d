"""Figures from run folders: latency CDFs (sim vs real), pool occupancy over time, step time.

Long runs have a million steps; occupancy is averaged into at most ``MAX_POINTS`` time bins
before drawing so that figures stay small and quick without changing what they show.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from manylora.analysis.metrics import request_latencies
from manylora.analysis.run_folder import Run
from manylora.analysis.style import (LINESTYLES, PALETTE, REFERENCE_COLOR, new_figure,
                                     series_style, styled)

MAX_POINTS = 2000
MAX_PANELS = 4
CDF_COLUMNS = {"latency_s": "End-to-end latency (s)", "ttft_s": "Time to first token (s)",
               "tpot_s": "Time per output token (s)"}


def _ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical CDF as step points, starting from 0 at the smallest value."""
    x = np.sort(values[~np.isnan(values)])
    if not len(x):
        return x, x
    return np.r_[x[0], x], np.arange(len(x) + 1) / len(x)


def plot_cdfs(runs: Sequence[Run], columns: Sequence[str] = ("latency_s", "ttft_s"),
              labels: Sequence[str] | None = None) -> Figure:
    """One panel per latency column, one empirical CDF per run (finished requests)."""
    labels = list(labels or [run.label for run in runs])
    with styled():
        fig, axes = new_figure(ncols=len(columns), width=4.6)
        for ax, column in zip(axes, columns):
            for i, (run, label) in enumerate(zip(runs, labels)):
                values = request_latencies(run.requests)[column].to_numpy(dtype=np.float64)
                x, y = _ecdf(values)
                # distinct dash patterns: two runs that agree must not hide one another
                ax.step(x, y * 100, where="post", color=series_style(i)["color"],
                        linestyle=LINESTYLES[i % len(LINESTYLES)],
                        label=f"{label} (n={np.count_nonzero(~np.isnan(values))})")
            ax.set_xlabel(CDF_COLUMNS[column])
            ax.set_ylabel("Requests (%)")
            ax.set_ylim(0, 102)
            ax.legend(loc="lower right")
    return fig


def _binned(bounds: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Time-weighted mean per grid bin of a signal holding values[i] on [bounds[i], bounds[i+1])."""
    widths = np.diff(bounds)
    cumulative = np.concatenate([[0.0], np.cumsum(values * widths)])
    i = np.clip(np.searchsorted(bounds, grid, side="right") - 1, 0, len(values) - 1)
    area = cumulative[i] + values[i] * np.clip(grid - bounds[i], 0.0, widths[i])
    return np.diff(area) / np.diff(grid)


def _occupancy(steps: pd.DataFrame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Step-function points (times and values; the last value repeated at the end time).

    Occupancy holds from one step's start to the next (idle gaps keep the last value), and the
    last step's value until it ends.
    """
    steps = steps.sort_values("start_s", kind="stable")
    times = steps["start_s"].to_numpy(dtype=np.float64)
    end = float((times + steps["duration_s"].to_numpy(dtype=np.float64)).max())
    series = {c: steps[c].to_numpy(dtype=np.float64)
              for c in ("kv_pages", "adapter_pages", "free_pages")}
    if len(times) > MAX_POINTS and end > times[0]:
        grid = np.linspace(times[0], end, MAX_POINTS + 1)
        bounds = np.concatenate([times, [end]])
        times, series = grid[:-1], {c: _binned(bounds, v, grid) for c, v in series.items()}
    return np.r_[times, end], {c: np.r_[v, v[-1]] for c, v in series.items()}


def plot_pool_occupancy(run: Run) -> Figure:
    """Pages held by KV cache and by adapters over time, stacked, one panel per replica."""
    replicas = sorted(run.steps["replica"].unique())
    shown = replicas[:MAX_PANELS] or [0]
    with styled():
        fig, axes = new_figure(nrows=len(shown), height=2.6 if len(shown) > 1 else 3.8)
        for ax, replica in zip(axes, shown):
            steps = run.steps[run.steps["replica"] == replica]
            if not steps.empty:
                t, s = _occupancy(steps)
                ax.stackplot(t, s["kv_pages"], s["adapter_pages"], step="post",
                             colors=PALETTE[:2], alpha=0.85, labels=["KV cache", "adapters"])
                total = s["kv_pages"] + s["adapter_pages"] + s["free_pages"]
                ax.step(t, total, where="post", color=REFERENCE_COLOR, linestyle="--",
                        linewidth=1.0, label="pool size")
                ax.set_ylim(0, total.max() * 1.04)
            ax.set_ylabel("Pool pages")
            ax.set_xlabel("Time (s)")
            title = f"replica {replica}" if len(replicas) > 1 else run.label
            if len(replicas) > MAX_PANELS and replica == shown[0]:
                title += f" (first {MAX_PANELS} of {len(replicas)} replicas)"
            ax.set_title(title, loc="left")
        if axes[0].get_legend_handles_labels()[0]:
            fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper right",
                       ncols=3)
    return fig


def plot_step_durations(measured: np.ndarray, predicted: np.ndarray, measured_label: str,
                        predicted_label: str) -> Figure:
    """Predicted vs measured duration of the same steps: scatter against y = x, and the
    distribution of relative error."""
    rel = (predicted - measured) / measured
    with styled():
        fig, (left, right) = new_figure(ncols=2, width=4.6)
        ms = measured * 1e3
        ps = predicted * 1e3
        left.scatter(ms, ps, s=6, alpha=0.4, color=PALETTE[0], linewidths=0, label="steps")
        lo, hi = float(min(ms.min(), ps.min())), float(max(ms.max(), ps.max()))
        left.plot([lo, hi], [lo, hi], color=REFERENCE_COLOR, linestyle=":", label="y = x")
        left.set_xlabel(f"Measured step time, {measured_label} (ms)")
        left.set_ylabel(f"Predicted step time, {predicted_label} (ms)")
        left.legend(loc="upper left")
        right.hist(rel * 100, bins=50, color=PALETTE[1], alpha=0.85, label="steps")
        right.axvline(0, color=REFERENCE_COLOR, linestyle=":")
        right.set_xlabel("Relative error of prediction (%)")
        right.set_ylabel("Steps")
        right.legend(loc="upper right")
    return fig


def plot_step_distributions(runs: Sequence[Run], labels: Sequence[str]) -> Figure:
    """When no cost model is given: step-time CDFs of both runs, and mean step time by decode
    batch size over decode-only steps (where the two runs' steps are directly comparable)."""
    with styled():
        fig, (left, right) = new_figure(ncols=2, width=4.6)
        for i, (run, label) in enumerate(zip(runs, labels)):
            style = series_style(i)
            x, y = _ecdf(run.steps["duration_s"].to_numpy(dtype=np.float64) * 1e3)
            left.step(x, y * 100, where="post", color=style["color"],
                      linestyle=LINESTYLES[i % len(LINESTYLES)],
                      label=f"{label} (n={len(run.steps)})")
            decode = run.steps[(run.steps["prefill_tokens"] == 0)
                               & (run.steps["decode_requests"] > 0)]
            means = decode.groupby("decode_requests")["duration_s"].mean() * 1e3
            right.plot(means.index, means.to_numpy(), label=label,
                       **{**style, "linestyle": LINESTYLES[i % len(LINESTYLES)]})
        left.set_xlabel("Step time (ms)")
        left.set_ylabel("Steps (%)")
        left.set_ylim(0, 102)
        left.legend(loc="lower right")
        right.set_xlabel("Decode batch size (requests)")
        right.set_ylabel("Mean decode step time (ms)")
        right.legend(loc="upper left")
    return fig
