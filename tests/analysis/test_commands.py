"""`manylora metrics / compare / plot` end to end through the real command line."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from manylora.analysis.cli import main
from tests.analysis.runs import write_run
from tests.analysis.test_compare import SIM_REQUESTS
from tests.analysis.test_plots import sweep_over


def test_metrics_command(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    assert main(["metrics", str(run), "--ttft-slo", "2", "--tpot-slo", "1",
                 "-o", str(tmp_path / "m.csv")]) == 0
    out = capsys.readouterr().out
    assert "attainment_slora" in out and "0.4" in out
    table = pd.read_csv(tmp_path / "m.csv").set_index("metric")
    assert table.loc["finished", str(run)] == 3
    assert main(["metrics", str(run), "--by", "replica"]) == 0
    assert main(["metrics", str(run), "--outcomes"]) == 0
    assert "pool_full" in capsys.readouterr().out


def test_compare_command(tmp_path, capsys):
    a = write_run(tmp_path / "engine")
    b = write_run(tmp_path / "sim", SIM_REQUESTS, meta={"source": "simulator"})
    assert main(["compare", str(a), str(b), "-o", str(tmp_path / "cmp"), "--ttft-slo", "2",
                 "--hardware", "a100-80gb", "--model-shape", "llama-2-7b"]) == 0
    out = capsys.readouterr().out
    assert "within 10% on throughput_rps, latency_mean_s, ttft_p90_s" in out
    assert "cost model on" in (tmp_path / "cmp" / "report.md").read_text()


def test_plot_command_from_sweep_and_runs(tmp_path, capsys):
    sweep = tmp_path / "sweep.csv"
    sweep_over("rate").to_csv(sweep, index=False)
    assert main(["plot", "attainment-vs-rate", "--sweep", str(sweep), "--where", "cv=1",
                 "-o", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "attainment-vs-rate.png").is_file()
    run = write_run(tmp_path / "run")
    assert main(["plot", "pool-occupancy", str(run), "-o", str(tmp_path / "figs")]) == 0
    assert main(["plot", "latency-cdf", str(run), str(run), "-o", str(tmp_path / "figs")]) == 0
    assert {"pool_occupancy.pdf", "latency_cdf.png"} <= {
        p.name for p in (tmp_path / "figs").iterdir()}


def test_plot_command_puts_any_key_on_x(tmp_path, capsys):
    sweep = tmp_path / "sweep.csv"
    table = pd.concat([sweep_over("rate").assign(max_batch_adapters=k) for k in (1, 4, 8)])
    table.to_csv(sweep, index=False)
    assert main(["plot", "attainment-vs-rate", "--sweep", str(sweep), "--x",
                 "max_batch_adapters", "--where", "rate=4", "-o", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "attainment-vs-max_batch_adapters.png").is_file()
    capsys.readouterr()
    assert main(["plot", "attainment-vs-rate", "--sweep", str(sweep), "--x", "colour",
                 "-o", str(tmp_path / "figs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no key column 'colour' to put on x" in err
    assert main(["plot", "latency-cdf", "--x", "rate", "-o", str(tmp_path / "figs")]) == 2
    assert "--x applies to sweep figures" in capsys.readouterr().err


def test_goodput_command(tmp_path, capsys):
    sweep = tmp_path / "sweep.csv"
    sweep_over("rate").to_csv(sweep, index=False)
    assert main(["goodput", str(sweep), "-o", str(tmp_path / "g.csv")]) == 0
    table = pd.read_csv(tmp_path / "g.csv").set_index("policy")
    # seed-averaged fcfs: 0.99 at rate 1, 0.94 at 2, 0.59 at 4 -> 2 + 0.04 / 0.35 * 2
    assert table.loc["fcfs", "goodput_rps"] == pytest.approx(2 + 0.04 / 0.35 * 2)
    assert main(["goodput", str(sweep), "--metric", "nope"]) == 2


def test_bad_input_is_one_line_and_status_2(tmp_path, capsys):
    run = write_run(tmp_path / "run", "0,zero,0,4,3,finished,,0.0,1.0,2.0,3,0,0\n")
    assert main(["metrics", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("manylora metrics: error: ") and "row 2, column arrival_s: 'zero'" in err
    assert main(["metrics", str(run), "--warmup-s", "1", "--cooldown-frac", "0.1"]) == 2
    assert "cannot be combined" in capsys.readouterr().err
    assert main(["plot", "attainment-vs-rate", "--sweep", str(tmp_path / "no.csv"),
                 "-o", str(tmp_path)]) == 2
    assert "no.csv: missing file" in capsys.readouterr().err
    good = write_run(tmp_path / "good")
    assert main(["compare", str(good), str(good), "-o", str(tmp_path / "c"),
                 "--hardware", "a100-80gb"]) == 2
    assert "go together" in capsys.readouterr().err


def test_closed_stdout_ends_quietly(tmp_path):
    run = write_run(tmp_path / "run")
    reader = subprocess.Popen([sys.executable, "-m", "manylora.analysis.cli", "metrics",
                               str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.close()   # like `| head` exiting before the table is printed
    assert reader.wait(timeout=120) == 0
    assert b"Broken pipe" not in reader.stderr.read()
