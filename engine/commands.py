"""What ``manylora replay``, ``profile`` and ``model make-tiny`` do (arguments in cli.py).

Each handler turns the parsed arguments into the library's configs (``EngineConfig``,
``ReplayConfig``, ``ProfilerConfig``, ``ControlConfig`` through ``policy_options``,
``TinyModelSpec``), calls the library and says where the output went. A value a config refuses
becomes an ``EngineCliError``, which the command line prints as one line with exit status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Callable

from manylora.engine.engine_config import EngineConfig
from manylora.engine.make_tiny import make_tiny
from manylora.engine.policy_options import policies_from_args
from manylora.engine.profiler import ProfilerConfig, profile_engine
from manylora.engine.replay import ReplayConfig, replay_trace
from manylora.engine.scheduler_config import ControlConfig, MemoryConfig
from manylora.engine.tiny_spec import TinyModelSpec
from manylora.simulator.fitted_cost_model import fit_profile
from manylora.simulator.profile_file import profile_from_dict, write_profile
from manylora.traces.atomic_io import atomic_folder

_TINY_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "adapters")


class EngineCliError(ValueError):
    """A command-line value the engine's, profiler's or make-tiny's configs refuse."""


def _config(build: Callable[[], Any]) -> Any:
    try:
        return build()
    except ValueError as exc:
        raise EngineCliError(str(exc)) from None


def _engine_config(args: argparse.Namespace, control: ControlConfig) -> EngineConfig:
    given = {} if getattr(args, "pool_memory", None) is None else {
        "pool_bytes": args.pool_memory}
    return _config(lambda: EngineConfig(
        device=args.device, dtype=args.dtype, lora_backend=args.lora_backend,
        attention_backend=args.attention_backend, threads=args.threads, control=control,
        **given))


def run_replay(args: argparse.Namespace) -> int:
    engine_config = _engine_config(args, policies_from_args(args))
    replay = _config(lambda: ReplayConfig(
        time_scale=args.time_scale, materialize_missing=args.materialize_missing_adapters,
        seed=args.seed, progress=args.progress))
    out = replay_trace(args.trace, args.model, args.adapters, args.output, engine_config, replay)
    print(f"wrote {out}")
    return 0


def _tiny_owned(name: str) -> bool:
    """Entries of a folder make-tiny wrote (so writing again may replace it)."""
    return name in _TINY_FILES or name.startswith("model-")


def run_make_tiny(args: argparse.Namespace) -> int:
    spec = _config(lambda: TinyModelSpec(
        arch=args.arch, layers=args.layers, hidden=args.hidden, intermediate=args.intermediate,
        heads=args.heads, kv_heads=args.kv_heads, vocab=args.vocab,
        tie_word_embeddings=args.tie_embeddings, dtype=args.dtype))
    target = Path(args.output)
    with atomic_folder(target, _tiny_owned, what="a make-tiny folder",
                       error=EngineCliError) as staged:
        _config(lambda: make_tiny(staged, spec, args.adapters, args.ranks, args.seed,
                                  name=target.name))
    print(f"wrote {target} ({args.adapters} adapters in {target / 'adapters'})")
    return 0


def _profiler_config(args: argparse.Namespace) -> ProfilerConfig:
    base = ProfilerConfig.quick(args.seed) if args.quick else ProfilerConfig(seed=args.seed)
    given = {k: v for k, v in (("warmup", args.warmup), ("repeats", args.repeats),
                               ("load_repeats", args.repeats)) if v is not None}
    return _config(lambda: dataclasses.replace(base, lora_targets=args.lora_targets, **given))


def run_profile(args: argparse.Namespace) -> int:
    model = Path(args.model)
    if not (model / "config.json").is_file():
        raise EngineCliError(f"{model}: not a checkpoint folder (no config.json)")
    adapters = args.adapters
    if adapters is None and (model / "adapters").is_dir():
        adapters = model / "adapters"
    control = _config(lambda: ControlConfig(
        memory=MemoryConfig(tokens_per_page=args.tokens_per_page)))
    engine, profiler = _engine_config(args, control), _profiler_config(args)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    measured = profile_engine(model, adapters, engine, profiler, progress=args.progress)
    profile = profile_from_dict(measured, str(output))
    fit = fit_profile(profile)
    write_profile(profile.with_fit(fit), output)
    cv = fit["cv"]["forms"][fit["form"]]
    host, disk = fit["adapter_loads"]["host"], fit["adapter_loads"]["disk"]
    print(f"wrote {output}: {len(profile.steps)} step shapes, {len(profile.adapter_loads)} "
          f"adapters timed")
    print(f"fitted form {fit['form']!r}: {fit['cv']['folds']}-fold cross-validated error "
          f"MAPE {cv['mape_pct']:.1f}%, P90 {cv['p90_ape_pct']:.1f}% "
          f"(other forms: " + ", ".join(
              f"{f} {e['mape_pct']:.1f}%" for f, e in fit["cv"]["forms"].items()
              if f != fit["form"]) + ")")
    print(f"adapter loads: host->pool {host['bytes_per_s'] / 1e9:.2f} GB/s + "
          f"{host['latency_s'] * 1e3:.2f} ms, disk->host {disk['bytes_per_s'] / 1e9:.2f} GB/s "
          f"+ {disk['latency_s'] * 1e3:.2f} ms")
    return 0
