"""The `manylora` command: one subcommand group per package, assembled here.

Start-up stays fast (``manylora --help`` and ``manylora trace describe`` do not pay for torch,
scipy, matplotlib or simpy) through an explicit lazy dispatch:

- Each package owns a light ``cli`` module (``COMMAND_MODULES``): ``register(subparsers)``
  adds its subcommands with argparse definitions only, and each subcommand names its handler
  as a ``"module:function"`` string (``set_defaults(handler="manylora.engine.commands:
  run_replay")``). :func:`main` imports the handler's module only when that subcommand runs.
- ``USER_ERRORS`` in each cli module names, as ``"module:Class"`` strings, the exception
  types that mean bad input. Those are printed as one line and exit with status 2; anything
  else is a bug and keeps its traceback. An exception can only be an instance of a class
  whose module has been imported, so the names are looked up among the loaded modules and
  resolving them never imports anything.
- ``--quiet`` and whether stderr is a terminal become one ``args.progress`` flag here, so
  handlers do not each decide when to draw a progress bar.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, Callable, Iterable, Sequence

from manylora.analysis import experiment_cli, metrics_cli, sweep_cli
from manylora.engine import cli as engine_cli
from manylora.simulator import cli as simulator_cli
from manylora.traces import cli as traces_cli

COMMAND_MODULES = (traces_cli, metrics_cli, experiment_cli, engine_cli, simulator_cli,
                   sweep_cli)


def _split(ref: str) -> tuple[str, str]:
    module, sep, name = ref.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"expected 'module:name', got {ref!r}")
    return module, name


def resolve(ref: str) -> Any:
    """The object a ``"module:name"`` reference names, importing its module."""
    module, name = _split(ref)
    return getattr(importlib.import_module(module), name)


def loaded_types(refs: Iterable[str]) -> tuple[type[BaseException], ...]:
    """The exception classes among ``refs`` whose modules are already imported (the only ones
    an exception raised so far can be an instance of)."""
    found = []
    for ref in refs:
        module, name = _split(ref)
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return tuple(found)


def user_error_refs() -> tuple[str, ...]:
    return tuple(ref for module in COMMAND_MODULES for ref in module.USER_ERRORS)


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
    args = build_parser().parse_args(argv)
    args.progress = not getattr(args, "quiet", False) and sys.stderr.isatty()
    handler: Callable[[argparse.Namespace], int | None] = resolve(args.handler)
    try:
        return int(handler(args) or 0)
    except BrokenPipeError:
        # The reader closed stdout (`manylora metrics RUN | head`): stop quietly. Point stdout
        # at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"manylora {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not isinstance(exc, loaded_types(user_error_refs())):
            raise
        print(f"manylora {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
