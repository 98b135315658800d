"""The figures ``manylora plot KIND`` can draw, by name, and how each gets its input.

Sweep figures (attainment vs rate / cv / adapters / SLO scale, throughput vs adapters) read a
sweep table, or build one from run folders: each run's workload keys come from its meta.json
(``sweep_table.point_from_meta``) and its metrics from its requests. Run figures (pool
occupancy, latency CDFs) read run folders. Every figure is saved as NAME.png and NAME.pdf.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from manylora.analysis.plots_run import plot_cdfs, plot_pool_occupancy
from manylora.analysis.plot_specs import SWEEP_PLOTS, SweepPlot
from manylora.analysis.plots_sweep import plot_sweep
from manylora.analysis.run_folder import Run, read_run
from manylora.analysis.slo import SLO
from manylora.analysis.style import save_figure
from manylora.analysis.sweep_table import (point_from_meta, policy_labels, read_sweep,
                                           sweep_rows)
from manylora.analysis.window import Window

SLO_SCALES = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
"""SLO scales evaluated when an attainment-vs-SLO-scale figure is drawn from run folders."""


class PlotInputError(ValueError):
    """A plot was asked for with input it cannot use (no runs, bad --where, ...)."""


@dataclass(frozen=True)
class PlotInput:
    sweep: str | None
    runs: Sequence[str]
    metric: str | None
    where: Sequence[str]
    slo: SLO
    window: Window
    x: str | None = None           # another key column on x


class PlotKind(Protocol):
    def figures(self, given: PlotInput) -> list[tuple[str, Figure]]: ...


def _filter(table: pd.DataFrame, where: Sequence[str]) -> pd.DataFrame:
    for condition in where:
        column, sep, text = condition.partition("=")
        if not sep or column not in table.columns:
            raise PlotInputError(f"--where {condition!r}: expected COLUMN=VALUE with a column "
                                 f"of the sweep table ({', '.join(table.columns)})")
        values = table[column]
        target = float(text) if pd.api.types.is_numeric_dtype(values) else text
        table = table[np.isclose(values, target) if isinstance(target, float)
                      else values.astype(str) == target]
        if table.empty:
            raise PlotInputError(f"--where {condition!r} leaves no rows")
    return table


def _runs(given: PlotInput, at_least: int = 1) -> list[Run]:
    if len(given.runs) < at_least:
        raise PlotInputError(f"this figure needs at least {at_least} run folder(s)")
    return [read_run(path) for path in given.runs]


@dataclass(frozen=True)
class SweepKind:
    spec: SweepPlot

    def table(self, given: PlotInput) -> pd.DataFrame:
        if given.sweep and given.runs:
            raise PlotInputError("give either --sweep TABLE or run folders, not both")
        if given.sweep:
            return read_sweep(given.sweep)
        scales = SLO_SCALES if (given.x or self.spec.x) == "slo_scale" else (1.0,)
        runs = _runs(given)
        labels = policy_labels([run.meta for run in runs])
        rows = [sweep_rows(run.requests, point_from_meta(run.meta, run.path, label), given.slo,
                           scales, given.window) for run, label in zip(runs, labels)]
        return pd.concat(rows, ignore_index=True)

    def figures(self, given: PlotInput) -> list[tuple[str, Figure]]:
        spec = self.spec.on(x=given.x, metric=given.metric or None)
        if given.x:
            spec = replace(spec, name=f"{spec.name.partition('-vs-')[0]}-vs-{given.x}")
        table = _filter(self.table(given), given.where)
        return [(spec.name, plot_sweep(table, spec))]


class OccupancyKind:
    def figures(self, given: PlotInput) -> list[tuple[str, Figure]]:
        runs = _runs(given)
        if len(runs) == 1:
            return [("pool_occupancy", plot_pool_occupancy(runs[0]))]
        return [(f"pool_occupancy_{run.path.name}", plot_pool_occupancy(run)) for run in runs]


class CdfKind:
    def figures(self, given: PlotInput) -> list[tuple[str, Figure]]:
        return [("latency_cdf", plot_cdfs(_runs(given)))]


PLOT_KINDS: dict[str, PlotKind] = {
    **{name: SweepKind(spec) for name, spec in SWEEP_PLOTS.items()},
    "pool-occupancy": OccupancyKind(),
    "latency-cdf": CdfKind(),
}
"""Every figure by name, in the order of ``plot_specs.FIGURES`` (the names the command line
offers without importing matplotlib; tests/analysis/test_cli_dispatch.py checks they agree)."""


def render_plot(kind: str, out_dir: str | Path, *, sweep: str | None = None,
                runs: Sequence[str] = (), metric: str | None = None, where: Sequence[str] = (),
                slo: SLO = SLO(), window: Window = Window(), x: str | None = None) -> list[Path]:
    """Draw figure ``kind`` and save it (PNG and PDF) into ``out_dir``; returns the files.
    ``metric`` and ``x`` put another metric on y or another key column on x (sweep figures;
    the file is then named after the new x, e.g. ``attainment-vs-max_batch_adapters``)."""
    if kind not in PLOT_KINDS:
        raise PlotInputError(f"unknown figure {kind!r}; choose one of {', '.join(PLOT_KINDS)}")
    if x and kind not in SWEEP_PLOTS:
        raise PlotInputError(f"--x applies to sweep figures, not {kind!r}")
    given = PlotInput(sweep, list(runs), metric, list(where), slo, window, x)
    paths: list[Path] = []
    for name, fig in PLOT_KINDS[kind].figures(given):
        paths += save_figure(fig, out_dir, name)
    return paths
