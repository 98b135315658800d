"""The `manylora` command: one subcommand group per package, assembled here.

Each package owns a ``cli`` module with ``register(subparsers)`` that adds its subcommands
(each sets ``func``) and a ``USER_ERRORS`` tuple: exception types that mean bad input. Those
are printed as one line and exit with status 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from manylora.analysis import commands as analysis_commands
from manylora.analysis import experiment_commands
from manylora.analysis import sweep_cli
from manylora.engine import cli as engine_cli
from manylora.engine import profile_cli
from manylora.simulator import cli as simulator_cli
from manylora.traces import cli as traces_cli

COMMAND_MODULES = (traces_cli, analysis_commands, experiment_commands, engine_cli, profile_cli,
                   simulator_cli, sweep_cli)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="manylora",
        description="Serve thousands of LoRA adapters on one base model, and simulate how to "
                    "schedule them.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    user_errors = tuple(e for module in COMMAND_MODULES for e in module.USER_ERRORS)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # The reader closed stdout (`manylora metrics RUN | head`): stop quietly. Point stdout
        # at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except user_errors as exc:
        print(f"manylora {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"manylora {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
