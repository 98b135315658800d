"""The `manylora` command's lazy dispatch: the parsers import nothing heavy, every handler and
user-error name resolves, and a light command runs without loading torch and friends."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from manylora.analysis import cli
from manylora.analysis.plot_kinds import PLOT_KINDS
from manylora.analysis.plot_specs import FIGURES

HEAVY = ("torch", "triton", "scipy", "matplotlib", "simpy", "safetensors")
_LOADED = "import sys; print(sorted({m.split('.')[0] for m in sys.modules} & set(%r)))" % (HEAVY,)


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def _handlers(parser: argparse.ArgumentParser, path: str = "manylora") -> dict[str, str]:
    """Every leaf subcommand's handler reference, by command path."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_handlers(sub, f"{path} {name}"))
    if not found and path != "manylora":
        found[path] = parser.get_default("handler")
    return found


def test_importing_the_command_loads_no_heavy_package():
    result = _fresh("import manylora.analysis.cli as c; c.build_parser(); "
                    "c.loaded_types(c.user_error_refs()); " + _LOADED)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_light_command_runs_without_heavy_packages(tmp_path):
    code = ("from manylora.analysis.cli import main; "
            f"assert main(['trace', 'generate', '-o', {str(tmp_path / 't')!r}, "
            "'--num-requests', '20', '--quiet']) == 0; "
            f"assert main(['trace', 'describe', {str(tmp_path / 't')!r}]) == 0; "
            f"assert main(['trace', 'describe', {str(tmp_path / 'missing')!r}]) == 2; " + _LOADED)
    result = _fresh(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "missing: no such trace folder" in result.stderr and "Traceback" not in result.stderr


def test_every_subcommand_names_a_handler_that_resolves():
    handlers = _handlers(cli.build_parser())
    assert {"manylora trace describe", "manylora replay", "manylora model make-tiny",
            "manylora profile", "manylora simulate", "manylora sweep", "manylora plot",
            "manylora validate", "manylora demo"} <= set(handlers)
    for command, ref in handlers.items():
        assert isinstance(ref, str), command
        assert callable(cli.resolve(ref)), command


def test_every_user_error_names_an_exception_class_of_that_module():
    for ref in cli.user_error_refs():
        module, _, name = ref.partition(":")
        cls = cli.resolve(ref)
        assert isinstance(cls, type) and issubclass(cls, Exception), ref
        # loaded_types looks the class up by this module: it must be where the class lives
        assert cls.__module__ == module, ref


def test_loaded_types_skips_modules_not_imported_and_bad_references_fail():
    assert cli.loaded_types(["builtins:OSError", "manylora.not_a_module:Nothing"]) == (OSError,)
    with pytest.raises(ValueError, match="module:name"):
        cli.resolve("manylora.analysis.cli")


def test_the_command_line_offers_exactly_the_figures_plot_can_draw():
    assert FIGURES == tuple(PLOT_KINDS)
