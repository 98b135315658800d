"""Sweep throughput: a 200-point grid over 2,000 adapters, through ``manylora sweep``'s own code.

    python benchmarks/sweep_speed.py [--workers 2] [--out DIR] [--seeds 5] [--serial-too]

The grid (the acceptance sweep of issue 8): Llama-2-7B on the A100-80GB roofline preset with
S-LoRA's pool (125,000 one-token pages), 2,000 adapters of ranks 8/16/32/64 with uniform
popularity, prompts and outputs uniform in [8, 512], 300 s traces;
4 queue policies (fcfs, lifo, early-abort, edf) x 5 rates (4..20 req/s: from a third of this
deployment's capacity, about 12 req/s, to 1.7 times it) x cv {1, 4} x 5 seeds = 200 points,
about 730,000 simulated requests. The script times the whole sweep (grid expansion and validation, the process pool,
the simulations, the results table and one figure), then times a rerun into the same folder
(every point skipped), and prints the per-point wall times from points.csv (median, 90th
percentile, max) and the simulated requests per second. ``--serial-too`` also times the
same sweep in one process, side by side. The machine is shared: quote medians of repeats.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from manylora.analysis.sweep import run_sweep
from manylora.analysis.sweep_backends import default_workers, make_backend
from manylora.analysis.sweep_config import load_sweep_config
from manylora.analysis.sweep_grid import expand_grid
from manylora.analysis.sweep_options import SWEEP_OPTION_NAMES, SimulateOptions
from manylora.analysis.sweep_point import run_point

SWEEP = """
name = "bench-2000-adapters"
[workload]
duration_s = 300
lengths = {{name = "uniform", input_range = [8, 512], output_range = [8, 512]}}
[options]
hardware = "a100-80gb"
model-shape = "llama-2-7b"
pool-pages = 125000
[policies]
fcfs = {{queue = "fcfs"}}
lifo = {{queue = "lifo"}}
early-abort = {{queue = "early-abort"}}
edf = {{queue = "edf"}}
[grid]
rate = [4.0, 8.0, 12.0, 16.0, 20.0]
cv = [1, 4]
num_adapters = 2000
seed = {seeds}
[[plots]]
figure = "attainment-vs-rate"
where = ["cv=1"]
"""


def _timed_sweep(config_path: Path, out: Path, backend_name: str, workers: int) -> dict:
    start = time.perf_counter()
    config = load_sweep_config(config_path, SWEEP_OPTION_NAMES)
    tasks = expand_grid(config, SimulateOptions(config_path.parent))
    outcome = run_sweep(config, tasks, out, make_backend(backend_name, workers), run_point)
    return {"wall_s": time.perf_counter() - start, "points": outcome.points,
            "executed": outcome.executed, "skipped": outcome.skipped}


def _report(label: str, timing: dict, out: Path) -> None:
    points = pd.read_csv(out / "points.csv")
    table = pd.read_csv(out / "results.csv")
    per_point = points["wall_s"].to_numpy()
    requests = int(table["requests"].sum())
    print(f"{label}: {timing['points']} points ({timing['executed']} run, "
          f"{timing['skipped']} skipped) in {timing['wall_s']:.1f} s; "
          f"{requests:,} simulated requests = {requests / timing['wall_s']:,.0f} req/s; "
          f"per point median {np.median(per_point):.2f} s, p90 "
          f"{np.percentile(per_point, 90):.2f} s, max {per_point.max():.2f} s, "
          f"sum {per_point.sum():.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--seeds", type=int, default=5, help="seeds per setting (5: 200 points)")
    parser.add_argument("--out", type=Path, help="sweep folder (default: a temporary one)")
    parser.add_argument("--serial-too", action="store_true",
                        help="also run the sweep in one process, into a second folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="manylora-bench-sweep-") as tmp:
        root = args.out or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        config = root / "bench.toml"
        config.write_text(SWEEP.format(seeds=list(range(args.seeds))))
        out = root / "sweep"
        label = f"process pool, {args.workers} workers"
        _report(label, _timed_sweep(config, out, "process", args.workers), out)
        _report("rerun (all finished)", _timed_sweep(config, out, "process", args.workers), out)
        if args.serial_too:
            serial = root / "sweep-serial"
            _report("one process", _timed_sweep(config, serial, "serial", 1), serial)
            same = (serial / "results.csv").read_bytes() == (out / "results.csv").read_bytes()
            print(f"tables identical across backends: {same}")


if __name__ == "__main__":
    main()
