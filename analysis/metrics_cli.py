"""``manylora metrics``, ``compare``, ``goodput`` and ``plot`` on the command line: their
arguments.

Argument definitions only (no scipy, matplotlib or cost models are imported), so the command
line starts fast. The handlers live in analysis/commands.py, named as ``"module:function"``
strings that analysis/cli.py resolves when a command runs, as it does ``USER_ERRORS``
(docs/internals.md, "The command line").
"""
from __future__ import annotations

import argparse

from manylora.analysis.goodput import DEFAULT_TARGET, INTERPOLATIONS
from manylora.analysis.plot_specs import FIGURES
from manylora.analysis.slo import SLO

_COMMANDS = "manylora.analysis.commands"
USER_ERRORS: tuple[str, ...] = (
    "manylora.analysis.run_folder:RunFolderError",
    "manylora.analysis.sweep_table:SweepTableError",
    "manylora.analysis.compare:RunMismatchError",
    "manylora.analysis.plot_kinds:PlotInputError",
    "manylora.simulator.cost_base:CostModelError",
    f"{_COMMANDS}:OptionError")


def _add_slo_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("SLO and measurement window")
    group.add_argument("--ttft-slo", type=float, default=SLO().ttft_s, metavar="S",
                       help="first-token SLO in seconds (default %(default)s, as S-LoRA)")
    group.add_argument("--tpot-slo", type=float, default=SLO().tpot_s, metavar="S",
                       help="time-per-output-token SLO in seconds, for DistServe attainment "
                            "(default %(default)s)")
    group.add_argument("--slo-scale", type=float, default=1.0, metavar="K",
                       help="multiply both SLOs by K (default 1)")
    group.add_argument("--warmup-s", type=float, default=0.0, metavar="S",
                       help="drop requests arriving in the first S seconds")
    group.add_argument("--cooldown-s", type=float, default=0.0, metavar="S",
                       help="drop requests arriving in the last S seconds")
    group.add_argument("--warmup-frac", type=float, default=0.0, metavar="F",
                       help="drop the first fraction F of requests (by arrival)")
    group.add_argument("--cooldown-frac", type=float, default=0.0, metavar="F",
                       help="drop the last fraction F of requests (by arrival)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``metrics``, ``compare``, ``goodput`` and ``plot`` to the ``manylora`` command."""
    p = subparsers.add_parser("metrics", help="metrics of run folders (throughput, latency, "
                              "TTFT, TPOT, SLO attainment, goodput inputs)")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--by", choices=("replica", "adapter_id"),
                     help="one row per replica or per adapter instead of one column per run")
    how.add_argument("--outcomes", action="store_true",
                     help="requests per status and reason (aborts and rejections by reason)")
    p.add_argument("-o", "--output", metavar="CSV", help="also write the table as CSV")
    _add_slo_options(p)
    p.set_defaults(handler=f"{_COMMANDS}:run_metrics")

    p = subparsers.add_parser("compare", help="compare two runs of one trace (engine vs "
                              "simulator): metric table, CDFs, step times, report.md")
    p.add_argument("run_a", metavar="RUN_A", help="reference run (e.g. the engine replay)")
    p.add_argument("run_b", metavar="RUN_B", help="candidate run (e.g. the simulation)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="report folder")
    p.add_argument("--labels", nargs=2, metavar=("A", "B"), help="legend names of the runs")
    p.add_argument("--tolerance", type=float, default=0.10,
                   help="relative error allowed on throughput, mean latency and P90 TTFT "
                        "(default %(default)s)")
    cost = p.add_argument_group("cost model (predicts RUN_A's step times; without one the "
                                "step-time distributions are compared)")
    cost.add_argument("--profile", metavar="P", help="profile JSON to fit the cost model from")
    cost.add_argument("--hardware", metavar="NAME", help="roofline hardware preset")
    cost.add_argument("--model-shape", metavar="NAME", help="roofline model shape")
    _add_slo_options(p)
    p.set_defaults(handler=f"{_COMMANDS}:run_compare")

    p = subparsers.add_parser("goodput", help="highest request rate with SLO attainment >= "
                              "a target, per policy/configuration, from a sweep table")
    p.add_argument("sweep", metavar="TABLE", help="sweep table (.csv or .parquet)")
    p.add_argument("--by", metavar="COL[,COL...]",
                   help="group columns (default: every key that varies, except rate and seed)")
    p.add_argument("--metric", default="attainment_slora", help="attainment column "
                   "(default %(default)s; attainment_distserve for TTFT and TPOT)")
    p.add_argument("--target", type=float, default=DEFAULT_TARGET,
                   help="attainment target (default %(default)s)")
    p.add_argument("--interpolation", choices=tuple(INTERPOLATIONS), default="linear",
                   help="linear: interpolate between swept rates; none: highest swept rate")
    p.add_argument("-o", "--output", metavar="CSV", help="also write the table as CSV")
    p.set_defaults(handler=f"{_COMMANDS}:run_goodput")

    p = subparsers.add_parser("plot", help="SLO, throughput, occupancy and latency figures "
                              "(PNG and PDF) from a sweep table or run folders")
    p.add_argument("kind", choices=FIGURES, help="which figure")
    p.add_argument("runs", nargs="*", metavar="RUN", help="run folder(s), if no --sweep")
    p.add_argument("--sweep", metavar="TABLE", help="sweep table (.csv or .parquet)")
    p.add_argument("--metric", help="metric column for sweep figures (default: the figure's)")
    p.add_argument("--x", metavar="COLUMN",
                   help="key column on x for sweep figures instead of the figure's, e.g. "
                        "max_batch_adapters or alpha (any key of the table; the file is then "
                        "named after it)")
    p.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                   help="keep only sweep rows with this key value (repeatable)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="figure folder")
    _add_slo_options(p)
    p.set_defaults(handler=f"{_COMMANDS}:run_plot")
