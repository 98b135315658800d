"""The analysis subcommands: ``manylora metrics``, ``compare``, ``goodput`` and ``plot``.

``register(subparsers)`` adds them and ``USER_ERRORS`` lists the exceptions that mean bad
input (printed as one line by ``analysis/cli.py``, exit status 2). This module only parses
options into configs, calls the library and says where the outputs went.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from manylora.analysis.compare import CompareConfig, RunMismatchError, compare_runs
from manylora.analysis.goodput import DEFAULT_TARGET, INTERPOLATIONS, goodput_table
from manylora.analysis.metrics import breakdown, outcome_counts, summarize
from manylora.analysis.outputs import write_csv
from manylora.analysis.plot_kinds import PLOT_KINDS, PlotInputError, render_plot
from manylora.analysis.report import format_value
from manylora.analysis.run_folder import RunFolderError, read_run
from manylora.analysis.slo import SLO
from manylora.analysis.sweep_table import SweepTableError, key_columns, read_sweep
from manylora.analysis.window import Window
from manylora.simulator.cost_model import CostModelError, cost_model_from_args


class OptionError(ValueError):
    """Command-line options that do not make sense together."""


USER_ERRORS: tuple[type[Exception], ...] = (
    RunFolderError, SweepTableError, RunMismatchError, PlotInputError, CostModelError,
    OptionError)


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


def _slo_window(args: argparse.Namespace) -> tuple[SLO, Window]:
    try:
        slo = SLO(ttft_s=args.ttft_slo, tpot_s=args.tpot_slo).scaled(args.slo_scale)
        window = Window(warmup_s=args.warmup_s, cooldown_s=args.cooldown_s,
                        warmup_frac=args.warmup_frac, cooldown_frac=args.cooldown_frac)
    except ValueError as exc:
        raise OptionError(str(exc)) from exc
    return slo, window


def print_table(frame: pd.DataFrame) -> None:
    text = frame.map(format_value) if not frame.empty else frame
    print(text.to_string(index=False), file=sys.stdout)


def _run_metrics(args: argparse.Namespace) -> int:
    slo, window = _slo_window(args)
    runs = [read_run(path) for path in args.runs]
    if args.by:
        if len(runs) != 1:
            raise OptionError("--by breaks down one run at a time; give one RUN")
        table = breakdown(runs[0].requests, args.by, slo, window)
    elif args.outcomes:
        table = pd.concat([outcome_counts(r.requests, window).assign(run=str(r.path))
                           for r in runs], ignore_index=True)
    else:
        table = pd.DataFrame({str(r.path): summarize(r.requests, slo, window) for r in runs})
        table = table.rename_axis("metric").reset_index()
    print_table(table)
    if args.output:
        print(f"wrote {write_csv(table, args.output)}", file=sys.stderr)
    return 0


def _run_compare(args: argparse.Namespace) -> int:
    slo, window = _slo_window(args)
    try:
        config = CompareConfig(slo=slo, window=window, tolerance=args.tolerance,
                               labels=tuple(args.labels) if args.labels else None)
    except ValueError as exc:
        raise OptionError(str(exc)) from exc
    cost_model = None
    if args.profile or args.hardware or args.model_shape:
        cost_model = cost_model_from_args(args.profile, args.hardware, args.model_shape)
    result = compare_runs(read_run(args.run_a), read_run(args.run_b), args.output, config,
                          cost_model)
    fidelity = result.fidelity.assign(rel_error=result.fidelity["rel_error"] * 100)
    print_table(fidelity.rename(columns={"rel_error": "rel_error_%"}))
    verdict = "within" if result.passed else "NOT within"
    print(f"{verdict} {config.tolerance:.0%} on {', '.join(result.fidelity['metric'])}; "
          f"report: {Path(args.output) / 'report.md'}")
    return 0


def _run_goodput(args: argparse.Namespace) -> int:
    sweep = read_sweep(args.sweep)
    if args.metric not in sweep.columns:
        raise OptionError(f"{args.sweep} has no metric column {args.metric!r}")
    by = args.by.split(",") if args.by else [
        k for k in key_columns(sweep) if k not in ("rate", "seed") and sweep[k].nunique() > 1]
    try:
        table = goodput_table(sweep, by, metric=args.metric, target=args.target,
                              interpolation=args.interpolation)
    except ValueError as exc:
        raise OptionError(str(exc)) from exc
    print_table(table)
    if args.output:
        print(f"wrote {write_csv(table, args.output)}", file=sys.stderr)
    return 0


def _run_plot(args: argparse.Namespace) -> int:
    slo, window = _slo_window(args)
    paths = render_plot(args.kind, args.output, sweep=args.sweep, runs=args.runs,
                        metric=args.metric, where=args.where, slo=slo, window=window)
    for path in paths:
        print(path)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=_run_metrics)

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
    p.set_defaults(func=_run_compare)

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
    p.set_defaults(func=_run_goodput)

    p = subparsers.add_parser("plot", help="SLO, throughput, occupancy and latency figures "
                              "(PNG and PDF) from a sweep table or run folders")
    p.add_argument("kind", choices=tuple(PLOT_KINDS), help="which figure")
    p.add_argument("runs", nargs="*", metavar="RUN", help="run folder(s), if no --sweep")
    p.add_argument("--sweep", metavar="TABLE", help="sweep table (.csv or .parquet)")
    p.add_argument("--metric", help="metric column for sweep figures (default: the figure's)")
    p.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                   help="keep only sweep rows with this key value (repeatable)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="figure folder")
    _add_slo_options(p)
    p.set_defaults(func=_run_plot)
