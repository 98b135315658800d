"""SLO and throughput curves from a sweep table: attainment vs rate / cv / adapters / SLO scale,
throughput vs number of adapters.

Each plot puts one key column on x and one metric on y. Every other key that varies in the
table becomes a series (the legend says which values), seeds are averaged (the band spans the
lowest to highest seed), and keys that do not vary are stated in the title, so a figure never
silently mixes configurations. Plots other than "vs SLO scale" keep SLO scale 1 when the table
holds several scales.
"""
from __future__ import annotations

import textwrap
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure

from manylora.analysis.plot_specs import SweepPlot
from manylora.analysis.style import REFERENCE_COLOR, new_figure, series_style, styled
from manylora.analysis.sweep_table import KEY_COLUMNS, SweepTableError, key_columns

KEY_FORMATS = {"policy": "policy={}", "rate": "rate={} req/s", "cv": "cv={}",
               "num_adapters": "adapters={}", "alpha": "alpha={}", "seed": "seed={}",
               "slo_scale": "SLO scale={}"}


def _format(value: object) -> str:
    return f"{value:g}" if isinstance(value, (float, np.floating)) else str(value)


def _describe(keys: dict[str, object]) -> str:
    return ", ".join(KEY_FORMATS.get(k, k + "={}").format(_format(v)) for k, v in keys.items())


def _prepare(sweep: pd.DataFrame, spec: SweepPlot) -> tuple[pd.DataFrame, list[str], dict]:
    if spec.metric not in sweep.columns:
        raise SweepTableError(f"sweep table has no column {spec.metric!r} for {spec.name}")
    table = sweep.dropna(subset=[spec.metric, spec.x])
    if spec.x != "slo_scale" and table["slo_scale"].nunique() > 1 and (
            table["slo_scale"] == 1.0).any():
        table = table[table["slo_scale"] == 1.0]
    if table.empty:
        raise SweepTableError(f"sweep table has no rows with a value of {spec.metric!r}")
    # policy first, then the schema's order, then extra keys: legends read "policy=..., cv=..."
    order = {k: i for i, k in enumerate(KEY_COLUMNS)}
    keys = sorted(key_columns(table), key=lambda k: order.get(k, len(order)))
    others = [k for k in keys if k not in (spec.x, "seed")]
    varying = [k for k in others if table[k].nunique() > 1]
    fixed = {k: table[k].iloc[0] for k in others if k not in varying}
    return table, varying, fixed


def plot_sweep(sweep: pd.DataFrame, spec: SweepPlot) -> Figure:
    """The figure for ``spec`` from a validated sweep table."""
    table, varying, fixed = _prepare(sweep, spec)
    scale = 100.0 if spec.percent else 1.0
    with styled():
        fig, (ax,) = new_figure()
        groups = table.groupby(varying, sort=True, dropna=False) if varying else [((), table)]
        for i, (key, group) in enumerate(groups):
            key = key if isinstance(key, tuple) else (key,)
            stats = group.groupby(spec.x, sort=True)[spec.metric].agg(["mean", "min", "max"])
            x = stats.index.to_numpy(dtype=np.float64)
            label = (", ".join(_format(v) for v in key) if varying == ["policy"]
                     else _describe(dict(zip(varying, key))) or spec.metric)
            style = series_style(i)
            ax.plot(x, stats["mean"] * scale, label=label, **style)
            if group.groupby(spec.x)[spec.metric].size().max() > 1:
                ax.fill_between(x, stats["min"] * scale, stats["max"] * scale,
                                color=style["color"], alpha=0.15, linewidth=0)
        if spec.target is not None:
            ax.axhline(spec.target * scale, color=REFERENCE_COLOR, linestyle=":", linewidth=1.2,
                       label=f"{spec.target * scale:g}{'%' if spec.percent else ''} target")
        if spec.percent:
            ax.set_ylim(-3, 103)
        if spec.logx:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(spec.xlabel)
        ax.set_ylabel(spec.ylabel)
        if fixed:
            ax.set_title(textwrap.fill(_describe(fixed), 80), loc="left")
        n_series = len(ax.get_legend_handles_labels()[0])
        if n_series > 5:
            fig.legend(loc="outside right upper")
        else:
            ax.legend(loc="best")
    return fig
