"""``manylora validate`` and ``manylora demo`` on the command line: their arguments.

Argument definitions only (the configs' defaults come from light modules; the engine and the
simulator are not imported), so the command line starts fast. The handlers live in
analysis/experiment_commands.py, named as ``"module:function"`` strings that analysis/cli.py
resolves when a command runs, as it does ``USER_ERRORS`` (docs/internals.md, "The command
line").
"""
from __future__ import annotations

import argparse

from manylora.analysis.demo_config import DemoConfig
from manylora.analysis.validate_workload import MODEL_SPECS, ValidateConfig

_COMMANDS = "manylora.analysis.experiment_commands"
USER_ERRORS: tuple[str, ...] = ("manylora.analysis.validate:ValidationError",
                                "manylora.analysis.capacity:CapacityError")


def _levels(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected loads like 0.5,0.85,1.2, got {text!r}") \
            from None


def _add_engine_options(parser: argparse.ArgumentParser, threads: int | None,
                        threads_help: str) -> None:
    group = parser.add_argument_group("engine")
    group.add_argument("--device", default="cpu", help="torch device (default cpu)")
    group.add_argument("--dtype", help="model dtype, also of a random checkpoint it writes "
                       "(default: float32 on CPU, bfloat16 on a GPU)")
    group.add_argument("--threads", type=int, default=threads, metavar="N", help=threads_help)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``validate`` and ``demo`` to the ``manylora`` command."""
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
                        "run-to-run difference beside the simulator's; with 3 or more the "
                        "simulator is compared with the replay of median speed (default 1)")
    p.add_argument("--no-anchor", action="store_true",
                   help="price every simulation by the fitted model as profiled, without "
                        "speed anchors (a few fixed steps timed after profiling and around "
                        "each replay, whose ratio rescales the replay's simulation)")
    p.add_argument("--quick-profile", action="store_true",
                   help="profile a small grid (smoke runs; the fit is rougher)")
    p.add_argument("--seed", type=int, default=0, help="seed of traces and profile")
    _add_engine_options(p, 1, "torch CPU threads for profiling and replays (default 1: on a "
                        "small or shared CPU extra OpenMP threads spin and contend; 0 = torch's "
                        "choice)")
    p.set_defaults(handler=f"{_COMMANDS}:run_validate_command")

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
    p.set_defaults(handler=f"{_COMMANDS}:run_demo_command")

