"""Sweeps over the real simulator: every backend (in-process, process pool, local Ray) writes
the same table; a kept run folder scores exactly like its point's rows; the command line."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from manylora.analysis.cli import main
from manylora.analysis.metrics import SUMMARY_COLUMNS, summarize
from manylora.analysis.run_folder import read_run
from manylora.analysis.slo import SLO
from manylora.analysis.sweep import run_sweep
from manylora.analysis.sweep_backends import make_backend
from manylora.analysis.sweep_config import load_sweep_config
from manylora.analysis.sweep_grid import expand_grid
from manylora.analysis.sweep_options import SWEEP_OPTION_NAMES, SimulateOptions
from manylora.analysis.sweep_point import run_point
from manylora.analysis.sweep_store import SweepStore
from manylora.analysis.sweep_table import read_sweep

# Small traces on a roofline A100 whose pool is small enough (3,000 pages) that rate and
# policy change the outcome: the table must show real differences, not a constant.
SWEEP = """
name = "tiny"
KEEP
[workload]
duration_s = 20
lengths = {name = "uniform", input_range = [64, 512], output_range = [64, 512]}
[options]
hardware = "a100-80gb"
model-shape = "llama-2-7b"
pool-pages = 3000
slo-ttft = 2.0
[policies]
fcfs = {queue = "fcfs"}
abort = {queue = "early-abort"}
[grid]
rate = [4.0, 16.0]
num_adapters = 40
seed = [0, 1]
[metrics]
ttft_slo_s = 2.0
slo_scales = [1.0, 4.0]
[[plots]]
figure = "attainment-vs-rate"
where = ["slo_scale=1"]
"""


def plan(tmp_path, keep: bool = False):
    path = tmp_path / "tiny.toml"
    path.write_text(SWEEP.replace("KEEP", f"keep_runs = {str(keep).lower()}"))
    config = load_sweep_config(path, SWEEP_OPTION_NAMES)
    return path, config, expand_grid(config, SimulateOptions(tmp_path))


def test_every_backend_writes_the_same_table(tmp_path):
    _, config, tasks = plan(tmp_path)
    serial = run_sweep(config, tasks, tmp_path / "serial", make_backend("serial"), run_point)
    pool = run_sweep(config, tasks, tmp_path / "pool", make_backend("process", workers=2),
                     run_point)
    expected = serial.tables[0].read_bytes()
    assert pool.tables[0].read_bytes() == expected
    table = read_sweep(serial.tables[0])
    assert len(table) == 8 * 2
    fcfs = table[(table["slo_scale"] == 1.0) & (table["policy"] == "fcfs")]
    by_rate = fcfs.groupby("rate")["attainment_slora"]
    # the load matters: at 16 req/s this pool cannot keep first tokens within 2 s for all
    assert by_rate.max()[16.0] < by_rate.min()[4.0]
    assert (table["requests"] > 0).all()


def test_ray_backend_writes_the_same_table(tmp_path):
    ray = pytest.importorskip("ray")
    _, config, tasks = plan(tmp_path)
    serial = run_sweep(config, tasks, tmp_path / "serial", make_backend("serial"), run_point)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = run_sweep(config, tasks, tmp_path / "ray", make_backend("ray"), run_point)
    finally:
        ray.shutdown()
    assert on_ray.executed == len(tasks)
    assert on_ray.tables[0].read_bytes() == serial.tables[0].read_bytes()


def test_kept_run_folders_score_like_their_points(tmp_path):
    _, config, tasks = plan(tmp_path, keep=True)
    out = tmp_path / "out"
    run_sweep(config, tasks[:2], out, make_backend("serial"), run_point)
    store = SweepStore(out)
    for task in tasks[:2]:
        run = read_run(out / "runs" / task.point_id)
        assert run.meta["policy"] == task.keys["policy"]
        rows = store.rows([task.point_id])      # exact floats (results.csv has 9 digits)
        for scale in (1.0, 4.0):
            row = rows[rows["slo_scale"] == scale].iloc[0]
            metrics = summarize(run.requests, SLO(ttft_s=2.0).scaled(scale))
            np.testing.assert_array_equal(
                row[list(SUMMARY_COLUMNS)].to_numpy(np.float64), metrics.to_numpy(np.float64))
    table = read_sweep(out / "results.csv")
    np.testing.assert_allclose(table[list(SUMMARY_COLUMNS)].to_numpy(np.float64),
                               store.rows(t.point_id for t in tasks[:2])[
                                   list(SUMMARY_COLUMNS)].to_numpy(np.float64), rtol=1e-8)
    # a finished point whose run folder went missing is run again
    removed = out / "runs" / tasks[0].point_id
    for path in removed.iterdir():
        path.unlink()
    removed.rmdir()
    again = run_sweep(config, tasks[:2], out, make_backend("serial"), run_point)
    assert (again.executed, again.skipped) == (1, 1) and removed.is_dir()


def test_parquet_table_matches_the_csv(tmp_path):
    pytest.importorskip("pyarrow")
    _, config, tasks = plan(tmp_path)
    outcome = run_sweep(config, tasks[:2], tmp_path / "out", make_backend("serial"), run_point)
    parquet = read_sweep(tmp_path / "out" / "results.parquet")
    pd.testing.assert_frame_equal(parquet, read_sweep(outcome.tables[0]), check_exact=False,
                                  rtol=1e-8)


def test_sweep_command(tmp_path, capsys):
    path, _, tasks = plan(tmp_path)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "-o", str(out), "--dry-run"]) == 0
    assert "tiny: 8 points, 0 already finished" in capsys.readouterr().out
    assert main(["sweep", str(path), "-o", str(out), "--workers", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "tiny: 8 points, ran 8, 0 already finished" in printed
    assert str(out / "results.csv") in printed
    assert (out / "plots" / "attainment-vs-rate.png").is_file()
    assert (out / "sweep.toml").read_text() == path.read_text()
    points = pd.read_csv(out / "points.csv")
    assert list(points["point_id"]) == [t.point_id for t in tasks]
    assert main(["sweep", str(path), "-o", str(out), "--workers", "1", "--quiet"]) == 0
    assert "ran 0, 8 already finished" in capsys.readouterr().out


@pytest.mark.parametrize("text,message", [
    ("[grid]\nrate = [0.0]\n", "grid point policy=default, rate=0.0: GammaArrivals.rate"),
    ("[grid\n", "not valid TOML"),
])
def test_bad_sweep_file_is_one_line_and_status_2(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["sweep", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("manylora sweep: error: ") and message in err
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()
