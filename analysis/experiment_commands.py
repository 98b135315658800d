"""The experiment subcommands: ``manylora validate`` and ``manylora demo``.

Both run the engine and the simulator end to end (analysis/validate.py, analysis/demo.py);
this module parses options into their configs, prints progress to stderr and the result
tables to stdout. ``USER_ERRORS`` lists the exceptions that mean bad input.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from manylora.analysis.capacity import CapacityError
from manylora.analysis.commands import OptionError, print_table
from manylora.analysis.demo import DemoConfig, run_demo
from manylora.analysis.validate import ValidationError, run_validation
from manylora.analysis.validate_workload import MODEL_SPECS, VALIDATION_GRID, ValidateConfig
from manylora.engine.engine_config import EngineConfig
from manylora.engine.profile_grid import GridConfig
from manylora.engine.profiler import ProfilerConfig

USER_ERRORS: tuple[type[Exception], ...] = (ValidationError, CapacityError)


def _levels(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected loads like 0.5,0.85,1.2, got {text!r}") \
            from None


def _engine(args: argparse.Namespace) -> EngineConfig:
    try:
        return EngineConfig(device=args.device, dtype=args.dtype, threads=args.threads or 0)
    except ValueError as exc:
        raise OptionError(str(exc)) from exc


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run_validate(args: argparse.Namespace) -> int:
    try:
        config = ValidateConfig(levels=args.levels, min_requests=args.requests,
                                minutes=args.minutes, num_adapters=args.adapters,
                                tolerance=args.tolerance, engine_repeats=args.engine_repeats,
                                seed=args.seed)
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


def _run_demo(args: argparse.Namespace) -> int:
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


def _add_engine_options(parser: argparse.ArgumentParser, threads: int | None,
                        threads_help: str) -> None:
    group = parser.add_argument_group("engine")
    group.add_argument("--device", default="cpu", help="torch device (default cpu)")
    group.add_argument("--dtype", default="float32", help="model dtype (default float32)")
    group.add_argument("--threads", type=int, default=threads, metavar="N", help=threads_help)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "validate", help="profile the engine, fit the cost model, and compare simulation with "
        "engine replays at 50/85/120%% of capacity",
        description="Validate the simulator against the engine on this machine: profile, fit, "
                    "measure capacity, replay and simulate one trace per load level, compare.")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--model", metavar="DIR", help="HF checkpoint folder to validate with")
    model.add_argument("--model-shape", metavar="NAME", choices=tuple(MODEL_SPECS),
                       help="write a random checkpoint of this shape (default: tiny)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="validation folder")
    p.add_argument("--minutes", type=float, default=ValidateConfig.minutes, metavar="M",
                   help="engine replay budget; sets requests per level, never below "
                        "--requests (default %(default)s)")
    p.add_argument("--requests", type=int, default=ValidateConfig.min_requests, metavar="N",
                   help="requests per load level, at least (default %(default)s)")
    p.add_argument("--adapters", type=int, default=ValidateConfig.num_adapters, metavar="N",
                   help="adapters in each trace's catalog (default %(default)s)")
    p.add_argument("--levels", type=_levels, default=ValidateConfig.levels, metavar="L,L",
                   help="offered loads as shares of capacity (default 0.5,0.85,1.2)")
    p.add_argument("--tolerance", type=float, default=ValidateConfig.tolerance,
                   help="relative error allowed (default %(default)s)")
    p.add_argument("--engine-repeats", type=int, default=1, metavar="N",
                   help="replay each trace N times; with 2 the report shows the engine's own "
                        "run-to-run difference beside the simulator's (default 1)")
    p.add_argument("--quick-profile", action="store_true",
                   help="profile a small grid (smoke runs; the fit is rougher)")
    p.add_argument("--seed", type=int, default=0, help="seed of traces and profile")
    _add_engine_options(p, 1, "torch CPU threads for profiling and replays (default 1: on a "
                        "small or shared CPU extra OpenMP threads spin and contend; 0 = torch's "
                        "choice)")
    p.set_defaults(func=_run_validate)

    p = subparsers.add_parser(
        "demo", help="the main job on defaults: simulate policies over 1,000 adapters, SLO "
        "plots, and one trace replayed on the real engine vs simulated",
        description="Make a tiny model, generate Gamma traces over many adapters, simulate "
                    "several admission policies across request rates with the shipped "
                    "profile, replay one trace on the engine, and write the SLO plots and the "
                    "validation report.")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="demo folder")
    p.add_argument("--quick", action="store_true",
                   help="a reduced demo (seconds): fewer points, shorter traces")
    p.add_argument("--adapters", type=int, default=DemoConfig.num_adapters, metavar="N",
                   help="adapters in the traces (default %(default)s)")
    p.add_argument("--profile", metavar="P",
                   help="profile to simulate with (default: the shipped CPU profile)")
    p.add_argument("--seed", type=int, default=0, help="trace seed (default 0)")
    _add_engine_options(p, None, "torch CPU threads of the engine replay (default: as many as "
                        "the profile was measured with, so that the two compare)")
    p.set_defaults(func=_run_demo)

