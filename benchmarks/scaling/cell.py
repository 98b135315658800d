"""Run one cell (a variant serving one trace) and summarise it: the variant registry, the
figures (throughput, latency, peak memory) and the status of the cell.

Throughput is requests (and output tokens) per second of wall time; ``cpu_throughput_rps`` is
requests per second of this process's CPU time, which a busy shared machine disturbs far less
(on a GPU it only counts the host's work). Status: ``ok`` (every request served), ``partial``
(serving stopped at the time budget: throughput is the requests done per second so far, latency
is left out because only the early finishers count), ``skipped`` (the variant decided up front
that it cannot run, and says why), ``failed`` (an exception: recorded as one line, the
benchmark goes on) and ``timeout`` (the parent killed the process). Peak RSS is the process's
high-water mark, so a cell is measured alone only when it runs in a process of its own (the
default).
"""
from __future__ import annotations

import cProfile
import io
import pstats
import resource
import sys
import traceback
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np
import torch

from scaling.context import CellContext, CellSpec, Served
from scaling.engine_variants import ENGINE_VARIANTS
from scaling.merged_baseline import MergedBaseline
from scaling.peft_baseline import PeftBaseline

VARIANTS: Mapping[str, Any] = MappingProxyType({v.name: v for v in (
    *ENGINE_VARIANTS, PeftBaseline(), MergedBaseline())})
REFERENCE = "manylora"  # other variants' tokens are compared with this one's
PROFILE_LINES = 30


class UnknownVariantError(ValueError):
    """A --variants name that no variant has."""


def check_variants(names: list[str]) -> list[str]:
    for name in names:
        if name not in VARIANTS:
            raise UnknownVariantError(f"--variants: unknown {name!r}; choose from "
                                      f"{', '.join(VARIANTS)}")
    return names


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def empty_result(spec: CellSpec) -> dict[str, Any]:
    return {"variant": spec.variant, "num_adapters": spec.num_adapters, "repeat": spec.repeat,
            "status": "", "reason": "", "requests": 0, "done": 0, "output_tokens": 0,
            "elapsed_s": None, "cpu_s": None, "throughput_rps": None,
            "cpu_throughput_rps": None, "tokens_per_s": None,
            "latency_mean_s": None, "setup_s": None, "peak_rss_mib": None,
            "peak_device_mib": None, "notes": {}, "tokens": {}}


def summarize(spec: CellSpec, ctx: CellContext, served: Served) -> dict[str, Any]:
    """The cell's figures from what the variant measured."""
    out = empty_result(spec)
    total = len(ctx.request_ids)
    lens = dict(zip(ctx.request_ids, ctx.output_lens))
    done = sorted(served.finish_s)
    short = [rid for rid in done if len(served.tokens.get(rid, ())) != lens[rid]]
    if short:
        raise RuntimeError(f"{spec.variant} returned the wrong number of tokens for "
                           f"requests {short[:5]}")
    out.update(requests=total, done=len(done), setup_s=served.setup_s, notes=served.notes,
               tokens={str(r): served.tokens[r] for r in done})
    if served.skipped:
        out.update(status="skipped", reason=served.skipped)
        return out
    elapsed = served.elapsed_s
    tokens = int(sum(lens[r] for r in done))
    out.update(status="ok" if len(done) == total else "partial", output_tokens=tokens,
               elapsed_s=elapsed, throughput_rps=len(done) / elapsed,
               tokens_per_s=tokens / elapsed, cpu_s=served.cpu_s,
               cpu_throughput_rps=len(done) / served.cpu_s if served.cpu_s > 0 else None)
    if len(done) == total:
        out["latency_mean_s"] = float(np.mean([served.finish_s[r] for r in done]))
    else:
        out["reason"] = (f"stopped at the {spec.budget_s:.0f} s budget after {len(done)} of "
                         f"{total} requests")
    return out


def profile_text(profiler: cProfile.Profile) -> str:
    """The entries that took the most time of their own."""
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(PROFILE_LINES)
    return text.getvalue()


def run_cell(spec: CellSpec) -> dict[str, Any]:
    """Run ``spec`` in this process; never raises for a failing variant."""
    if spec.threads:
        torch.set_num_threads(spec.threads)
    cuda = torch.device(spec.device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(spec.device)
    profiler = cProfile.Profile() if spec.profile else None
    try:
        ctx = CellContext(spec)
        if profiler is not None:
            profiler.enable()
        try:
            served = VARIANTS[spec.variant].run(ctx)
        finally:
            if profiler is not None:
                profiler.disable()
        out = summarize(spec, ctx, served)
        if profiler is not None:
            out["profile"] = profile_text(profiler)
    except Exception as exc:  # a failing (or out-of-memory) cell is a result, not the end
        traceback.print_exc(file=sys.stderr)
        out = empty_result(spec)
        out.update(status="failed", reason=f"{type(exc).__name__}: {exc}".splitlines()[0])
    out["peak_rss_mib"] = round(peak_rss_mib(), 1)
    if cuda:
        out["peak_device_mib"] = round(torch.cuda.max_memory_allocated(spec.device) / 2**20, 1)
    return out
