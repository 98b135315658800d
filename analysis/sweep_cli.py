"""``manylora sweep CONFIG.toml -o DIR``: run a grid of simulations, resumably, in parallel.

The command reads the sweep file (sweep_config.py), expands and validates every point
before running any (sweep_grid.py), picks the backend (a process pool over this machine's
cores, ``--workers 1`` in-process, or ``--ray [ADDRESS]``) and calls ``run_sweep``. Bad input
reaches the user as one line and exit status 2 (``USER_ERRORS``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from manylora.analysis.plot_kinds import PlotInputError
from manylora.analysis.sweep import run_sweep
from manylora.analysis.sweep_backends import BackendError, default_workers, make_backend
from manylora.analysis.sweep_config import SweepConfigError, load_sweep_config
from manylora.analysis.sweep_grid import expand_grid
from manylora.analysis.sweep_options import SWEEP_OPTION_NAMES, SimulateOptions
from manylora.analysis.sweep_point import run_point
from manylora.analysis.sweep_store import SweepStore, SweepStoreError
from manylora.analysis.sweep_table import SweepTableError
from manylora.traces.atomic_io import atomic_write_text

USER_ERRORS: tuple[type[BaseException], ...] = (
    SweepConfigError, BackendError, SweepStoreError, SweepTableError, PlotInputError)


def _backend_name(args: argparse.Namespace) -> str:
    if args.ray is not None:
        return "ray"
    return "serial" if args.workers == 1 else "process"


def _sweep(args: argparse.Namespace) -> int:
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
                        progress=not args.quiet and sys.stderr.isatty())
    print(f"{config.name}: {outcome.points} points, ran {outcome.executed}, "
          f"{outcome.skipped} already finished")
    for path in (*outcome.tables, *outcome.figures):
        print(path)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep", help="run a grid of simulations from a TOML sweep file (resumable, "
                      "parallel, optionally on Ray) into one results table and plots",
        description="Simulate every point of the grid in CONFIG (policies x rates x cv x "
                    "adapters x alpha x seeds x any simulate option) and write DIR/results.csv "
                    "(the sweep table), DIR/points.csv and DIR/plots/. Finished points are "
                    "kept under DIR/points/ and skipped when the command is run again.")
    p.add_argument("config", metavar="CONFIG.toml", help="sweep file (see studies/)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="sweep folder")
    p.add_argument("--workers", type=int, default=default_workers(), metavar="N",
                   help="parallel workers (default: the CPUs available, %(default)s here; "
                        "1 runs in this process)")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run the points as Ray tasks: on the cluster at ADDRESS (e.g. auto, "
                        "ray://host:10001), or on a local Ray instance with --workers CPUs")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the sweep file and say how many points are left to run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_sweep)
