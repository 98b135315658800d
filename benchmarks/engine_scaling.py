"""Engine throughput with 1 to 2,000 adapters: manylora, its S-LoRA ablations and two baselines
on one trace and one machine, in one run.

    # CPU (10-16 minutes on 2 shared cores): small random model, 4 layers, hidden 512, fp32
    python benchmarks/engine_scaling.py -o out/engine-scaling-cpu
    # GPU: Llama-7B-shaped random model in bf16; the targets first (see docs/benchmarks.md)
    python benchmarks/engine_scaling.py --device cuda --model-shape llama-7b \\
        --adapters 1,100,2000 --variants manylora,peft --time-limit 480

Variants (``--variants``): ``manylora`` (unified pool, heterogeneous LoRA ops, swap and
prefetch), ``partitioned`` (partitioned pool), ``padded`` (LoRA by gather + bmm padded to the
largest rank), ``peft`` (HF PEFT, all adapters in one PeftModel, requests grouped by adapter
and batched) and ``merged`` (one merged model copy per adapter, as many as memory holds, the
rest re-merged on demand). For each number of adapters (``--adapters``, default 1, 10, 100,
1000, 2000; ranks 8..64 on q,k,v,o) every variant serves the same trace: ``--requests``
requests, all at t = 0, adapters uniformly popular, lengths uniform (see scaling/presets.py).

Each cell runs in a fresh process (so peak RSS and device memory are its own) and repeats
run side by side (``--repeats``; tables quote medians). Writes to ``-o``: ``results.csv``
(every cell), ``table.md`` (medians, the targets, the machine), ``throughput.png``,
``cells/*.json`` (with every request's tokens) and ``logs/``. Greedy tokens of every variant
are compared with manylora's ("same tokens" column): a baseline that computes something else
is not a baseline. The random model, adapters and traces are kept in ``--work-dir``.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

# benchmarks/ goes last on sys.path, where Python put it first: scaling/ is imported from beside
# this file, but benchmarks/kernels.py must not shadow Hugging Face's `kernels`, which
# transformers 5.x imports
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _HERE] + [str(_HERE)]

import torch  # noqa: E402  (after the path: scaling/ is imported from beside this file)

from scaling.cell import (VARIANTS, UnknownVariantError, check_variants,  # noqa: E402
                          empty_result, run_cell)
from scaling.context import CellSpec  # noqa: E402
from scaling.presets import (ADAPTER_COUNTS, ScalingPreset, UnknownPresetError,  # noqa: E402
                             preset, with_limits)
from scaling.report import (add_agreement, markdown_table, plot, summary_rows,  # noqa: E402
                            targets, write_csv)
from scaling.workload import write_adapters, write_checkpoint, write_traces  # noqa: E402

SETUP_ALLOWANCE_S = 600.0  # on top of the serving budget before a cell's process is killed


class BenchmarkArgumentError(ValueError):
    """A bad command-line value."""


USER_ERRORS = (BenchmarkArgumentError, UnknownPresetError, UnknownVariantError)


def _counts(text: str) -> list[int]:
    try:
        counts = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise BenchmarkArgumentError(f"--adapters: expected comma-separated whole numbers, "
                                     f"got {text!r}") from None
    if not counts or min(counts) < 1:
        raise BenchmarkArgumentError(f"--adapters: every count must be >= 1, got {text!r}")
    return sorted(set(counts))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--model-shape", default="small",
                        help="preset: small (CPU, default), llama-7b (GPU, bf16), tiny (tests)")
    parser.add_argument("--adapters", default=",".join(map(str, ADAPTER_COUNTS)),
                        help="numbers of adapters, comma-separated (default %(default)s)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="variants to run (default: all)")
    parser.add_argument("--requests", type=str, default="",
                        help="requests per trace (default: the preset's)")
    parser.add_argument("--repeats", type=str, default="1", help="runs of every cell")
    parser.add_argument("--threads", type=str, default="1",
                        help="torch CPU threads per cell (default 1: the engine's small "
                             "per-token matrices gain little from more on a shared machine)")
    parser.add_argument("--budget", type=str, default="",
                        help="seconds of serving per cell before it stops (default: preset)")
    parser.add_argument("--peft-load-limit", type=str, default="",
                        help="skip PEFT when loading its adapters is projected to take longer "
                             "(seconds; default: preset)")
    parser.add_argument("--memory", type=str, default="",
                        help="device memory every variant may use, in copies of the model "
                             "weights (default: the preset's; lower it to make adapters and "
                             "KV cache compete)")
    parser.add_argument("--max-batch", type=str, default="",
                        help="running requests per engine step and PEFT batch size "
                             "(default: the preset's)")
    parser.add_argument("--token-budget", type=str, default="",
                        help="prefill + decode tokens per engine step (default: the preset's)")
    parser.add_argument("--time-limit", type=str, default="",
                        help="seconds for the whole run: cells not started by then are "
                             "recorded as not run (default: none)")
    parser.add_argument("--work-dir", default="out/engine-scaling-work",
                        help="where the random model, adapters and traces are kept")
    parser.add_argument("-o", "--out", default="", help="output folder")
    parser.add_argument("--in-process", action="store_true",
                        help="run every cell in this process (faster start; peak memory is "
                             "then the whole run's)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile every cell: cells/<cell>.profile.txt lists where the "
                             "time goes")
    parser.add_argument("--run-cell", nargs=2, metavar=("SPEC", "RESULT"),
                        help="internal: run one cell from a JSON spec, write its result")
    return parser


def _number(name: str, text: str, kind, low) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise BenchmarkArgumentError(f"--{name}: expected a number, got {text!r}") from None
    if value < low:
        raise BenchmarkArgumentError(f"--{name}: must be >= {low}, got {text!r}")
    return value


def _device(text: str) -> str:
    try:
        device = torch.device(text)
    except RuntimeError:
        raise BenchmarkArgumentError(f"--device: not a torch device: {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchmarkArgumentError(f"--device {text}: no CUDA device on this machine")
    return text


def run_one(spec: CellSpec, folder: Path, in_process: bool) -> dict:
    """One cell, in a child process unless ``in_process``; its result dict."""
    if in_process:
        return run_cell(spec)
    spec_path = folder / "cells" / f"{spec.key}.spec.json"
    result_path = folder / "cells" / f"{spec.key}.json"
    spec_path.write_text(json.dumps(spec.to_dict()))
    result_path.unlink(missing_ok=True)
    timeout = spec.budget_s + spec.peft_load_limit_s + SETUP_ALLOWANCE_S
    status = "failed"
    with open(folder / "logs" / f"{spec.key}.log", "w") as log:
        try:
            subprocess.run([sys.executable, __file__, "--run-cell", str(spec_path),
                            str(result_path)], stdout=log, stderr=log, timeout=timeout,
                           check=False)
        except subprocess.TimeoutExpired:
            status = "timeout"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    result = empty_result(spec)
    result.update(status=status,
                  reason=f"the cell's process gave no result (see logs/{spec.key}.log)")
    return result


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _machine(device: str) -> dict:
    info = {"platform": platform.platform(), "cpu_cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            **{name: importlib.metadata.version(name)
               for name in ("manylora", "transformers", "peft", "numpy")}}
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def cell_specs(args: argparse.Namespace) -> tuple[ScalingPreset, list[CellSpec], int, float]:
    """The preset, every cell to run (repeats outermost, then adapter counts, then variants,
    so the variants of one count run side by side), requests per trace and the time limit,
    from the arguments; the model, adapters and traces are written to the work folder on the
    way."""
    chosen = preset(args.model_shape)
    device = _device(args.device)
    counts = _counts(args.adapters)
    variants = check_variants([v.strip() for v in args.variants.split(",") if v.strip()])
    requests = int(_number("requests", args.requests, int, 1)) if args.requests \
        else chosen.num_requests
    repeats = int(_number("repeats", args.repeats, int, 1))
    threads = int(_number("threads", args.threads, int, 0))
    budget = float(_number("budget", args.budget, float, 1e-3)) if args.budget \
        else chosen.cell_budget_s
    peft_limit = float(_number("peft-load-limit", args.peft_load_limit, float, 0)) \
        if args.peft_load_limit else chosen.peft_load_limit_s
    memory = float(_number("memory", args.memory, float, 1.0)) if args.memory else 0.0
    if memory and memory <= 1 + chosen.reserve_multiple:
        raise BenchmarkArgumentError(f"--memory: must exceed {1 + chosen.reserve_multiple} "
                                     f"(the weights and the activation reserve), got "
                                     f"{args.memory!r}")
    max_batch = int(_number("max-batch", args.max_batch, int, 1)) if args.max_batch else 0
    token_budget = int(_number("token-budget", args.token_budget, int, 1)) \
        if args.token_budget else 0
    chosen = with_limits(chosen, max_batch, token_budget)  # as the cells will run it
    time_limit = float(_number("time-limit", args.time_limit, float, 0)) if args.time_limit \
        else float("inf")
    work = Path(args.work_dir) / chosen.name
    print(f"preparing {work} (model, {max(counts)} adapters, traces of {requests} requests)")
    model_dir = write_checkpoint(work / "model", chosen)
    adapters_dir = write_adapters(work / "adapters", chosen, max(counts))
    traces = write_traces(work / f"traces-{requests}", chosen, counts, requests)
    base = CellSpec("", 1, 0, chosen.name, device, threads, str(model_dir), str(adapters_dir),
                    "", budget, peft_limit, args.profile, memory, max_batch, token_budget)
    cells = [replace(base, variant=v, num_adapters=n, repeat=r, trace_dir=str(traces[n]))
             for r in range(repeats) for n in counts for v in variants]
    return chosen, cells, requests, time_limit


def write_outputs(out: Path, results: list[dict], meta: dict, title: str) -> str:
    """cells/*.json, results.csv, throughput.png, meta.json and table.md; returns the table."""
    add_agreement(results)
    for r in results:
        key = f"{r['variant']}-n{r['num_adapters']}-r{r['repeat']}"
        if "profile" in r:
            _write(out / "cells" / f"{key}.profile.txt", r.pop("profile"))
        _write(out / "cells" / f"{key}.json", json.dumps(r))
    rows = summary_rows(results)
    write_csv(results, out / "results.csv")
    plot(rows, out / "throughput.png", title)
    _write(out / "meta.json", json.dumps(meta, indent=2) + "\n")
    load = meta["load_average_before"][0], meta["load_average_after"][0]
    lines = [f"# Engine scaling: {title}", "",
             *[f"- {t}" for t in targets(rows, max(meta["adapters"]))],
             f"- load average before / after: {load[0]:.1f} / {load[1]:.1f}; "
             f"{meta['wall_s']:.0f} s in all; medians of {meta['repeats']} repeat(s)", "",
             *[f"- `{v}`: {VARIANTS[v].label}" for v in meta["variants"]], "",
             markdown_table(rows, torch.device(meta["device"]).type == "cpu"), ""]
    _write(out / "table.md", "\n".join(lines))
    return "\n".join(lines)


def benchmark(args: argparse.Namespace) -> Path:
    started, load_before = time.perf_counter(), os.getloadavg()
    chosen, cells, requests, time_limit = cell_specs(args)
    first = cells[0]
    out = Path(args.out or f"out/engine-scaling-{chosen.name}-{first.device}")
    for sub in ("cells", "logs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    results = []
    for i, spec in enumerate(cells, 1):
        t0 = time.perf_counter()
        if t0 - started > time_limit:
            result = empty_result(spec)
            result.update(status="not run", reason=f"past --time-limit {time_limit:.0f} s")
        else:
            result = run_one(spec, out, args.in_process)
        results.append(result)
        figure = "" if result["throughput_rps"] is None else \
            f" {result['throughput_rps']:.2f} req/s"
        print(f"[{i}/{len(cells)}] {spec.variant} n={spec.num_adapters} r={spec.repeat}: "
              f"{result['status']}{figure} ({time.perf_counter() - t0:.0f} s) "
              f"{result['reason']}", flush=True)
    memory = first.memory_multiple or chosen.memory_multiple
    meta = {"preset": asdict(chosen), "device": first.device,
            "adapters": sorted({c.num_adapters for c in cells}),
            "variants": list(dict.fromkeys(c.variant for c in cells)),
            "requests": requests,
            "repeats": max(c.repeat for c in cells) + 1, "threads": first.threads,
            "budget_s": first.budget_s, "peft_load_limit_s": first.peft_load_limit_s,
            "memory_multiple": memory, "machine": _machine(first.device),
            "load_average_before": load_before, "load_average_after": os.getloadavg(),
            "wall_s": round(time.perf_counter() - started, 1)}
    title = (f"{chosen.name} model ({chosen.dtype}) on {first.device}, {meta['requests']} "
             f"requests at once, max batch {chosen.max_batch_size}, memory {memory:g}x the "
             f"weights")
    print(write_outputs(out, results, meta, title))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.run_cell:
        spec = CellSpec(**json.loads(Path(args.run_cell[0]).read_text()))
        _write(Path(args.run_cell[1]), json.dumps(run_cell(spec)))
        return 0
    try:
        benchmark(args)
    except USER_ERRORS as exc:
        print(f"engine_scaling: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
