"""``manylora profile``: measure the engine on this machine and fit the simulator's cost model.

Runs the profiler (profiler.py) with the engine's options, fits every cost-model form to the
measurements (simulator/fitted_cost_model.py), keeps the best by cross-validated error and
writes the profile with its fit atomically. Prints where it went and the fit's
cross-validated error. Bad input reaches the user as one line and exit status 2
(``USER_ERRORS``).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from manylora.engine.engine_config import EngineConfig
from manylora.engine.model_config import CheckpointError
from manylora.engine.model_shape import canonical_target
from manylora.engine.peft_loader import AdapterError
from manylora.engine.profiler import ProfilerConfig, profile_engine
from manylora.engine.scheduler_config import ControlConfig, MemoryConfig
from manylora.simulator.fitted_cost_model import fit_profile
from manylora.simulator.profile_file import profile_from_dict, write_profile


class ProfileCliError(ValueError):
    """A command-line value the profiler's or engine's configs refuse."""


USER_ERRORS: tuple[type[BaseException], ...] = (ProfileCliError, CheckpointError, AdapterError,
                                                OSError)


def _targets(text: str) -> tuple[str, ...]:
    try:
        return tuple(canonical_target(t.strip()) for t in text.split(",") if t.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _configs(args: argparse.Namespace) -> tuple[EngineConfig, ProfilerConfig]:
    try:
        engine = EngineConfig(
            device=args.device, dtype=args.dtype, lora_backend=args.lora_backend,
            attention_backend=args.attention_backend, threads=args.threads,
            control=ControlConfig(memory=MemoryConfig(tokens_per_page=args.tokens_per_page)))
        base = ProfilerConfig.quick(args.seed) if args.quick else ProfilerConfig(seed=args.seed)
        given = {k: v for k, v in (("warmup", args.warmup), ("repeats", args.repeats),
                                   ("load_repeats", args.repeats)) if v is not None}
        profiler = dataclasses.replace(base, lora_targets=args.lora_targets, **given)
    except ValueError as exc:
        raise ProfileCliError(str(exc)) from None
    return engine, profiler


def _run(args: argparse.Namespace) -> int:
    model = Path(args.model)
    if not (model / "config.json").is_file():
        raise ProfileCliError(f"{model}: not a checkpoint folder (no config.json)")
    adapters = args.adapters
    if adapters is None and (model / "adapters").is_dir():
        adapters = model / "adapters"
    engine, profiler = _configs(args)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    measured = profile_engine(model, adapters, engine, profiler,
                              progress=not args.quiet and sys.stderr.isatty())
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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``profile`` to the ``manylora`` command."""
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
    engine = p.add_argument_group("engine (profile the engine as it will run)")
    engine.add_argument("--device", default="cpu", help="torch device (default cpu)")
    engine.add_argument("--dtype", default="float32",
                        help="model and pool dtype, e.g. float32, bfloat16 (default float32)")
    engine.add_argument("--lora-backend", default="",
                        help="triton, torch or padded (default: triton on GPU, torch on CPU)")
    engine.add_argument("--attention-backend", default="",
                        help="triton or torch (default: triton on GPU, torch on CPU)")
    engine.add_argument("--tokens-per-page", type=int, default=MemoryConfig.tokens_per_page,
                        metavar="N", help="KV tokens per pool page (default 1)")
    engine.add_argument("--threads", type=int, default=0, metavar="N",
                        help="torch CPU threads, as `manylora replay --threads` (default 0: "
                             "torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
