"""Resuming sweeps: finished points are skipped, a killed sweep leaves only whole points, and
the table does not depend on which run computed which point (stand-in point function)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from manylora.analysis.sweep import run_sweep
from manylora.analysis.sweep_backends import make_backend
from manylora.analysis.sweep_config import load_sweep_config
from manylora.analysis.sweep_grid import expand_grid
from manylora.analysis.sweep_options import SWEEP_OPTION_NAMES, SimulateOptions
from manylora.analysis.sweep_store import SweepStore, SweepStoreError
from manylora.analysis.sweep_table import read_sweep
from manylora.traces.atomic_io import TEMP_MARK
from tests.analysis.sweep_standin import (FAIL_ENV, LOG_ENV, SLEEP_ENV, StandinFailure,
                                          executions, standin_point)

REPO = Path(__file__).resolve().parents[2]
SWEEP = """
[options]
hardware = "a100-80gb"
model-shape = "llama-2-7b"
pool-pages = 20000
[policies]
fcfs = {queue = "fcfs"}
lifo = {queue = "lifo"}
[grid]
rate = [1.0, 2.0, 4.0]
cv = [1, 3]
seed = SEEDS
[metrics]
slo_scales = [1.0, 2.0]
[[plots]]
figure = "attainment-vs-cv"
where = ["slo_scale=1", "rate=2"]
"""


def plan(tmp_path: Path, seeds: str = "[0, 1]"):
    path = tmp_path / f"sweep{len(seeds)}.toml"
    path.write_text(SWEEP.replace("SEEDS", seeds))
    config = load_sweep_config(path, SWEEP_OPTION_NAMES)
    return config, expand_grid(config, SimulateOptions(tmp_path))


@pytest.fixture
def log(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "executions"
    folder.mkdir()
    monkeypatch.setenv(LOG_ENV, str(folder))
    return folder


def test_rerun_skips_finished_points(tmp_path, log):
    config, tasks = plan(tmp_path)
    out = tmp_path / "out"
    first = run_sweep(config, tasks, out, make_backend("serial"), standin_point)
    assert (first.points, first.executed, first.skipped) == (24, 24, 0)
    again = run_sweep(config, tasks, out, make_backend("serial"), standin_point)
    assert (again.executed, again.skipped) == (0, 24)
    assert len(executions(log)) == 24
    table = read_sweep(out / "results.csv")
    assert len(table) == 24 * 2 and list(table.columns[:7]) == [
        "policy", "rate", "cv", "num_adapters", "alpha", "seed", "slo_scale"]
    assert (out / "plots" / "attainment-vs-cv.png").is_file()


def test_a_bigger_grid_runs_only_its_new_points(tmp_path, log):
    out = tmp_path / "out"
    small_config, small = plan(tmp_path, "[0]")
    run_sweep(small_config, small, out, make_backend("serial"), standin_point)
    config, tasks = plan(tmp_path, "[0, 1]")
    outcome = run_sweep(config, tasks, out, make_backend("serial"), standin_point)
    assert (outcome.executed, outcome.skipped) == (12, 12)
    runs = executions(log)
    assert len(runs) == 24 and len(set(runs)) == 24        # no point ran twice
    seeds = {t.point_id: t.keys["seed"] for t in tasks}
    assert sum(seeds.get(i) == 1 for i in runs) == 12      # the rerun ran exactly seed 1


def test_table_is_the_same_whoever_computed_the_points(tmp_path, log):
    config, tasks = plan(tmp_path)
    whole = run_sweep(config, tasks, tmp_path / "whole", make_backend("serial"),
                      standin_point)
    # half the points first (every other one), the rest later on a two-process pool
    pieced = tmp_path / "pieced"
    run_sweep(config, tasks[::2], pieced, make_backend("serial"), standin_point)
    run_sweep(config, tasks, pieced, make_backend("process", workers=2), standin_point)
    assert (pieced / "results.csv").read_bytes() == whole.tables[0].read_bytes()


def test_leftovers_of_a_killed_run_are_removed_and_bad_point_files_named(tmp_path, log):
    config, tasks = plan(tmp_path, "[0]")
    out = tmp_path / "out"
    (out / "points").mkdir(parents=True)
    (out / "runs").mkdir()
    half = out / "points" / f".{tasks[0].point_id}.json{TEMP_MARK}99-0"
    half.write_text('{"rows": [')
    staged = out / "runs" / f".{tasks[0].point_id}{TEMP_MARK}99-0"
    staged.mkdir()
    run_sweep(config, tasks, out, make_backend("serial"), standin_point)
    assert not half.exists() and not staged.exists()
    store = SweepStore(out)
    store.point_path(tasks[3].point_id).write_text("{trunc")
    with pytest.raises(SweepStoreError, match=f"{tasks[3].point_id}.json: unreadable point "
                                              f"file .*delete it to rerun"):
        run_sweep(config, tasks, out, make_backend("serial"), standin_point)


def test_a_failing_point_stops_the_sweep_and_keeps_what_finished(tmp_path, log, monkeypatch):
    config, tasks = plan(tmp_path)
    out = tmp_path / "out"
    monkeypatch.setenv(FAIL_ENV, "5")
    with pytest.raises(StandinFailure, match="point 5 failed on purpose"):
        run_sweep(config, tasks, out, make_backend("process", workers=2), standin_point)
    stored = SweepStore(out).finished(t.point_id for t in tasks)
    assert tasks[5].point_id not in stored and len(stored) < len(tasks)
    assert not (out / "results.csv").exists()
    monkeypatch.delenv(FAIL_ENV)
    outcome = run_sweep(config, tasks, out, make_backend("serial"), standin_point)
    assert outcome.skipped == len(stored) and outcome.executed == len(tasks) - len(stored)


DRIVER = """
import sys
from manylora.analysis.sweep import run_sweep
from manylora.analysis.sweep_backends import make_backend
from tests.analysis.test_sweep_resume import plan
from tests.analysis.sweep_standin import standin_point
from pathlib import Path
config, tasks = plan(Path(sys.argv[1]))
run_sweep(config, tasks, sys.argv[2], make_backend("process", workers=2), standin_point)
"""


def test_killed_sweep_leaves_whole_points_and_resumes(tmp_path, log):
    out = tmp_path / "out"
    env = {**os.environ, SLEEP_ENV: "0.25", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path), str(out)], cwd=REPO,
                            env=env, start_new_session=True, stderr=subprocess.PIPE)
    points = out / "points"
    deadline = time.monotonic() + 90
    try:
        while len(list(points.glob("*.json"))) < 4:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the sweep stored no points in 90 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)   # the driver and its pool workers
        proc.wait()
        proc.stderr.close()
    config, tasks = plan(tmp_path)
    finished = {p.stem for p in points.glob("*.json") if not p.name.startswith(".")}
    assert 4 <= len(finished) < len(tasks)
    for path in points.glob("*.json"):
        if not path.name.startswith("."):
            assert json.loads(path.read_text())["rows"]     # whole, parseable point files
    before = set(os.listdir(log))
    outcome = run_sweep(config, tasks, out, make_backend("serial"), standin_point)
    rerun = [name.split("-")[0] for name in set(os.listdir(log)) - before]
    assert outcome.skipped == len(finished) and outcome.executed == len(tasks) - len(finished)
    assert len(rerun) == outcome.executed and not set(rerun) & finished
    clean = run_sweep(config, tasks, tmp_path / "clean", make_backend("serial"), standin_point)
    assert (out / "results.csv").read_bytes() == clean.tables[0].read_bytes()
