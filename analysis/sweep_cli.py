"""``manylora sweep CONFIG.toml -o DIR`` on the command line: its arguments.

Argument definitions only (the simulator and matplotlib are not imported), so the command line
starts fast. The handler is analysis/sweep_command.py:run_sweep_command, named as a
``"module:function"`` string that analysis/cli.py resolves when the command runs, as it does
``USER_ERRORS`` (docs/internals.md, "The command line").
"""
from __future__ import annotations

import argparse

from manylora.analysis.sweep_backends import default_workers

USER_ERRORS: tuple[str, ...] = (
    "manylora.analysis.sweep_config:SweepConfigError",
    "manylora.analysis.sweep_backends:BackendError",
    "manylora.analysis.sweep_store:SweepStoreError",
    "manylora.analysis.sweep_table:SweepTableError",
    "manylora.analysis.plot_kinds:PlotInputError")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sweep`` to the ``manylora`` command."""
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
    p.set_defaults(handler="manylora.analysis.sweep_command:run_sweep_command")
