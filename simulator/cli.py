"""``manylora simulate`` on the command line: its arguments.

Argument definitions only (no simpy, scipy or cost models are imported), so the command line
starts fast; the handler is ``simulator/commands.py:run_simulate``, named as a
``"module:function"`` string that analysis/cli.py resolves when the command runs, as it does
``USER_ERRORS`` (docs/internals.md, "The command line").
"""
from __future__ import annotations

import argparse

from manylora.engine.policy_options import add_policy_arguments
from manylora.simulator.router import ROUTERS

USER_ERRORS: tuple[str, ...] = (
    "manylora.simulator.commands:SimulateCliError", "manylora.traces.errors:TraceError",
    "manylora.simulator.cost_base:CostModelError",
    "manylora.engine.policy_options:PolicyOptionError",
    "manylora.simulator.deployment:DeploymentError",
    "manylora.engine.run_folder:RunWriteError")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``simulate`` to the ``manylora`` command."""
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
    p.set_defaults(handler="manylora.simulator.commands:run_simulate")
