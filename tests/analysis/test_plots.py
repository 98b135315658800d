"""Figures: data drawn equals the data given, axes labelled, legends present, no text overlaps,
PNG and PDF written."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from manylora.analysis.plots_run import (MAX_POINTS, _binned, _occupancy, plot_cdfs,
                                         plot_pool_occupancy, plot_step_distributions,
                                         plot_step_durations)
from manylora.analysis.metrics import SUMMARY_COLUMNS
from manylora.analysis.plot_specs import METRIC_LABELS, SWEEP_PLOTS
from manylora.analysis.plots_sweep import plot_sweep
from manylora.analysis.run_folder import read_run
from manylora.analysis.style import save_figure
from manylora.analysis.sweep_table import SweepTableError, validate_sweep
from tests.analysis.figures import assert_labelled, assert_no_overlapping_text
from tests.analysis.runs import write_run

X_VALUES = {"rate": [1, 2, 4, 8], "cv": [1, 2, 4, 8], "num_adapters": [1, 10, 100, 1000],
            "slo_scale": [0.5, 1, 2, 4]}
BASE = {"rate": 2.0, "cv": 1.0, "num_adapters": 100, "alpha": 1.0, "slo_scale": 1.0}
CURVES = {"fcfs": [1.0, 0.95, 0.6, 0.1], "abort": [1.0, 0.97, 0.85, 0.5]}


def sweep_over(x: str) -> pd.DataFrame:
    rows = []
    for policy, curve in CURVES.items():
        for value, attainment in zip(X_VALUES[x], curve):
            for seed in (0, 1):
                rows.append({**BASE, "policy": policy, "seed": seed, x: value,
                             "attainment_slora": max(attainment - 0.02 * seed, 0.0),
                             "throughput_rps": value * (1 + seed) / 10})
    return validate_sweep(pd.DataFrame(rows))


@pytest.mark.parametrize("name", sorted(SWEEP_PLOTS))
def test_sweep_figures(name):
    spec = SWEEP_PLOTS[name]
    sweep = sweep_over(spec.x)
    fig = plot_sweep(sweep, spec)
    assert_labelled(fig)
    assert_no_overlapping_text(fig)
    (ax,) = fig.axes
    assert ax.get_xlabel() == spec.xlabel and ax.get_ylabel() == spec.ylabel
    lines = {line.get_label(): line for line in ax.get_lines()}
    scale = 100 if spec.percent else 1
    for policy in CURVES:
        expected = (sweep[sweep["policy"] == policy].groupby(spec.x)[spec.metric].mean()
                    * scale)
        np.testing.assert_allclose(lines[policy].get_xdata(), expected.index)
        np.testing.assert_allclose(lines[policy].get_ydata(), expected.to_numpy())
    if spec.target is not None:
        assert "90% target" in lines
        np.testing.assert_allclose(lines["90% target"].get_ydata(), [90, 90])
    # keys that do not vary are stated in the title, seeds are averaged and not listed
    assert "alpha=1" in ax.get_title(loc="left") and "seed" not in ax.get_title(loc="left")


def test_sweep_keeps_slo_scale_one_and_splits_other_varying_keys():
    sweep = pd.concat([sweep_over("rate"), sweep_over("rate").assign(slo_scale=2.0,
                                                                   attainment_slora=1.0),
                       sweep_over("rate").assign(cv=4.0, attainment_slora=0.5)])
    fig = plot_sweep(validate_sweep(sweep), SWEEP_PLOTS["attainment-vs-rate"])
    labels = {line.get_label() for line in fig.axes[0].get_lines()}
    assert {"policy=fcfs, cv=1", "policy=abort, cv=4"} <= labels
    assert not any(np.allclose(line.get_ydata(), 100) for line in fig.axes[0].get_lines())
    assert_no_overlapping_text(fig)


def test_many_series_put_the_legend_outside():
    sweep = pd.concat([sweep_over("rate").assign(policy=f"p{i}") for i in range(7)])
    fig = plot_sweep(validate_sweep(sweep), SWEEP_PLOTS["attainment-vs-rate"])
    assert len(fig.legends) == 1 and fig.axes[0].get_legend() is None
    assert_no_overlapping_text(fig)


def test_sweep_schema_errors():
    table = sweep_over("rate")
    with pytest.raises(SweepTableError, match="missing key column.*seed"):
        validate_sweep(table.drop(columns="seed"))
    with pytest.raises(SweepTableError, match="row 3, column num_adapters: 0.5 is not an integer"):
        validate_sweep(table.assign(num_adapters=[100, 0.5] + [100] * (len(table) - 2)))
    with pytest.raises(SweepTableError, match="row 2, column rate: -1.0 must be > 0"):
        validate_sweep(table.assign(rate=[-1.0] + [1.0] * (len(table) - 1)))
    with pytest.raises(SweepTableError, match="no column 'goodput'"):
        plot_sweep(table, SWEEP_PLOTS["attainment-vs-rate"].__class__(
            "x", "rate", "goodput", "a", "b"))


def test_binned_occupancy_is_time_weighted():
    # 2 pages on [0, 1), 4 on [1, 3), 6 on [3, 4): bins [0, 2) and [2, 4)
    np.testing.assert_allclose(_binned(np.array([0.0, 1, 3, 4]), np.array([2.0, 4, 6]),
                                       np.array([0.0, 2, 4])), [3.0, 5.0])


def test_long_runs_are_binned_without_changing_the_mean():
    n = 3 * MAX_POINTS
    start = np.arange(n, dtype=np.float64)
    steps = pd.DataFrame({"start_s": start, "duration_s": np.full(n, 0.5),
                          "kv_pages": start % 7, "adapter_pages": np.full(n, 3.0),
                          "free_pages": 10 - start % 7})
    t, series = _occupancy(steps)
    assert len(t) == MAX_POINTS + 1 and t[-1] == n - 0.5
    # the signal holds each value from one start to the next, the last for its 0.5 s
    exact = (np.sum(start[:-1] % 7) + 0.5 * (start[-1] % 7)) / (n - 0.5)
    assert series["kv_pages"][:-1].mean() == pytest.approx(exact)
    np.testing.assert_allclose(series["adapter_pages"], 3.0)


def test_pool_occupancy_one_panel_per_replica(tmp_path):
    run = read_run(write_run(tmp_path / "run"))
    fig = plot_pool_occupancy(run)
    assert_labelled(fig)
    assert_no_overlapping_text(fig)
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["replica 0", "replica 1"]
    assert fig.axes[-1].get_xlabel() == "Time (s)"
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["KV cache", "adapters", "pool size"]
    t, kv = fig.axes[1].collections[0].get_paths()[0].vertices.T   # replica 1: one step
    assert t.min() == 1.5 and t.max() == 3.0 and kv.max() == 3


def test_cdfs_and_step_figures(tmp_path):
    run = read_run(write_run(tmp_path / "run"))
    fig = plot_cdfs([run, run], labels=["engine", "simulator"])
    assert_labelled(fig)
    assert_no_overlapping_text(fig)
    line = fig.axes[0].get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), [2.0, 2.0, 2.0, 4.5])
    np.testing.assert_allclose(line.get_ydata(), [0, 100 / 3, 200 / 3, 100])
    assert line.get_label() == "engine (n=3)"
    measured = run.steps["duration_s"].to_numpy()
    for fig in (plot_step_durations(measured, measured * 1.1, "engine", "cost model"),
                plot_step_distributions([run, run], ["engine", "simulator"])):
        assert_labelled(fig)
        assert_no_overlapping_text(fig)


def test_save_figure_writes_png_and_pdf(tmp_path):
    fig = plot_sweep(sweep_over("rate"), SWEEP_PLOTS["attainment-vs-rate"])
    png, pdf = save_figure(fig, tmp_path / "figs", "attainment")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["attainment.pdf",
                                                                    "attainment.png"]


@pytest.mark.parametrize("series", [1, 3, 8, 24, 40])
def test_the_legend_never_covers_a_line_the_title_or_any_text(series):
    # a long title too: many fixed extra keys with long values
    long_keys = {f"some_long_extra_key_{k}": f"a-rather-long-value-{k}" for k in range(6)}
    sweep = pd.concat([sweep_over("rate").assign(policy=f"policy-with-a-long-name-{i}",
                                                 **long_keys) for i in range(series)])
    fig = plot_sweep(validate_sweep(sweep), SWEEP_PLOTS["attainment-vs-rate"])
    (ax,) = fig.axes
    (legend,) = fig.legends
    assert legend.get_frame_on()
    assert len(legend.get_texts()) == series + 1                  # and the 90% target line
    assert "some_long_extra_key_5=a-rather-long-value-5" in ax.get_title(loc="left")
    assert_no_overlapping_text(fig)                               # draws the figure
    renderer = fig.canvas.get_renderer()
    legend_box = legend.get_window_extent(renderer)
    # outside the axes, so no line, band or marker can run under its text
    assert not legend_box.overlaps(ax.get_window_extent(renderer))
    assert not legend_box.overlaps(ax.title.get_window_extent(renderer))
    assert not legend_box.overlaps(ax._left_title.get_window_extent(renderer))
    # inside the figure: nothing is cut off
    assert fig.bbox.contains(legend_box.x1 - 1, legend_box.y0 + 1)


def test_any_key_column_goes_on_x():
    base = sweep_over("rate")
    sweep = validate_sweep(pd.concat([
        base.assign(max_batch_adapters=k, host_cache_bytes=size,
                    attainment_slora=base["attainment_slora"] * k / 8)
        for k in (8, 1, 4) for size in ("8G", "32G")]))
    spec = SWEEP_PLOTS["attainment-vs-rate"].on(x="max_batch_adapters")
    fig = plot_sweep(sweep[(sweep["rate"] == 4) & (sweep["host_cache_bytes"] == "8G")], spec)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "Distinct adapters per batch, at most (K)"
    assert ax.get_xscale() == "log"
    fcfs = next(line for line in ax.get_lines() if line.get_label() == "fcfs")
    np.testing.assert_allclose(fcfs.get_xdata(), [1, 4, 8])
    np.testing.assert_allclose(fcfs.get_ydata(), np.array([1, 4, 8]) / 8 * 0.59 * 100)
    assert "K=" not in ax.get_title(loc="left") and "host cache=8G" in ax.get_title(loc="left")
    assert_no_overlapping_text(fig)
    # a key that is not a number: one position per value, in the order the table lists them
    fig = plot_sweep(sweep[sweep["rate"] == 4], SWEEP_PLOTS["attainment-vs-rate"].on(
        x="host_cache_bytes"))
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8G", "32G"]
    assert ax.get_xlabel() == "Host memory for adapters"
    assert "policy=fcfs, K=1" in {line.get_label() for line in ax.get_lines()}
    with pytest.raises(SweepTableError, match="no key column 'colour' to put on x.*keys are "
                                              "policy, rate, cv"):
        plot_sweep(sweep, SWEEP_PLOTS["attainment-vs-rate"].on(x="colour"))


def test_every_metric_has_a_human_label_with_units():
    assert tuple(METRIC_LABELS) == SUMMARY_COLUMNS
    for column, shown in METRIC_LABELS.items():
        assert shown.label != column and "_" not in shown.label, column
        if column.endswith("_s"):
            assert shown.label.endswith("(s)"), column
        assert shown.percent == shown.label.endswith("(%)"), column
    ttft = SWEEP_PLOTS["attainment-vs-rate"].on(metric="ttft_mean_s")
    assert (ttft.ylabel, ttft.percent, ttft.target) == ("Mean time to first token (s)", False,
                                                        None)
    fig = plot_sweep(sweep_over("rate").assign(ttft_mean_s=1.5), ttft)
    assert fig.axes[0].get_ylabel() == "Mean time to first token (s)"
    distserve = SWEEP_PLOTS["attainment-vs-rate"].on(metric="attainment_distserve")
    assert distserve.percent and distserve.target == 0.9
