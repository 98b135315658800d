"""What ``manylora sweep CONFIG.toml -o DIR`` does (arguments in sweep_cli.py): run a grid of
simulations, resumably, in parallel.

The handler reads the sweep file (sweep_config.py), expands and validates every point before
running any (sweep_grid.py), picks the backend (a process pool over this machine's cores,
``--workers 1`` in-process, or ``--ray [ADDRESS]``) and calls ``run_sweep``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from manylora.analysis.sweep import run_sweep
from manylora.analysis.sweep_backends import make_backend
from manylora.analysis.sweep_config import load_sweep_config
from manylora.analysis.sweep_grid import expand_grid
from manylora.analysis.sweep_options import SWEEP_OPTION_NAMES, SimulateOptions
from manylora.analysis.sweep_point import run_point
from manylora.analysis.sweep_store import SweepStore
from manylora.traces.atomic_io import atomic_write_text


def _backend_name(args: argparse.Namespace) -> str:
    if args.ray is not None:
        return "ray"
    return "serial" if args.workers == 1 else "process"


def run_sweep_command(args: argparse.Namespace) -> int:
    path = Path(args.config)
    config = load_sweep_config(path, SWEEP_OPTION_NAMES)
    tasks = expand_grid(config, SimulateOptions(path.parent))
    store = SweepStore(args.output)
    finished = store.finished((t.point_id for t in tasks), need_runs=config.keep_runs)
    if args.dry_run:
        about = f" ({config.description})" if config.description else ""
        print(f"{config.name}{about}: {len(tasks)} points, {len(finished)} already finished "
              f"in {store.root}, {len(tasks) - len(finished)} to run")
        return 0
    backend = make_backend(_backend_name(args), args.workers, args.ray or None)
    store.prepare()
    atomic_write_text(store.root / "sweep.toml", path.read_text(encoding="utf-8"))
    outcome = run_sweep(config, tasks, store.root, backend, run_point,
                        progress=args.progress)
    print(f"{config.name}: {outcome.points} points, ran {outcome.executed}, "
          f"{outcome.skipped} already finished")
    for path in (*outcome.tables, *outcome.figures):
        print(path)
    return 0
