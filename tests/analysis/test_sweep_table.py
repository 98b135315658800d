"""Sweep-table rows from runs, workload keys from a run's meta.json, and figures from runs."""
from __future__ import annotations

import math

import pytest

from manylora.analysis.cli import main
from manylora.analysis.run_folder import read_run
from manylora.analysis.slo import SLO
from manylora.analysis.sweep_table import (SweepTableError, flat_settings, point_from_meta,
                                           policy_labels, read_sweep, sweep_rows)
from tests.analysis.runs import write_run

TRACE_META = {"generator": "manylora.traces.generate", "seed": 3,
              "params": {"num_adapters": 50, "arrivals": {"name": "gamma", "rate": 2.5, "cv": 4},
                         "popularity": {"name": "slora", "alpha": 0.5}}}


def test_point_from_meta():
    meta = {"source": "simulator", "trace": TRACE_META, "policy": "abort"}
    assert point_from_meta(meta) == {"policy": "abort", "rate": 2.5, "cv": 4, "num_adapters": 50,
                                     "alpha": 0.5, "seed": 3}
    poisson = {"trace": {**TRACE_META, "params": {**TRACE_META["params"], "arrivals": {
        "name": "poisson", "rate": 1.0}, "popularity": {"name": "zipf", "exponent": 1.2}}}}
    point = point_from_meta(poisson)
    assert point["cv"] == 1.0 and point["alpha"] == 1.2 and point["policy"] == "default"
    with pytest.raises(SweepTableError, match="no trace.params.num_adapters"):
        point_from_meta({"source": "engine", "trace": {"generator": "import-azure"}})


def test_policy_labels_name_what_differs():
    metas = [{"scheduler": {"max_batch_size": 8}, "policies": {"queue": {"queue": q},
                                                               "memory": {"eviction": "lru"}}}
             for q in ("fcfs", "early-abort")]
    assert policy_labels(metas) == ["queue=fcfs", "queue=early-abort"]
    assert policy_labels(metas[:1]) == ["default"]
    assert policy_labels([{**metas[0], "policy": "mine"}, metas[1]]) == ["mine",
                                                                         "queue=early-abort"]
    assert flat_settings(metas[0]) == {"scheduler.max_batch_size": 8,
                                       "policies.memory.eviction": "lru",
                                       "policies.queue.queue": "fcfs"}


def test_sweep_rows_one_per_slo_scale(tmp_path):
    run = read_run(write_run(tmp_path / "run"))
    rows = sweep_rows(run.requests, point_from_meta({"trace": TRACE_META, "policy": "fcfs"}),
                      SLO(ttft_s=2.0, tpot_s=1.0), slo_scales=(0.5, 1.0, 2.0))
    assert rows["slo_scale"].tolist() == [0.5, 1.0, 2.0]
    assert rows["attainment_slora"].tolist() == pytest.approx([0.2, 0.4, 0.6])
    assert rows["ttft_slo_s"].tolist() == [1.0, 2.0, 4.0]
    assert (rows["num_adapters"] == 50).all() and (rows["policy"] == "fcfs").all()
    path = tmp_path / "sweep.csv"
    rows.to_csv(path, index=False)
    assert read_sweep(path).equals(rows)
    with pytest.raises(SweepTableError, match=r"\.csv or \.parquet"):
        read_sweep(tmp_path / "sweep.txt")


def test_slo_scale_figure_straight_from_runs(tmp_path):
    runs = [write_run(tmp_path / f"run{i}", meta={"source": "simulator", "policy": policy,
                                                   "trace": TRACE_META})
            for i, policy in enumerate(("fcfs", "abort"))]
    assert main(["plot", "attainment-vs-slo-scale", *map(str, runs), "--ttft-slo", "2",
                 "-o", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "attainment-vs-slo-scale.pdf").is_file()
    bad = write_run(tmp_path / "bad", meta={"source": "engine"})
    assert main(["plot", "attainment-vs-rate", str(bad), "-o", str(tmp_path / "figs")]) == 2
    assert math.isnan(point_from_meta({"trace": {"params": {"num_adapters": 1}}})["rate"])
