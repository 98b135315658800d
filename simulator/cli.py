"""``manylora simulate``: run a trace through the simulator and write a run folder.

The command parses arguments into the library's configs (the control plane's shared policy
options, ``SimulationConfig``, the cost model chosen by ``cost_model_from_args``) and calls
``simulate``. Bad input reaches the user as one line and exit status 2 (``USER_ERRORS``).
"""
from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from manylora.engine.policy_options import (PolicyOptionError, add_policy_arguments,
                                            policies_from_args)
from manylora.engine.run_folder import RunWriteError, write_run_folder
from manylora.simulator.cost_base import CostModelError
from manylora.simulator.cost_model import cost_model_from_args
from manylora.simulator.deployment import DeploymentError, resolve_deployment
from manylora.simulator.router import ROUTERS
from manylora.simulator.simulation import SimulationConfig, simulate, simulation_meta
from manylora.traces.errors import TraceError
from manylora.traces.trace_io import read_trace


class SimulateCliError(ValueError):
    """A command-line value the simulator's configs refuse."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    SimulateCliError, TraceError, CostModelError, PolicyOptionError, DeploymentError,
    RunWriteError)


def _simulate(args: argparse.Namespace) -> int:
    control = policies_from_args(args)
    try:
        config = SimulationConfig(replicas=args.replicas, router=args.router,
                                  jumps=not args.no_jumps, seed=args.seed)
    except ValueError as exc:
        raise SimulateCliError(str(exc)) from None
    trace = read_trace(args.trace)
    cost_model = cost_model_from_args(args.profile, args.hardware, args.model_shape)
    deployment = resolve_deployment(args.profile, args.model_shape, args.pool_pages,
                                    args.tokens_per_page, args.hardware)
    control = deployment.apply(control)
    duration = float(trace.column("arrival_s")[-1]) if trace.num_requests else 0.0
    with tqdm(total=round(duration, 3), unit="s", desc="simulate",
              disable=args.quiet or not sys.stderr.isatty(), leave=False,
              bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s simulated [{elapsed}]") as bar:
        result = simulate(trace, cost_model, control, deployment.shape, config=config,
                          progress=lambda t: bar.update(round(t, 3) - bar.n))
    out = write_run_folder(args.output, result.requests, result.steps,
                           simulation_meta(trace, cost_model, control, result, config))
    print(f"wrote {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate", help="simulate a trace over the engine's scheduler and a cost model",
        description="Run TRACE_DIR through the engine's own scheduler with step times from a "
                    "cost model (the shipped profile unless --profile or --hardware with "
                    "--model-shape is given) and write the run folder RUN_DIR.")
    p.add_argument("trace", metavar="TRACE_DIR", help="trace folder")
    p.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="run folder to write")
    model = p.add_argument_group("cost model")
    model.add_argument("--profile", metavar="P", help="profile JSON (manylora profile)")
    model.add_argument("--hardware", metavar="NAME", help="roofline hardware preset")
    model.add_argument("--model-shape", metavar="NAME", help="model shape for the roofline")
    sim = p.add_argument_group("simulation")
    sim.add_argument("--replicas", type=int, default=1, metavar="N",
                     help="engine replicas behind the router (default 1)")
    sim.add_argument("--router", choices=tuple(ROUTERS), default="round-robin",
                     help="how arrivals are spread over replicas (default round-robin)")
    sim.add_argument("--seed", type=int, default=0, metavar="K",
                     help="seed recorded in meta.json (default 0)")
    sim.add_argument("--no-jumps", action="store_true",
                     help="step every decode step instead of costing quiet runs in blocks "
                          "(same output, slower)")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    add_policy_arguments(p)
    p.set_defaults(func=_simulate)
