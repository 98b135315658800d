"""The comparison report on two hand-made runs of one trace."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from manylora.analysis.compare import (CompareConfig, RunMismatchError, compare_runs,
                                       relative_error)
from manylora.analysis.run_folder import read_run
from manylora.analysis.slo import SLO
from manylora.engine.step_shape import STEP_SHAPE_FIELDS
from tests.analysis.runs import TINY_REQUESTS, write_run

# The simulated run: request 1's first token (and finish) at 2.8 instead of 3.0, request 2
# finishing at 6.0 instead of 6.5; so latency [2, 1.8, 4], ttft [1, 1.8, 0.5], span 6.0.
SIM_REQUESTS = (TINY_REQUESTS.replace("1.5,3.0,3.0,1", "1.5,2.8,2.8,1")
                .replace("2.5,6.5,5", "2.5,6.0,5"))
CONFIG = CompareConfig(slo=SLO(ttft_s=2.0, tpot_s=1.0), labels=("engine", "simulator"))


@pytest.fixture
def runs(tmp_path):
    engine = read_run(write_run(tmp_path / "engine"))
    sim = read_run(write_run(tmp_path / "sim", SIM_REQUESTS, meta={"source": "simulator"}))
    return engine, sim


def test_metric_table_and_fidelity(runs, tmp_path):
    result = compare_runs(*runs, tmp_path / "out", CONFIG)
    table = result.metrics.set_index("metric")
    assert table.loc["throughput_rps", "A"] == pytest.approx(3 / 6.5)
    assert table.loc["throughput_rps", "B"] == pytest.approx(3 / 6.0)
    assert table.loc["throughput_rps", "rel_error"] == pytest.approx(6.5 / 6.0 - 1)
    assert table.loc["latency_mean_s", "rel_error"] == pytest.approx(7.8 / 8.5 - 1)
    # P90 TTFT: [0.5, 1, 2] -> 1.8 and [0.5, 1, 1.8] -> 1.64
    assert table.loc["ttft_p90_s", "rel_error"] == pytest.approx(1.64 / 1.8 - 1)
    # request 1 now beats the 2 s first-token SLO: 3 of 5 instead of 2 of 5
    assert table.loc["attainment_slora", "rel_error"] == pytest.approx(0.5)
    assert list(result.fidelity["metric"]) == ["throughput_rps", "latency_mean_s", "ttft_p90_s"]
    assert result.passed   # all three within 10%
    strict = compare_runs(*runs, tmp_path / "strict",
                          CompareConfig(slo=CONFIG.slo, tolerance=0.085))
    assert strict.fidelity["within_tolerance"].tolist() == [True, True, False]
    assert not strict.passed


def test_report_files(runs, tmp_path):
    out = tmp_path / "out"
    result = compare_runs(*runs, out, CONFIG)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["latency_cdf.pdf", "latency_cdf.png", "metrics.csv", "outcomes.csv",
                     "report.md", "step_time.pdf", "step_time.png"]
    assert sorted(p.name for p in result.files) == names
    report = (out / "report.md").read_text()
    assert "## Fidelity: PASS (tolerance 10%)" in report
    assert "| throughput_rps | 0.4615 | 0.5 | 8.333 | yes |" in report
    assert "![Latency and time-to-first-token CDFs" in report
    csv = pd.read_csv(out / "metrics.csv")
    assert list(csv.columns) == ["metric", "A", "B", "rel_error"]
    outcomes = pd.read_csv(out / "outcomes.csv", keep_default_na=False)
    assert outcomes.to_dict("records")[0] == {"status": "aborted", "reason": "deadline",
                                              "A": 1, "B": 1}


class _LinearCost:
    """A stand-in cost model: 0.1 s per step plus 0.05 s per prefill token."""

    def step_times(self, shapes: np.ndarray) -> np.ndarray:
        return 0.1 + 0.05 * shapes[:, STEP_SHAPE_FIELDS.index("prefill_tokens")]


def test_cost_model_predicts_reference_steps(runs, tmp_path):
    result = compare_runs(*runs, tmp_path / "out", CONFIG, cost_model=_LinearCost())
    row = result.step_times.iloc[-1]
    # steps: prefill 4, 0, 2, 3, 0 tokens; measured 1.0, 1.0, 1.5, 0.5, 4.0 s
    predicted = np.array([0.3, 0.1, 0.2, 0.25, 0.1])
    measured = np.array([1.0, 1.0, 1.5, 0.5, 4.0])
    assert row["mape_pct"] == pytest.approx(np.mean(np.abs(predicted / measured - 1)) * 100)
    assert row["busy_rel_error"] == pytest.approx(0.95 / 8.0 - 1)
    assert "Cost-model prediction vs measured" in (tmp_path / "out" / "report.md").read_text()


def test_different_traces_are_refused(runs, tmp_path):
    other = read_run(write_run(tmp_path / "other", TINY_REQUESTS.replace("0,0.0,0,4,3",
                                                                         "0,0.0,0,4,2")
                               .replace(",3,0,0\n1,", ",2,0,0\n1,")))
    with pytest.raises(RunMismatchError, match="do not hold the same trace"):
        compare_runs(runs[0], other, tmp_path / "out", CONFIG)


def test_relative_error_of_zero_reference_is_nan():
    np.testing.assert_array_equal(np.isnan(relative_error([0.0, 2.0], [1.0, 3.0])),
                                  [True, False])
