"""What each figure of ``manylora plot`` is, by name, and how every column is labelled.

- ``METRIC_LABELS``: the one table of human labels, with units, for every metric column of a
  sweep table (``metrics.SUMMARY_COLUMNS``), and whether a metric is a share shown in percent
  against the 90% attainment target.
- ``KEY_LABELS``: axis labels and legend/title formats of key columns (the required ones and
  the common extra keys of sweeps); any other key is labelled by its name.
- ``SWEEP_PLOTS``: the sweep figures (which key on x, which metric on y), built from those
  tables; :meth:`SweepPlot.on` puts another key on x or another metric on y, relabelled.

plots_sweep.py and plot_kinds.py draw the figures; the command line and the sweep file check
names against this module, which imports no matplotlib, so that ``manylora`` starts fast.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Mapping

from manylora.analysis.metrics import PERCENTILES, SUMMARY_COLUMNS

ATTAINMENT_TARGET = 0.9   # the 90% line of goodput (S-LoRA, DistServe)


@dataclass(frozen=True)
class MetricLabel:
    """How a metric column is shown on an axis."""

    label: str                      # with units, e.g. "Mean time to first token (s)"
    percent: bool = False           # a share in [0, 1], shown as 0-100 %
    target: float | None = None     # reference line, in the metric's own units


def _metric_labels() -> Mapping[str, MetricLabel]:
    labels = {
        "requests": MetricLabel("Requests"), "finished": MetricLabel("Finished requests"),
        "aborted": MetricLabel("Aborted requests"), "rejected": MetricLabel("Rejected requests"),
        "preemptions": MetricLabel("Preemptions"),
        "duration_s": MetricLabel("Measured interval (s)"),
        "throughput_rps": MetricLabel("Throughput (req/s)"),
        "output_tps": MetricLabel("Output throughput (tokens/s)"),
        "norm_latency_mean_s": MetricLabel("Mean latency per output token (s)"),
        "queue_mean_s": MetricLabel("Mean queueing delay (s)"),
        "attainment_slora": MetricLabel("SLO attainment (%)", True, ATTAINMENT_TARGET),
        "attainment_distserve": MetricLabel("SLO attainment, TTFT and TPOT (%)", True,
                                            ATTAINMENT_TARGET),
        "satisfaction": MetricLabel("User satisfaction, S-LoRA (%)", True),
        "ttft_slo_s": MetricLabel("TTFT SLO (s)"), "tpot_slo_s": MetricLabel("TPOT SLO (s)"),
    }
    quantities = {"latency": "latency", "ttft": "time to first token",
                  "tpot": "time per output token"}
    for name, what in quantities.items():
        labels[f"{name}_mean_s"] = MetricLabel(f"Mean {what} (s)")
        for p in PERCENTILES:
            labels[f"{name}_p{p}_s"] = MetricLabel(f"P{p} {what} (s)")
    # every metric column has a label: a new column without one fails here, at import
    return MappingProxyType({column: labels[column] for column in SUMMARY_COLUMNS})


METRIC_LABELS = _metric_labels()


@dataclass(frozen=True)
class KeyLabel:
    """How a key column is shown: on an axis, and as ``value`` in a legend entry or title."""

    axis: str
    short: str                      # format with one "{}" for the value
    logx: bool = False              # values span decades: a log x axis


KEY_LABELS: Mapping[str, KeyLabel] = MappingProxyType({
    "policy": KeyLabel("Policy", "policy={}"),
    "rate": KeyLabel("Request rate (req/s)", "rate={} req/s"),
    "cv": KeyLabel("Coefficient of variation of arrivals (cv)", "cv={}"),
    "num_adapters": KeyLabel("Number of adapters", "adapters={}", logx=True),
    "alpha": KeyLabel("Adapter popularity alpha", "alpha={}"),
    "seed": KeyLabel("Trace seed", "seed={}"),
    "slo_scale": KeyLabel("SLO scale (multiple of the base SLO)", "SLO scale={}"),
    "max_batch_adapters": KeyLabel("Distinct adapters per batch, at most (K)", "K={}",
                                   logx=True),
    "host_cache_bytes": KeyLabel("Host memory for adapters", "host cache={}"),
    "pool_pages": KeyLabel("Pool pages", "pool pages={}"),
    "replicas": KeyLabel("Replicas", "replicas={}"),
    "router": KeyLabel("Router", "router={}"),
})


def key_label(column: str) -> KeyLabel:
    """The label of a key column; an unlisted extra key is shown by its name."""
    return KEY_LABELS.get(column, KeyLabel(column.replace("_", " "), column + "={}"))


@dataclass(frozen=True)
class SweepPlot:
    """What one sweep figure shows: key ``x`` on the x axis, ``metric`` on y."""

    name: str
    x: str
    metric: str
    xlabel: str
    ylabel: str
    percent: bool = False           # show a [0, 1] metric as 0-100 %
    target: float | None = None     # horizontal reference line, in the metric's own units
    logx: bool = False

    def __post_init__(self) -> None:
        if not self.x:
            raise ValueError("SweepPlot.x must name a key column of the sweep table")

    @classmethod
    def of(cls, name: str, x: str, metric: str) -> SweepPlot:
        """A figure of ``metric`` against ``x``, labelled from the tables above."""
        return cls(name, x, metric, "", "").on(x=x, metric=metric)

    def on(self, x: str | None = None, metric: str | None = None) -> SweepPlot:
        """This figure with another key on x and/or another metric on y, relabelled."""
        spec = self
        if x is not None:
            label = key_label(x)
            spec = replace(spec, x=x, xlabel=label.axis, logx=label.logx)
        if metric is not None:
            shown = METRIC_LABELS.get(metric, MetricLabel(metric))
            spec = replace(spec, metric=metric, ylabel=shown.label, percent=shown.percent,
                           target=shown.target)
        return spec


SWEEP_PLOTS: Mapping[str, SweepPlot] = MappingProxyType({p.name: p for p in (
    SweepPlot.of("attainment-vs-rate", "rate", "attainment_slora"),
    SweepPlot.of("attainment-vs-cv", "cv", "attainment_slora"),
    SweepPlot.of("attainment-vs-adapters", "num_adapters", "attainment_slora"),
    SweepPlot.of("attainment-vs-slo-scale", "slo_scale", "attainment_slora"),
    SweepPlot.of("throughput-vs-adapters", "num_adapters", "throughput_rps"),
)})

RUN_FIGURES = ("pool-occupancy", "latency-cdf")
"""Figures drawn from run folders rather than a sweep table (plot_kinds.py draws them)."""
FIGURES = (*SWEEP_PLOTS, *RUN_FIGURES)
"""Every figure ``manylora plot`` can draw."""
