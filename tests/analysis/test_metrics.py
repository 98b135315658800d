"""Run metrics against values computed by hand for tests/analysis/runs.py's tiny runs."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from manylora.analysis.metrics import (SUMMARY_COLUMNS, breakdown, outcome_counts,
                                       request_latencies, summarize)
from manylora.analysis.run_folder import read_run
from manylora.analysis.slo import SLO
from manylora.analysis.window import Window
from tests.analysis.runs import write_run

SLO_TINY = SLO(ttft_s=2.0, tpot_s=1.0)


@pytest.fixture
def tiny(tmp_path):
    return read_run(write_run(tmp_path / "run")).requests


def test_per_request_latencies(tiny):
    t = request_latencies(tiny)
    np.testing.assert_allclose(t["latency_s"][:3], [2.0, 2.0, 4.5])
    np.testing.assert_allclose(t["ttft_s"][:3], [1.0, 2.0, 0.5])
    np.testing.assert_allclose(t["tpot_s"][:3], [0.5, 0.0, 1.0])
    np.testing.assert_allclose(t["norm_latency_s"][:3], [2 / 3, 2.0, 0.9])
    np.testing.assert_allclose(t["queue_s"][:3], [0.0, 0.5, 0.0])
    assert t.loc[3:, ["latency_s", "ttft_s", "tpot_s", "norm_latency_s"]].isna().all().all()


def test_summary_hand_computed(tiny):
    s = summarize(tiny, SLO_TINY)
    assert list(s.index) == list(SUMMARY_COLUMNS)
    expected = {
        "requests": 5, "finished": 3, "aborted": 1, "rejected": 1, "preemptions": 1,
        "duration_s": 6.5, "throughput_rps": 3 / 6.5, "output_tps": 9 / 6.5,
        # latency [2, 2, 4.5]; numpy's linear percentiles: p90 at rank 1.8, p99 at 1.98
        "latency_mean_s": 8.5 / 3, "latency_p50_s": 2.0, "latency_p90_s": 4.0,
        "latency_p99_s": 4.45,
        "ttft_mean_s": 3.5 / 3, "ttft_p50_s": 1.0, "ttft_p90_s": 1.8, "ttft_p99_s": 1.98,
        "tpot_mean_s": 0.5, "tpot_p50_s": 0.5, "tpot_p90_s": 0.9, "tpot_p99_s": 0.99,
        "norm_latency_mean_s": (2 / 3 + 2.0 + 0.9) / 3, "queue_mean_s": 0.5 / 3,
        # S-LoRA: ttft < 2 strictly -> requests 0 and 2 of 5 (1 is exactly at the SLO)
        "attainment_slora": 2 / 5,
        # DistServe: ttft <= 2 and tpot <= 1 -> requests 0, 1, 2 of 5
        "attainment_distserve": 3 / 5,
        # S-LoRA reward: 1 - (1/2)^2 and 1 - (0.5/2)^2, the rest 0
        "satisfaction": (0.75 + 0.9375) / 5,
        "ttft_slo_s": 2.0, "tpot_slo_s": 1.0,
    }
    assert set(expected) == set(SUMMARY_COLUMNS)
    for name, value in expected.items():
        assert s[name] == pytest.approx(value), name


def test_slo_scale_multiplies_both_objectives(tiny):
    tight = summarize(tiny, SLO_TINY.scaled(0.5))   # ttft 1.0, tpot 0.5
    assert tight["attainment_slora"] == pytest.approx(1 / 5)      # only ttft 0.5 < 1
    assert tight["attainment_distserve"] == pytest.approx(1 / 5)  # only (1.0, 0.5) on the edge
    loose = summarize(tiny, SLO_TINY.scaled(2.0))   # ttft 4.0, tpot 2.0
    assert loose["attainment_slora"] == pytest.approx(3 / 5)
    assert loose["attainment_distserve"] == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="SLO scale"):
        SLO_TINY.scaled(0)
    with pytest.raises(ValueError, match="SLO.ttft_s"):
        SLO(ttft_s=-1)


def test_everything_aborted_gives_nan_latencies_and_zero_attainment(tmp_path):
    rows = ("0,0.0,0,4,3,aborted,deadline,0.0,1.0,,1,0,0\n"
            "1,1.0,1,2,2,aborted,deadline,1.5,,,0,0,0\n"
            "2,2.0,0,3,5,aborted,preempted_too_often,,,3.0,0,2,0\n")
    s = summarize(read_run(write_run(tmp_path / "run", rows)).requests, SLO_TINY)
    assert s["requests"] == 3 and s["aborted"] == 3 and s["finished"] == 0
    assert s["duration_s"] == pytest.approx(3.0)
    assert s["throughput_rps"] == 0 and s["output_tps"] == 0
    for name in SUMMARY_COLUMNS:
        if name.startswith(("latency_", "ttft_m", "ttft_p", "tpot_m", "tpot_p", "norm_",
                            "queue_")):
            assert math.isnan(s[name]), name
    assert s["attainment_slora"] == 0 and s["attainment_distserve"] == 0
    assert s["satisfaction"] == 0


def test_no_requests_at_all(tmp_path):
    s = summarize(read_run(write_run(tmp_path / "run", "")).requests, SLO_TINY)
    assert s["requests"] == 0 and s["finished"] == 0
    assert math.isnan(s["throughput_rps"]) and math.isnan(s["attainment_slora"])
    assert math.isnan(s["satisfaction"]) and math.isnan(s["duration_s"])


def test_only_rejected_at_one_instant(tmp_path):
    rows = "0,5.0,0,4,3,rejected,pool_full,,,,0,0,0\n"
    s = summarize(read_run(write_run(tmp_path / "run", rows)).requests, SLO_TINY)
    assert s["duration_s"] == 0 and math.isnan(s["throughput_rps"])
    assert s["attainment_slora"] == 0 and s["rejected"] == 1


def test_window_by_fraction_and_by_time(tiny):
    by_frac = summarize(tiny, SLO_TINY, Window(warmup_frac=0.2, cooldown_frac=0.2))
    by_time = summarize(tiny, SLO_TINY, Window(warmup_s=1.0, cooldown_s=1.0))
    # both keep requests 1, 2, 3: arrivals 1..3, last event 6.5
    for s in (by_frac, by_time):
        assert s["requests"] == 3 and s["finished"] == 2 and s["aborted"] == 1
        assert s["duration_s"] == pytest.approx(5.5)
        assert s["throughput_rps"] == pytest.approx(2 / 5.5)
        assert s["attainment_slora"] == pytest.approx(1 / 3)
    assert Window(warmup_frac=0.1).select(tiny)["request_id"].tolist() == [0, 1, 2, 3, 4]
    assert Window().describe() == "all requests"
    assert "first 20% and last 20%" in Window(warmup_frac=0.2, cooldown_frac=0.2).describe()
    with pytest.raises(ValueError, match="cannot be combined"):
        Window(warmup_s=1, cooldown_frac=0.1)
    with pytest.raises(ValueError, match="Window.warmup_frac"):
        Window(warmup_frac=0.6, cooldown_frac=0.5)
    with pytest.raises(ValueError, match="Window.cooldown_s"):
        Window(cooldown_s=-1)


def test_outcome_counts(tiny):
    counts = outcome_counts(tiny)
    assert counts.to_dict("records") == [
        {"status": "aborted", "reason": "deadline", "requests": 1},
        {"status": "finished", "reason": "", "requests": 3},
        {"status": "rejected", "reason": "pool_full", "requests": 1},
    ]


def test_breakdown_by_replica_and_adapter(tiny):
    by_replica = breakdown(tiny, "replica", SLO_TINY).set_index("replica")
    assert by_replica.loc[0, "requests"] == 3
    assert by_replica.loc[0, "throughput_rps"] == pytest.approx(2 / 6.5)
    assert by_replica.loc[0, "attainment_slora"] == pytest.approx(2 / 3)
    assert by_replica.loc[1, "duration_s"] == pytest.approx(2.5)
    assert by_replica.loc[1, "throughput_rps"] == pytest.approx(0.4)
    assert by_replica.loc[1, "attainment_slora"] == 0
    by_adapter = breakdown(tiny, "adapter_id", SLO_TINY).set_index("adapter_id")
    assert by_adapter.index.tolist() == [-1, 0, 1]
    assert by_adapter.loc[0, "latency_mean_s"] == pytest.approx(3.25)
    assert math.isnan(by_adapter.loc[-1, "latency_mean_s"])
    with pytest.raises(ValueError, match="no column 'tenant'"):
        breakdown(tiny, "tenant")


def test_breakdown_of_empty_run_is_empty(tiny):
    frame = breakdown(tiny.iloc[:0], "replica")
    assert isinstance(frame, pd.DataFrame) and frame.empty
    assert list(frame.columns) == ["replica", *SUMMARY_COLUMNS]
