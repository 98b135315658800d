"""``manylora replay`` and ``manylora model make-tiny``: the engine's commands.

The commands parse arguments into the library's configs (``EngineConfig``, ``ReplayConfig``,
``ControlConfig`` through ``policy_options``, ``TinyModelSpec``) and call the library. A bad
value or file reaches the user as one line and exit status 2 (``USER_ERRORS``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from manylora.engine.engine_config import EngineConfig
from manylora.engine.make_tiny import TinyModelSpec, make_tiny
from manylora.engine.model_config import CheckpointError
from manylora.engine.peft_loader import AdapterError
from manylora.engine.policy_options import (PolicyOptionError, add_policy_arguments,
                                            parse_size, policies_from_args)
from manylora.engine.pool_tensors import PoolBudgetError
from manylora.engine.replay import ReplayConfig, replay_trace
from manylora.traces.atomic_io import atomic_folder
from manylora.traces.errors import TraceError


class EngineCliError(ValueError):
    """A command-line value the engine's configs refuse."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    EngineCliError, CheckpointError, AdapterError, TraceError, PolicyOptionError,
    PoolBudgetError, OSError)
_TINY_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "adapters")


def _config(build: Callable[[], Any]) -> Any:
    try:
        return build()
    except ValueError as exc:
        raise EngineCliError(str(exc)) from None


def _ranks(text: str) -> list[int]:
    try:
        ranks = [int(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ranks like 8,16,32,64, got {text!r}") \
            from None
    if not ranks:
        raise argparse.ArgumentTypeError(f"expected ranks like 8,16,32,64, got {text!r}")
    return ranks


def _replay(args: argparse.Namespace) -> int:
    control = policies_from_args(args)
    engine_config = _config(lambda: EngineConfig(
        device=args.device, dtype=args.dtype, lora_backend=args.lora_backend,
        attention_backend=args.attention_backend, pool_bytes=args.pool_memory,
        threads=args.threads, control=control))
    replay = _config(lambda: ReplayConfig(
        time_scale=args.time_scale, materialize_missing=args.materialize_missing_adapters,
        seed=args.seed, progress=not args.quiet and sys.stderr.isatty()))
    out = replay_trace(args.trace, args.model, args.adapters, args.output, engine_config, replay)
    print(f"wrote {out}")
    return 0


def _tiny_owned(name: str) -> bool:
    """Entries of a folder make-tiny wrote (so writing again may replace it)."""
    return name in _TINY_FILES or name.startswith("model-")


def _make_tiny(args: argparse.Namespace) -> int:
    spec = _config(lambda: TinyModelSpec(
        arch=args.arch, layers=args.layers, hidden=args.hidden, intermediate=args.intermediate,
        heads=args.heads, kv_heads=args.kv_heads, vocab=args.vocab,
        tie_word_embeddings=args.tie_embeddings))
    target = Path(args.output)
    with atomic_folder(target, _tiny_owned, what="a make-tiny folder",
                       error=EngineCliError) as staged:
        _config(lambda: make_tiny(staged, spec, args.adapters, args.ranks, args.seed,
                                  name=target.name))
    print(f"wrote {target} ({args.adapters} adapters in {target / 'adapters'})")
    return 0


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
    engine = p.add_argument_group("engine")
    engine.add_argument("--device", default="cpu", help="torch device (default cpu)")
    engine.add_argument("--dtype", default="float32",
                        help="model and pool dtype, e.g. float32, bfloat16 (default float32)")
    engine.add_argument("--lora-backend", default="",
                        help="triton, torch or padded (default: triton on GPU, torch on CPU)")
    engine.add_argument("--attention-backend", default="",
                        help="triton or torch (default: triton on GPU, torch on CPU)")
    engine.add_argument("--pool-memory", type=parse_size, default=EngineConfig.pool_bytes,
                        metavar="SIZE", help="pool size when --pool-pages is not given "
                                             "(default 256M)")
    engine.add_argument("--threads", type=int, default=0, metavar="N",
                        help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of prompt token ids and materialised adapters (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_policy_arguments(p)
    p.set_defaults(func=_replay)


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
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_make_tiny)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``replay`` and ``model make-tiny`` to the ``manylora`` command."""
    _add_replay(subparsers)
    _add_model(subparsers)
