"""What each figure of ``manylora plot`` is, by name, without drawing anything.

The sweep figures' specs (``SWEEP_PLOTS``: which key on x, which metric on y, labels, a target
line) and the names of the figures drawn from run folders. plots_sweep.py and plot_kinds.py
draw them; the command line and the sweep file check names against this module, which
imports no matplotlib, so that the ``manylora`` command starts fast.
"""
from __future__ import annotations

from dataclasses import dataclass

from manylora.analysis.sweep_table import KEY_COLUMNS


@dataclass(frozen=True)
class SweepPlot:
    """What one sweep figure shows."""

    name: str
    x: str
    metric: str
    xlabel: str
    ylabel: str
    percent: bool = False           # show a [0, 1] metric as 0-100 %
    target: float | None = None     # horizontal reference line, in the metric's own units
    logx: bool = False

    def __post_init__(self) -> None:
        if self.x not in KEY_COLUMNS:
            raise ValueError(f"SweepPlot.x must be a key column, got {self.x!r}")


_ATTAINMENT = "SLO attainment (%)"
SWEEP_PLOTS: dict[str, SweepPlot] = {p.name: p for p in (
    SweepPlot("attainment-vs-rate", "rate", "attainment_slora", "Request rate (req/s)",
              _ATTAINMENT, percent=True, target=0.9),
    SweepPlot("attainment-vs-cv", "cv", "attainment_slora",
              "Coefficient of variation of arrivals (cv)", _ATTAINMENT, percent=True, target=0.9),
    SweepPlot("attainment-vs-adapters", "num_adapters", "attainment_slora",
              "Number of adapters", _ATTAINMENT, percent=True, target=0.9, logx=True),
    SweepPlot("attainment-vs-slo-scale", "slo_scale", "attainment_slora",
              "SLO scale (multiple of the base SLO)", _ATTAINMENT, percent=True, target=0.9),
    SweepPlot("throughput-vs-adapters", "num_adapters", "throughput_rps", "Number of adapters",
              "Throughput (req/s)", logx=True),
)}

RUN_FIGURES = ("pool-occupancy", "latency-cdf")
"""Figures drawn from run folders rather than a sweep table (plot_kinds.py draws them)."""
FIGURES = (*SWEEP_PLOTS, *RUN_FIGURES)
"""Every figure ``manylora plot`` can draw."""
