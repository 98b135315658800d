"""The engine's commands on the ``manylora`` command line: ``replay``, ``profile`` and
``model make-tiny``.

Argument definitions only: this module imports no torch, so ``manylora --help`` and the other
packages' commands start fast. Each subcommand names its handler in engine/commands.py as a
``"module:function"`` string, and ``USER_ERRORS`` names the exceptions that mean bad input;
analysis/cli.py resolves both when the command runs (docs/internals.md, "The command line").
"""
from __future__ import annotations

import argparse

from manylora.engine.model_shape import canonical_target
from manylora.engine.policy_options import add_policy_arguments, parse_size
from manylora.engine.scheduler_config import MemoryConfig
from manylora.engine.tiny_spec import TINY_DTYPES, TinyModelSpec

_COMMANDS = "manylora.engine.commands"
USER_ERRORS: tuple[str, ...] = (
    f"{_COMMANDS}:EngineCliError", "manylora.engine.model_config:CheckpointError",
    "manylora.engine.peft_loader:AdapterError", "manylora.traces.errors:TraceError",
    "manylora.engine.policy_options:PolicyOptionError",
    "manylora.engine.pool_tensors:PoolBudgetError", "builtins:OSError")


def _ranks(text: str) -> list[int]:
    try:
        ranks = [int(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ranks like 8,16,32,64, got {text!r}") \
            from None
    if not ranks:
        raise argparse.ArgumentTypeError(f"expected ranks like 8,16,32,64, got {text!r}")
    return ranks


def _targets(text: str) -> tuple[str, ...]:
    try:
        return tuple(canonical_target(t.strip()) for t in text.split(",") if t.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_engine_options(parser: argparse.ArgumentParser, title: str) -> None:
    """How the engine runs (EngineConfig), shared by replay and profile so that a profile is
    measured on the engine exactly as it will serve."""
    engine = parser.add_argument_group(title)
    engine.add_argument("--device", default="cpu", help="torch device (default cpu)")
    engine.add_argument("--dtype", default="float32",
                        help="model and pool dtype, e.g. float32, bfloat16 (default float32)")
    engine.add_argument("--lora-backend", default="",
                        help="triton, torch or padded (default: triton on GPU, torch on CPU)")
    engine.add_argument("--attention-backend", default="",
                        help="triton or torch (default: triton on GPU, torch on CPU)")
    engine.add_argument("--threads", type=int, default=0, metavar="N",
                        help="torch CPU threads (default 0: torch's choice)")


def _add_replay(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "replay", help="replay a trace on the real engine",
        description="Feed a trace's requests to the engine at their arrival times (scaled), "
                    "with synthetic prompts of the trace's lengths, and write a run folder.")
    p.add_argument("trace", metavar="TRACE_DIR", help="trace folder")
    p.add_argument("--model", required=True, metavar="DIR",
                   help="HF checkpoint folder (config.json + safetensors)")
    p.add_argument("--adapters", metavar="DIR",
                   help="folder of PEFT adapters named by adapter id (DIR/<adapter_id>); the "
                        "trace's path column takes precedence")
    p.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="run folder")
    p.add_argument("--time-scale", type=float, default=1.0, metavar="X",
                   help="trace seconds per wall second: 10 replays ten times faster "
                        "(default 1)")
    p.add_argument("--materialize-missing-adapters", action="store_true",
                   help="give adapters with no folder random weights of the trace's rank, "
                        "alpha and targets (else their requests are rejected)")
    _add_engine_options(p, "engine")
    p.add_argument("--pool-memory", type=parse_size, metavar="SIZE",
                   help="pool size when --pool-pages is not given (default 256M)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of prompt token ids and materialised adapters (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_policy_arguments(p)
    p.set_defaults(handler=f"{_COMMANDS}:run_replay")


def _add_profile(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "profile", help="time the engine over batch shapes and fit the simulator's cost model",
        description="Time the real engine's steps over a grid of batch shapes (prefill "
                    "requests x lengths, decode batch x context, distinct adapters x ranks, "
                    "random mixes) and adapter loads (disk -> host, host -> pool), fit the "
                    "cost model and report its cross-validated error. `manylora simulate "
                    "--profile PROFILE` uses the result.")
    p.add_argument("--model", required=True, metavar="DIR",
                   help="HF checkpoint folder (config.json + safetensors)")
    p.add_argument("--adapters", metavar="DIR",
                   help="folder of PEFT adapters named by id (DIR/<id>) whose loads are timed "
                        "(default MODEL/adapters if present, else random ones)")
    p.add_argument("-o", "--output", required=True, metavar="PROFILE.json",
                   help="profile file to write")
    p.add_argument("--quick", action="store_true",
                   help="a small grid and 2 repeats (seconds; for tests and smoke runs)")
    p.add_argument("--repeats", type=int, metavar="N",
                   help="timed passes over the grid and loads per adapter (default 5; quick 2)")
    p.add_argument("--warmup", type=int, metavar="N",
                   help="untimed passes over the grid first (default 1)")
    p.add_argument("--lora-targets", type=_targets, default=(), metavar="T,T",
                   help="targets of the grid's adapters, e.g. q,k,v,o (default: the adapters' "
                        "target set nearest their mean LoRA width)")
    p.add_argument("--seed", type=int, default=0, help="grid and token seed (default 0)")
    _add_engine_options(p, "engine (profile the engine as it will run)")
    p.add_argument("--tokens-per-page", type=int, default=MemoryConfig.tokens_per_page,
                   metavar="N", help="KV tokens per pool page (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=f"{_COMMANDS}:run_profile")


def _add_model(subparsers: argparse._SubParsersAction) -> None:
    model = subparsers.add_parser("model", help="model utilities",
                                  description="Model checkpoints for tests and demos.")
    commands = model.add_subparsers(dest="model_command", required=True, metavar="SUBCOMMAND")
    p = commands.add_parser(
        "make-tiny", help="write a small random checkpoint and PEFT adapters",
        description="Write a random Llama-family checkpoint (config.json + model.safetensors) "
                    "and N PEFT adapters in DIR/adapters/<id>, in the real on-disk formats.")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write")
    p.add_argument("--adapters", type=int, default=8, metavar="N", help="adapters (default 8)")
    p.add_argument("--ranks", type=_ranks, default=[8, 16, 32, 64],
                   help="ranks cycled over adapters (default 8,16,32,64)")
    p.add_argument("--arch", choices=("llama", "mistral", "qwen2"), default="llama",
                   help="architecture (default llama)")
    defaults = TinyModelSpec()
    for flag, field in (("layers", "layers"), ("hidden", "hidden"),
                        ("intermediate", "intermediate"), ("heads", "heads"),
                        ("kv-heads", "kv_heads"), ("vocab", "vocab")):
        p.add_argument(f"--{flag}", type=int, default=getattr(defaults, field), metavar="N",
                       help=f"default {getattr(defaults, field)}")
    p.add_argument("--tie-embeddings", action="store_true", help="share embedding and LM head")
    p.add_argument("--dtype", choices=TINY_DTYPES, default=defaults.dtype,
                   help=f"dtype of the stored weights, model and adapters (default "
                        f"{defaults.dtype}, what the oracle tests compare in; bfloat16 halves a "
                        "7B-sized checkpoint to 13 GB, written a shard at a time)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(handler=f"{_COMMANDS}:run_make_tiny")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``replay``, ``profile`` and ``model make-tiny`` to the ``manylora`` command."""
    _add_replay(subparsers)
    _add_profile(subparsers)
    _add_model(subparsers)
