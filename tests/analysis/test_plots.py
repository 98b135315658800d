"""Figures: data drawn equals the data given, axes labelled, legends present, no text overlaps,
PNG and PDF written."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from manylora.analysis.plots_run import (MAX_POINTS, _binned, _occupancy, plot_cdfs,
                                         plot_pool_occupancy, plot_step_distributions,
                                         plot_step_durations)
from manylora.analysis.plot_specs import SWEEP_PLOTS
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
