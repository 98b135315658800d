"""What ``manylora simulate`` does (arguments in cli.py): run a trace through the simulator
and write a run folder.

The handler parses arguments into the library's configs (the control plane's shared policy
options, ``SimulationConfig``, the cost model chosen by ``cost_model_from_args``) and calls
``simulate``. A value a config refuses becomes a ``SimulateCliError``, printed as one line
with exit status 2.
"""
from __future__ import annotations

import argparse

from tqdm import tqdm

from manylora.engine.policy_options import policies_from_args
from manylora.engine.run_folder import write_run_folder
from manylora.simulator.cost_model import cost_model_from_args
from manylora.simulator.deployment import resolve_deployment
from manylora.simulator.simulation import SimulationConfig, simulate, simulation_meta
from manylora.traces.trace_io import read_trace


class SimulateCliError(ValueError):
    """A command-line value the simulator's configs refuse."""


def run_simulate(args: argparse.Namespace) -> int:
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
              disable=not args.progress, leave=False,
              bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s simulated [{elapsed}]") as bar:
        result = simulate(trace, cost_model, control, deployment.shape, config=config,
                          progress=lambda t: bar.update(round(t, 3) - bar.n))
    out = write_run_folder(args.output, result.requests, result.steps,
                           simulation_meta(trace, cost_model, control, result, config))
    print(f"wrote {out}")
    return 0
