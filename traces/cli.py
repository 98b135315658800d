"""``manylora trace``: generate, import-azure and describe workload traces.

The commands only parse arguments into the library's configs (`TraceConfig`,
`AzureImportConfig`) and print; every model is picked by name from a builder table keyed like
the library's registries. Range checks live in the configs, whose `TraceConfigError` (like a
bad file's `TraceError`) reaches the user as one line with exit status 2.

The traces package is light (numpy and pandas, no torch), so the handlers live here too; as
for every package, each subcommand names its handler as a ``"module:function"`` string and
``USER_ERRORS`` names exception classes likewise (docs/internals.md, "The command line").
"""
from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from manylora.traces.arrivals import (ArrivalProcess, BurstArrivals, GammaArrivals,
                                      PoissonArrivals, ScheduleArrivals)
from manylora.traces.azure_source import SHIPPED_SOURCES
from manylora.traces.catalog import (RANK_RULES, AlphaRule, CatalogConfig, FixedAlpha,
                                     MixedRanks, PerRankAlpha, RankRule)
from manylora.traces.describe import describe, format_description
from manylora.traces.errors import TraceConfigError
from manylora.traces.generate import TraceConfig, generate_trace
from manylora.traces.import_azure import AzureImportConfig, import_azure
from manylora.traces.lengths import (LengthModel, LognormalLengths, ResampledLengths,
                                     UniformLengths)
from manylora.traces.popularity import (Popularity, SLoRAPopularity, UniformPopularity,
                                        ZipfPopularity)
from manylora.traces.trace_io import read_trace, write_trace

USER_ERRORS: tuple[str, ...] = ("manylora.traces.errors:TraceError",
                               "manylora.traces.errors:TraceConfigError", "builtins:OSError")
DEFAULT_DURATION_S = 300.0


def _given(**kwargs: Any) -> dict[str, Any]:
    """Only the options the user gave, so the configs' own defaults fill the rest."""
    return {k: v for k, v in kwargs.items() if v is not None}


