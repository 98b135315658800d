"""What ``manylora validate`` and ``manylora demo`` do (arguments in experiment_cli.py).

Both run the engine and the simulator end to end (analysis/validate.py, analysis/demo.py);
the handlers parse options into their configs, print progress to stderr and the result tables
to stdout.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import torch

from manylora.analysis.commands import OptionError, print_table
from manylora.analysis.demo import run_demo
from manylora.analysis.demo_config import DemoConfig
from manylora.analysis.validate import run_validation
from manylora.analysis.validate_workload import VALIDATION_GRID, ValidateConfig
from manylora.engine.engine_config import EngineConfig
from manylora.engine.profile_grid import GridConfig
from manylora.engine.profiler import ProfilerConfig

GPU_DTYPE = "bfloat16"   # the serving dtype on GPUs; halves a 7B-sized random checkpoint


def _engine(args: argparse.Namespace) -> EngineConfig:
    try:
        dtype = args.dtype or ("float32" if torch.device(args.device).type == "cpu"
                               else GPU_DTYPE)
        return EngineConfig(device=args.device, dtype=dtype, threads=args.threads or 0)
    except (ValueError, RuntimeError) as exc:
        raise OptionError(f"--device {args.device!r}: {exc}" if isinstance(exc, RuntimeError)
                          else str(exc)) from exc


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_validate_command(args: argparse.Namespace) -> int:
    try:
        config = ValidateConfig(levels=args.levels, min_requests=args.requests,
                                minutes=args.minutes, num_adapters=args.adapters,
                                tolerance=args.tolerance, engine_repeats=args.engine_repeats,
                                seed=args.seed)
        if args.no_anchor:
            config = replace(config, anchor=None)
        profiler = ProfilerConfig(grid=GridConfig.quick() if args.quick_profile
                                  else VALIDATION_GRID, seed=args.seed)
    except ValueError as exc:
        raise OptionError(str(exc)) from exc
    result = run_validation(args.output, config, model_dir=args.model,
                            model_shape=args.model_shape, engine=_engine(args),
                            profiler=profiler, log=_say)
    table = result.summary.assign(rel_error=result.summary["rel_error"] * 100,
                                  engine_noise=result.summary["engine_noise"] * 100)
    print_table(table.rename(columns={"rel_error": "rel_error_%",
                                      "engine_noise": "engine_noise_%"}))
    verdict = "within" if result.passed else "NOT within"
    print(f"simulator {verdict} {config.tolerance:.0%} of the engine at every load level; "
          f"report: {result.report}")
    return 0


def run_demo_command(args: argparse.Namespace) -> int:
    try:
        config = replace(DemoConfig.quick() if args.quick else DemoConfig(),
                         num_adapters=args.adapters, seed=args.seed)
    except ValueError as exc:
        raise OptionError(str(exc)) from exc
    result = run_demo(args.output, config, _engine(args), args.profile, log=_say)
    print_table(result.goodput)
    print(f"report: {result.report}")
    print(f"figures: {result.report.parent / 'figures'}")
    print(f"simulator vs engine: {result.report.parent / 'validation' / 'compare' / 'report.md'}")
    return 0
