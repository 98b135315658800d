"""SLO and throughput curves from a sweep table: attainment vs rate / cv / adapters / SLO scale,
throughput vs number of adapters, or any metric against any key column.

Each plot puts one key column on x (any key of the table, including extra keys such as
``max_batch_adapters``; a key that is not a number is placed 0, 1, 2, ... in table order) and
one metric on y, labelled from plot_specs.py. Every other key that varies in the
table becomes a series (the legend says which values), seeds are averaged (the band spans the
lowest to highest seed), and keys that do not vary are stated in the title, so a figure never
silently mixes configurations. Plots other than "vs SLO scale" keep SLO scale 1 when the table
holds several scales.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure

from manylora.analysis.plot_specs import SweepPlot, key_label
from manylora.analysis.style import (REFERENCE_COLOR, fit_left_title, legend_outside,
                                     new_figure, series_style, styled)
from manylora.analysis.sweep_table import KEY_COLUMNS, SweepTableError, key_columns

def _format(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, (float, np.floating)) else str(value)


def _describe(keys: dict[str, object]) -> list[str]:
    return [key_label(k).short.format(_format(v)) for k, v in keys.items()]


def _prepare(sweep: pd.DataFrame, spec: SweepPlot) -> tuple[pd.DataFrame, list[str], dict]:
    if spec.metric not in sweep.columns:
        raise SweepTableError(f"sweep table has no column {spec.metric!r} for {spec.name}")
    # policy first, then the schema's order, then extra keys: legends read "policy=..., cv=..."
    order = {k: i for i, k in enumerate(KEY_COLUMNS)}
    keys = sorted(key_columns(sweep), key=lambda k: order.get(k, len(order)))
    if spec.x not in keys:
        raise SweepTableError(f"sweep table has no key column {spec.x!r} to put on x for "
                              f"{spec.name}; its keys are {', '.join(keys)}")
    table = sweep.dropna(subset=[spec.metric, spec.x])
    if spec.x != "slo_scale" and table["slo_scale"].nunique() > 1 and (
            table["slo_scale"] == 1.0).any():
        table = table[table["slo_scale"] == 1.0]
    if table.empty:
        raise SweepTableError(f"sweep table has no rows with a value of {spec.metric!r}")
    others = [k for k in keys if k not in (spec.x, "seed")]
    varying = [k for k in others if table[k].nunique() > 1]
    fixed = {k: table[k].iloc[0] for k in others if k not in varying}
    return table, varying, fixed


def _x_positions(values: pd.Series) -> tuple[pd.Series, list[str] | None]:
    """Numbers to plot a key's values at, and tick labels when the key is not numeric (a
    policy, a size such as "8G"): those are placed 0, 1, 2, ... in the order the table first
    lists them, which is the sweep file's grid order."""
    if pd.api.types.is_numeric_dtype(values):
        return values.astype(np.float64), None
    categories = list(dict.fromkeys(values.astype(str)))
    return values.astype(str).map({c: float(i) for i, c in enumerate(categories)}), categories


def plot_sweep(sweep: pd.DataFrame, spec: SweepPlot) -> Figure:
    """The figure for ``spec`` from a validated sweep table."""
    table, varying, fixed = _prepare(sweep, spec)
    positions, categories = _x_positions(table[spec.x])
    table = table.assign(_x=positions)
    scale = 100.0 if spec.percent else 1.0
    with styled():
        fig, (ax,) = new_figure()
        groups = table.groupby(varying, sort=True, dropna=False) if varying else [((), table)]
        for i, (key, group) in enumerate(groups):
            key = key if isinstance(key, tuple) else (key,)
            stats = group.groupby("_x", sort=True)[spec.metric].agg(["mean", "min", "max",
                                                                    "size"])
            x = stats.index.to_numpy(dtype=np.float64)
            label = (", ".join(_format(v) for v in key) if varying == ["policy"]
                     else ", ".join(_describe(dict(zip(varying, key)))) or spec.metric)
            style = series_style(i)
            ax.plot(x, stats["mean"] * scale, label=label, **style)
            if stats["size"].max() > 1:
                ax.fill_between(x, stats["min"] * scale, stats["max"] * scale,
                                color=style["color"], alpha=0.15, linewidth=0)
        if spec.target is not None:
            ax.axhline(spec.target * scale, color=REFERENCE_COLOR, linestyle=":", linewidth=1.2,
                       label=f"{spec.target * scale:g}{'%' if spec.percent else ''} target")
        if spec.percent:
            ax.set_ylim(-3, 103)
        if categories is not None:
            ax.set_xticks(range(len(categories)), categories)
        elif spec.logx and (positions > 0).all():
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(spec.xlabel)
        ax.set_ylabel(spec.ylabel)
        legend_outside(fig, ax)
        if fixed:
            fit_left_title(fig, ax, _describe(fixed))
    return fig
