"""What ``manylora metrics``, ``compare``, ``goodput`` and ``plot`` do (arguments in
metrics_cli.py).

Each handler turns the parsed options into configs, calls the library and says where the
outputs went. Options that do not make sense together raise ``OptionError``, which the command
line prints as one line with exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from manylora.analysis.compare import CompareConfig, compare_runs
from manylora.analysis.goodput import goodput_table
from manylora.analysis.metrics import breakdown, outcome_counts, summarize
from manylora.analysis.outputs import write_csv
from manylora.analysis.plot_kinds import render_plot
from manylora.analysis.report import format_value
from manylora.analysis.run_folder import read_run
from manylora.analysis.slo import SLO
from manylora.analysis.sweep_table import key_columns, read_sweep
from manylora.analysis.window import Window
from manylora.simulator.cost_model import cost_model_from_args


class OptionError(ValueError):
    """Command-line options that do not make sense together."""


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


def _show(table: pd.DataFrame, output: str | None) -> None:
    """The table on stdout and, with ``-o CSV``, in that file (named on stderr, so that
    stdout stays the table alone)."""
    print_table(table)
    if output:
        print(f"wrote {write_csv(table, output)}", file=sys.stderr)


def run_metrics(args: argparse.Namespace) -> int:
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
    _show(table, args.output)
    return 0


def run_compare(args: argparse.Namespace) -> int:
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


def run_goodput(args: argparse.Namespace) -> int:
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
    _show(table, args.output)
    return 0


def run_plot(args: argparse.Namespace) -> int:
    slo, window = _slo_window(args)
    paths = render_plot(args.kind, args.output, sweep=args.sweep, runs=args.runs,
                        metric=args.metric, where=args.where, slo=slo, window=window, x=args.x)
    for path in paths:
        print(path)
    return 0