def _float(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise TraceConfigError(f"{what}: {text!r} is not a number") from None


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise TraceConfigError(f"{what}: {text!r} is not a whole number") from None


def _pairs(text: str, what: str) -> list[tuple[str, str]]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items or any(item.count(":") != 1 for item in items):
        raise TraceConfigError(f"{what}: expected A:B,C:D,..., got {text!r}")
    return [tuple(item.split(":")) for item in items]  # type: ignore[misc]


def parse_schedule(text: str) -> tuple[tuple[float, float], ...]:
    """``"0:2,60:8"`` -> ``((0.0, 2.0), (60.0, 8.0))``: rate 2/s from 0 s, 8/s from 60 s."""
    return tuple((_float(s, "--rate-schedule"), _float(r, "--rate-schedule"))
                 for s, r in _pairs(text, "--rate-schedule"))


def parse_ranks(text: str, mode: str) -> RankRule:
    """``"8,16,32,64"`` (cycled or drawn, by ``mode``) or ``"8:0.4,16:0.6"`` (weighted mix)."""
    if ":" in text:
        pairs = _pairs(text, "--ranks")
        return MixedRanks(tuple(_int(r, "--ranks") for r, _ in pairs),
                          tuple(_float(w, "--ranks") for _, w in pairs))
    ranks = tuple(_int(r.strip(), "--ranks") for r in text.split(",") if r.strip())
    return RANK_RULES.get(mode)(ranks)  # type: ignore[call-arg]


def parse_lora_alpha(text: str) -> AlphaRule:
    """``"16"``: lora_alpha 16 for every adapter; ``"2x"``: 2 x rank."""
    if text.endswith("x"):
        return PerRankAlpha(_float(text[:-1], "--lora-alpha"))
    return FixedAlpha(_float(text, "--lora-alpha"))


ARRIVAL_BUILDERS: dict[str, Callable[[argparse.Namespace], ArrivalProcess]] = {
    "poisson": lambda a: PoissonArrivals(a.rate),
    "gamma": lambda a: GammaArrivals(a.rate, a.cv),
    "schedule": lambda a: ScheduleArrivals(parse_schedule(a.rate_schedule), a.cv),
    "bursts": lambda a: BurstArrivals(a.burst[0], a.burst[1], a.rate, a.off_rate, a.cv),
}
POPULARITY_BUILDERS: dict[str, Callable[[argparse.Namespace], Popularity]] = {
    "slora": lambda a: SLoRAPopularity(a.alpha),
    "zipf": lambda a: ZipfPopularity(a.alpha),
    "uniform": lambda a: UniformPopularity(),
}
LENGTH_BUILDERS: dict[str, Callable[[argparse.Namespace], LengthModel]] = {
    "uniform": lambda a: UniformLengths(**_given(
        input_range=_range(a.input_range), output_range=_range(a.output_range))),
    "lognormal": lambda a: LognormalLengths(**_given(
        prompt_median=a.prompt_lognormal[0], prompt_sigma=a.prompt_lognormal[1],
        output_median=a.output_lognormal[0], output_sigma=a.output_lognormal[1],
        input_range=_range(a.input_range), output_range=_range(a.output_range))),
    "resample": lambda a: ResampledLengths(a.length_source, _range(a.input_range),
                                           _range(a.output_range)),
}


def _range(pair: list[int] | None) -> tuple[int, int] | None:
    return None if pair is None else (pair[0], pair[1])


def _catalog(args: argparse.Namespace) -> CatalogConfig:
    return CatalogConfig(ranks=parse_ranks(args.ranks, args.rank_mode),
                         alpha=parse_lora_alpha(args.lora_alpha), targets=args.targets)


def _need(args: argparse.Namespace, option: str, attribute: str, arrivals: str) -> None:
    if getattr(args, attribute) is None:
        raise TraceConfigError(f"--arrivals {arrivals} needs {option}")


def run_generate(args: argparse.Namespace) -> int:
    requirements = {"schedule": ("--rate-schedule", "rate_schedule"),
                    "bursts": ("--burst", "burst")}
    if args.arrivals in requirements:
        _need(args, *requirements[args.arrivals], args.arrivals)
    duration = args.duration
    if duration is None and args.num_requests is None:
        duration = DEFAULT_DURATION_S
    config = TraceConfig(
        num_adapters=args.num_adapters, arrivals=ARRIVAL_BUILDERS[args.arrivals](args),
        popularity=POPULARITY_BUILDERS[args.popularity](args),
        lengths=LENGTH_BUILDERS[args.lengths](args), catalog=_catalog(args),
        duration_s=duration, num_requests=args.num_requests, seed=args.seed)
    trace = generate_trace(config)
    write_trace(trace, args.output, progress=args.progress)
    print(f"wrote {trace.num_requests} requests over {trace.num_adapters} adapters "
          f"to {args.output}")
    return 0


def run_import_azure(args: argparse.Namespace) -> int:
    config = AzureImportConfig(
        source=args.csv, num_adapters=args.num_adapters,
        popularity=POPULARITY_BUILDERS[args.popularity](args), catalog=_catalog(args),
        window_s=None if args.window is None else tuple(args.window),
        rate_scale=args.rate_scale, seed=args.seed)
    trace = import_azure(config)
    write_trace(trace, args.output, progress=args.progress)
    raised = trace.meta["zero_lengths_raised_to_1"]
    print(f"wrote {trace.num_requests} requests over {trace.num_adapters} adapters "
          f"to {args.output} ({raised['prompt_len']} prompt and {raised['output_len']} output "
          "lengths of 0 raised to 1)")
    return 0


def run_describe(args: argparse.Namespace) -> int:
    summary = describe(read_trace(args.trace), top=args.top)
    print(json.dumps(summary, indent=2) if args.json else format_description(summary))
    return 0


def _add_adapter_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("adapters")
    group.add_argument("--num-adapters", type=int, default=200, metavar="N",
                       help="adapters in the catalog (default 200)")
    group.add_argument("--popularity", choices=tuple(POPULARITY_BUILDERS), default="slora",
                       help="slora: index int(power(alpha) * N), as S-LoRA; zipf: P(i) ~ "
                            "1/(i+1)^alpha; uniform (default slora)")
    group.add_argument("--alpha", type=float, default=1.0,
                       help="S-LoRA popularity alpha (1 = uniform, smaller = more skewed) or "
                            "the Zipf exponent (default 1)")
    group.add_argument("--ranks", default="8,16,32,64",
                       help="ranks, e.g. 8,16,32,64 (see --rank-mode) or a weighted mix "
                            "8:0.4,16:0.3,32:0.2,64:0.1 (default 8,16,32,64)")
    group.add_argument("--rank-mode", choices=("cycle", "draw"), default="cycle",
                       help="cycle: adapter i gets ranks[i %% len]; draw: uniform draw "
                            "(default cycle)")
    group.add_argument("--lora-alpha", default="2x",
                       help="lora_alpha: a number, or Fx for F times the rank (default 2x)")
    group.add_argument("--targets", default="q;k;v;o",
                       help="target modules, ;-separated, of q;k;v;o;gate;up;down "
                            "(default q;k;v;o)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_generate(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("generate", help="draw a synthetic trace",
                            description="Draw a synthetic trace folder (S-LoRA-style by "
                                        "default: 200 adapters, 2 req/s, 300 s).")
    p.add_argument("-o", "--output", default="out/trace",
                   help="trace folder to write (default out/trace)")
    arrivals = p.add_argument_group("arrivals")
    arrivals.add_argument("--arrivals", choices=tuple(ARRIVAL_BUILDERS), default="gamma",
                          help="arrival process (default gamma; cv 1 is Poisson)")
    arrivals.add_argument("--rate", type=float, default=2.0,
                          help="requests per second (bursts: the on rate) (default 2)")
    arrivals.add_argument("--cv", type=float, default=1.0,
                          help="coefficient of variation of inter-arrival gaps (default 1)")
    arrivals.add_argument("--rate-schedule", metavar="START:RATE,...",
                          help="schedule: piecewise rates, e.g. 0:2,60:8,120:2")
    arrivals.add_argument("--burst", nargs=2, type=float, metavar=("ON_S", "OFF_S"),
                          help="bursts: seconds on (at --rate) and off (at --off-rate)")
    arrivals.add_argument("--off-rate", type=float, default=0.0,
                          help="bursts: rate between bursts (default 0)")
    size = arrivals.add_mutually_exclusive_group()
    size.add_argument("--duration", type=float, metavar="S",
                      help=f"seconds of arrivals (default {DEFAULT_DURATION_S:g})")
    size.add_argument("--num-requests", type=int, metavar="N",
                      help="exactly N requests instead of a duration")
    lengths = p.add_argument_group("lengths")
    lengths.add_argument("--lengths", choices=tuple(LENGTH_BUILDERS), default="uniform",
                         help="length model (default uniform)")
    lengths.add_argument("--input-range", nargs=2, type=int, metavar=("LO", "HI"),
                         help="prompt lengths, inclusive: uniform range (default 8 512), "
                              "lognormal clip, resample filter")
    lengths.add_argument("--output-range", nargs=2, type=int, metavar=("LO", "HI"),
                         help="output lengths, inclusive, as --input-range")
    lengths.add_argument("--prompt-lognormal", nargs=2, type=float, metavar=("MEDIAN", "SIGMA"),
                         default=(None, None), help="lognormal prompt lengths (default 512 1)")
    lengths.add_argument("--output-lognormal", nargs=2, type=float, metavar=("MEDIAN", "SIGMA"),
                         default=(None, None), help="lognormal output lengths (default 128 1)")
    lengths.add_argument("--length-source", default="azure-conv",
                         help=f"resample: {', '.join(SHIPPED_SOURCES)} or an Azure-format CSV "
                              "(default azure-conv)")
    _add_adapter_options(p)
    p.set_defaults(handler="manylora.traces.cli:run_generate")


def _add_import(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("import-azure", help="turn an Azure LLM inference trace into a trace",
                            description="Import an Azure LLM inference trace (TIMESTAMP, "
                                        "ContextTokens, GeneratedTokens) with adapters assigned "
                                        "by a popularity law; token counts of 0 become 1 and "
                                        "are counted in meta.json. Shipped: azure-code, "
                                        "azure-conv (CC-BY 4.0; cite Patel et al., Splitwise, "
                                        "ISCA 2024).")
    p.add_argument("csv", metavar="CSV", help=f"{' or '.join(SHIPPED_SOURCES)} or a CSV path")
    p.add_argument("-o", "--output", required=True, help="trace folder to write")
    p.add_argument("--window", nargs=2, type=float, metavar=("START", "END"),
                   help="keep requests START <= t < END seconds after the file's first one")
    p.add_argument("--rate-scale", type=float, default=1.0, metavar="X",
                   help="divide inter-arrival times by X (2 doubles the rate; default 1)")
    _add_adapter_options(p)
    p.set_defaults(handler="manylora.traces.cli:run_import_azure")


def _add_describe(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("describe", help="summarise a trace folder",
                            description="Request count, duration, measured rate and "
                                        "inter-arrival cv, adapter use, length percentiles.")
    p.add_argument("trace", metavar="DIR", help="trace folder")
    p.add_argument("--top", type=int, default=5, help="most used adapters to list (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler="manylora.traces.cli:run_describe")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``trace generate | import-azure | describe`` to the ``manylora`` command."""
    trace = subparsers.add_parser("trace", help="generate, import and describe workload traces",
                                  description="Workload traces: folders of requests.csv, "
                                              "adapters.csv and meta.json.")
    commands = trace.add_subparsers(dest="trace_command", required=True, metavar="SUBCOMMAND")
    _add_generate(commands)
    _add_import(commands)
    _add_describe(commands)
