"""Kernel benchmarks: multi-LoRA over the paged pool vs baselines, paged decode attention vs SDPA.

On a GPU (one command, about two minutes on an H200):

    python benchmarks/kernels.py --out kernels.md

times, for 1..1,024 distinct adapters with Llama-7B widths (hidden 4096, one 4096x4096 target)
and ranks 8..128 (uniform and mixed), the LoRA decode and prefill ops of the default backend
(Triton on CUDA) against (a) the padded baseline (gather per token, pad to the largest rank,
bmm) and (b) a Python loop over adapters with dense per-adapter weights (its best case:
tokens sorted by adapter, weights contiguous). Each row reports the median time, the achieved
bandwidth over the bytes the op must move (distinct adapters' A and B, x read, y read and
written) and that as a percentage of the device's peak memory bandwidth (a table of known
peaks, else a measured device copy), plus each method's error against the loop. Paged decode
attention is timed against torch SDPA on contiguous K/V holding the same values.

Without CUDA (or with ``--cpu-smoke``) the same tables are produced at small sizes through the
plain-torch reference path (the engine's CPU backend), to prove the script runs; CPU peaks are
a measured copy bandwidth.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
import triton

from manylora.kernels.backends import attention_backend, default_backend_name, lora_backend
from manylora.kernels.batch_meta import BatchMeta
from manylora.kernels.pool_gather import gather_rows
from manylora.traces.atomic_io import atomic_write_text

# Peak HBM bandwidth in bytes/s by device-name fragment (first match wins).
PEAK_BANDWIDTH = (
    ("H200", 4.8e12),
    ("H100 PCIe", 2.0e12),
    ("H100", 3.35e12),
    ("A100-SXM4-80GB", 2.0e12),
    ("A100 80GB", 2.0e12),
)
MIXED_RANKS = (8, 16, 32, 64, 128)


@dataclass(frozen=True)
class Sizes:
    hidden: int
    decode_adapters: tuple[int, ...]
    prefill_adapters: tuple[int, ...]
    decode_ranks: tuple[object, ...]   # an int rank, or "mixed" (drawn from MIXED_RANKS)
    prefill_ranks: tuple[object, ...]
    min_decode_tokens: int
    prefill_tokens: int
    attention: tuple[tuple[int, int, int, int], ...]  # (batch, context, heads, kv_heads)
    head_dim: int


GPU_SIZES = Sizes(4096, (1, 8, 64, 256, 1024), (1, 8, 64, 256, 1024),
                  (8, 16, 32, 64, 128, "mixed"), (8, 64, "mixed"), 32, 2048,
                  ((32, 1024, 32, 32), (128, 512, 32, 8), (8, 8192, 32, 32), (1, 32768, 32, 8)),
                  128)
CPU_SIZES = Sizes(256, (1, 4, 16), (1, 4, 16), (8, 16, "mixed"), (8, "mixed"), 8, 64,
                  ((4, 128, 4, 4), (2, 256, 8, 2)), 32)


@dataclass(frozen=True)
class Hardware:
    device: torch.device
    name: str
    peak: float      # bytes/s
    peak_source: str


def measure_copy_bandwidth(device: torch.device) -> float:
    """Bytes/s of a large device-to-device copy (read + write)."""
    n = (256 if device.type == "cuda" else 16) * 2 ** 20  # float32 elements
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    seconds = time_median(lambda: dst.copy_(src), device)
    return 2 * 4 * n / seconds


def hardware(device: torch.device) -> Hardware:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for fragment, peak in PEAK_BANDWIDTH:
            if fragment in name:
                return Hardware(device, name, peak, "datasheet")
    else:
        name = f"CPU ({os.cpu_count()} cores)"
    return Hardware(device, name, measure_copy_bandwidth(device), "measured copy")


def time_median(fn: Callable[[], object], device: torch.device, repeats: int = 7) -> float:
    """Median seconds of ``fn``: triton's do_bench (L2 flushed between runs) on CUDA."""
    if device.type == "cuda":
        return triton.testing.do_bench(fn, warmup=10, rep=60, return_mode="median") / 1e3
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass
class LoraCase:
    """One target's adapters in a pool, a step's tokens sorted by adapter, and its metadata."""

    pool: torch.Tensor                  # [num_pages, page_elems]
    meta: BatchMeta
    x: torch.Tensor                     # [T, hidden]
    dense: list[tuple[torch.Tensor, torch.Tensor]]  # per adapter (A [r, d], B^T [r, d])
    rows: list[slice]                   # per adapter: its tokens
    weight_bytes: int


def lora_case(rng: np.random.Generator, ranks: list[int], tokens: list[int], hidden: int,
              prefill: bool, dtype: torch.dtype, device: torch.device) -> LoraCase:
    """Adapters on one hidden x hidden target (S-LoRA layout: a page holds 2 * hidden)."""
    page_elems = 2 * hidden
    counts = [-(-r * 2 * hidden // page_elems) for r in ranks]
    num_pages = sum(counts) + 1
    order = rng.permutation(num_pages - 1) + 1  # scattered page ids; page 0 for KV rows
    pool = (torch.randn(num_pages, page_elems, device=device) * 0.02).to(dtype)
    cuts = np.cumsum([0] + counts)
    pages = [order[a:b].tolist() for a, b in zip(cuts[:-1], cuts[1:])]
    slots = list(range(len(ranks)))
    per_slot = dict(adapter_pages=pages, lora_ranks=[[r] for r in ranks],
                    lora_a_offsets=[[0]] * len(ranks),
                    lora_b_offsets=[[r * hidden] for r in ranks],
                    lora_scales=[[1.0]] * len(ranks))
    if prefill:
        meta = BatchMeta.build(prefill_lens=tokens, prefill_slots=slots,
                               prefill_kv_pages=[[0] * n for n in tokens],
                               decode_context_lens=[], decode_slots=[], decode_kv_pages=[],
                               tokens_per_page=1, device=device, **per_slot)
    else:
        token_slots = [s for s, n in zip(slots, tokens) for _ in range(n)]
        meta = BatchMeta.build(prefill_lens=[], prefill_slots=[], prefill_kv_pages=[],
                               decode_context_lens=[1] * len(token_slots),
                               decode_slots=token_slots, decode_kv_pages=[[0]] * len(token_slots),
                               tokens_per_page=1, device=device, **per_slot)
    num_tokens = sum(tokens)
    x = torch.randn(num_tokens, hidden, device=device).to(dtype)
    lora = meta.lora(0)
    dense = [(gather_rows(pool, lora.adapter_pages[s], 0, r, hidden).contiguous(),
              gather_rows(pool, lora.adapter_pages[s], r * hidden, r, hidden).contiguous())
             for s, r in enumerate(ranks)]
    starts = np.cumsum([0] + tokens)
    rows = [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]
    elt = pool.element_size()
    return LoraCase(pool, meta, x, dense, rows, sum(ranks) * 2 * hidden * elt)


def loop_over_adapters(case: LoraCase, y: torch.Tensor) -> None:
    """Baseline (b): one pair of matmuls per adapter on its own tokens."""
    for (a, b), rows in zip(case.dense, case.rows):
        y[rows] += (case.x[rows] @ a.T) @ b


def lora_rows(hw: Hardware, sizes: Sizes, prefill: bool, dtype: torch.dtype,
              rng: np.random.Generator, kernel_name: str) -> list[list[str]]:
    adapters = sizes.prefill_adapters if prefill else sizes.decode_adapters
    rank_settings = sizes.prefill_ranks if prefill else sizes.decode_ranks
    table = []
    for n in adapters:
        for setting in rank_settings:
            ranks = ([int(r) for r in rng.choice(MIXED_RANKS, n)] if setting == "mixed"
                     else [int(setting)] * n)
            if prefill:
                per = max(1, sizes.prefill_tokens // n)
                tokens = [per] * n
            else:
                total = max(n, sizes.min_decode_tokens)
                tokens = [total // n + (i < total % n) for i in range(n)]
            case = lora_case(rng, ranks, tokens, sizes.hidden, prefill, dtype, hw.device)
            num_tokens = sum(tokens)
            moved = case.weight_bytes + 3 * num_tokens * sizes.hidden * case.x.element_size()
            truth = torch.zeros(num_tokens, sizes.hidden, dtype=dtype, device=hw.device)
            loop_over_adapters(case, truth)
            scale = float(truth.abs().max()) or 1.0
            methods = {
                f"{kernel_name} ({'segments' if prefill else 'per-token'})":
                    _backend_op(lora_backend(kernel_name), prefill, case),
                "padded gather+bmm": _backend_op(lora_backend("padded"), prefill, case),
                "loop over adapters": lambda y: loop_over_adapters(case, y),
            }
            times = {}
            for label, op in methods.items():
                times[label] = _measure(op, truth, truth, scale, hw)
            padded = times["padded gather+bmm"][0]
            for label, (seconds, err) in times.items():
                table.append(_lora_row(n, setting, num_tokens, label, seconds, err, moved, hw,
                                       padded))
            print(f"  lora {'prefill' if prefill else 'decode'} adapters={n} rank={setting} "
                  "done", file=sys.stderr)
            del case
            _free(hw.device)
    return table


def _backend_op(backend, prefill: bool, case: LoraCase) -> Callable[[torch.Tensor], None]:
    op = backend.prefill if prefill else backend.decode
    return lambda y: op(y, case.x, case.pool, case.meta, 0)


def _measure(op: Callable[[torch.Tensor], object], like: torch.Tensor, truth: torch.Tensor,
             scale: float, hw: Hardware) -> tuple[float | None, float | str]:
    """(median seconds of ``op(out)``, max error of ``out`` against ``truth`` over ``scale``).

    A failure (out of memory, or a kernel error on a GPU nobody has run this on yet) becomes
    (None, reason) with the traceback on stderr, so one bad cell does not lose the whole run.
    """
    try:
        y = torch.zeros_like(like)
        op(y)
        err = float((y.float() - truth.float()).abs().max()) / scale
        seconds = time_median(lambda: op(y), hw.device)
        return seconds, err
    except Exception as exc:  # noqa: BLE001 - recorded in the table, traceback on stderr
        traceback.print_exc(file=sys.stderr)
        _free(hw.device)
        return None, "OOM" if isinstance(exc, torch.cuda.OutOfMemoryError) else "failed"


def _lora_row(n, setting, num_tokens, label, seconds, err, moved, hw, padded):
    if seconds is None:
        return [str(n), str(setting), str(num_tokens), label, err, "", "", "", ""]
    bandwidth = moved / seconds
    speedup = f"{padded / seconds:.1f}x" if padded else "-"
    return [str(n), str(setting), str(num_tokens), label, f"{seconds * 1e6:.1f}",
            f"{bandwidth / 1e9:.1f}", f"{100 * bandwidth / hw.peak:.1f}", speedup, f"{err:.1e}"]


def attention_rows(hw: Hardware, sizes: Sizes, dtype: torch.dtype,
                   rng: np.random.Generator, name: str) -> list[list[str]]:
    hd, tpp = sizes.head_dim, 16
    table = []
    for batch, ctx, heads, kv_heads in sizes.attention:
        page_elems = 2 * tpp * kv_heads * hd
        per_req = -(-ctx // tpp)
        num_pages = batch * per_req
        pool = torch.randn(num_pages, page_elems, device=hw.device).to(dtype)
        table_ids = rng.permutation(num_pages).reshape(batch, per_req)
        meta = BatchMeta.build(prefill_lens=[], prefill_slots=[], prefill_kv_pages=[],
                               decode_context_lens=[ctx] * batch, decode_slots=[-1] * batch,
                               decode_kv_pages=table_ids.tolist(), adapter_pages=[],
                               lora_ranks=[], lora_a_offsets=[], lora_b_offsets=[],
                               lora_scales=[], tokens_per_page=tpp, device=hw.device,
                               num_targets=1)
        q = torch.randn(batch, heads, hd, device=hw.device).to(dtype)
        kv = pool.view(num_pages, 2, tpp, kv_heads, hd)[torch.from_numpy(table_ids).to(
            hw.device)]  # [B, per_req, 2, tpp, kv_heads, hd]
        k = kv[:, :, 0].reshape(batch, per_req * tpp, kv_heads, hd)[:, :ctx].transpose(1, 2)
        v = kv[:, :, 1].reshape(batch, per_req * tpp, kv_heads, hd)[:, :ctx].transpose(1, 2)
        k, v = k.contiguous(), v.contiguous()  # [B, kv_heads, ctx, hd]
        scale = hd ** -0.5
        backend = attention_backend(name)
        paged = lambda: backend.decode(q, pool, meta, scale)  # noqa: E731
        sdpa = lambda: torch.nn.functional.scaled_dot_product_attention(  # noqa: E731
            q[:, :, None], k, v, scale=scale, enable_gqa=heads != kv_heads)[:, :, 0]
        truth = sdpa().float()
        moved = 2 * batch * ctx * kv_heads * hd * pool.element_size()
        for label, fn in ((f"paged {name}", paged), ("SDPA contiguous", sdpa)):
            row = [str(batch), str(ctx), f"{heads}/{kv_heads}", label]
            seconds, err = _measure(lambda y: y.copy_(fn()), truth.to(dtype), truth, 1.0, hw)
            if seconds is None:
                table.append(row + [err, "", "", ""])
                continue
            bandwidth = moved / seconds
            table.append(row + [f"{seconds * 1e6:.1f}", f"{bandwidth / 1e9:.1f}",
                                f"{100 * bandwidth / hw.peak:.1f}", f"{err:.1e}"])
        print(f"  attention batch={batch} ctx={ctx} done", file=sys.stderr)
        del pool, kv, k, v
        _free(hw.device)
    return table


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def decode_summary(rows: list[list[str]], kernel_prefix: str) -> str:
    """Best and median % of peak of the kernel's decode rows with >= 256 adapters."""
    measured = [r for r in rows if r[3].startswith(kernel_prefix) and r[6]]
    shares = [float(r[6]) for r in measured if int(r[0]) >= 256] or [float(r[6])
                                                                    for r in measured]
    if not shares:
        return f"LoRA decode, {kernel_prefix} backend: no successful measurement"
    return (f"LoRA decode, {kernel_prefix} backend, largest adapter counts: median "
            f"{statistics.median(shares):.1f}% / best {max(shares):.1f}% of peak bandwidth "
            "(target >= 70% on H100/H200)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="also write the tables (Markdown) to this file")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="small sizes on CPU through the reference path (default without "
                             "CUDA)")
    parser.add_argument("--dtype", choices=("float16", "bfloat16"), default="float16",
                        help="GPU dtype (CPU runs use float32)")
    parser.add_argument("--backend", choices=("triton", "torch"),
                        help="kernel backend to time (default: triton on CUDA, torch on CPU; "
                             "triton on CPU needs TRITON_INTERPRET=1)")
    parser.add_argument("--max-adapters", type=int, default=1024,
                        help="leave out LoRA rows with more distinct adapters (a shorter run)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    on_gpu = torch.cuda.is_available() and not args.cpu_smoke
    device = torch.device("cuda" if on_gpu else "cpu")
    sizes = GPU_SIZES if on_gpu else CPU_SIZES
    sizes = replace(sizes, **{f: tuple(n for n in getattr(sizes, f) if n <= args.max_adapters)
                              for f in ("decode_adapters", "prefill_adapters")})
    dtype = getattr(torch, args.dtype) if on_gpu else torch.float32
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    backend = args.backend or default_backend_name(device)
    hw = hardware(device)
    started = time.perf_counter()
    decode = lora_rows(hw, sizes, False, dtype, rng, backend)
    prefill = lora_rows(hw, sizes, True, dtype, rng, backend)
    attention = attention_rows(hw, sizes, dtype, rng, backend)
    lora_header = ["adapters", "rank", "tokens", "method", "time us", "GB/s", "% peak",
                   "vs padded", "max err (rel. to loop)"]
    text = "\n\n".join([
        f"# manylora kernel benchmark\n\ndevice: {hw.name}; peak bandwidth "
        f"{hw.peak / 1e9:.0f} GB/s ({hw.peak_source}); dtype {str(dtype).removeprefix('torch.')}"
        f"; torch {torch.__version__}, triton {triton.__version__}; kernel backend {backend}; "
        f"{'GPU sizes' if on_gpu else 'CPU smoke sizes'}",
        f"## LoRA decode: one token per request, {sizes.hidden}x{sizes.hidden} target\n\n"
        "GB/s counts the bytes the op must move: distinct adapters' A and B, x, y read and "
        "written.\n\n" + markdown(lora_header, decode),
        f"## LoRA prefill: {sizes.prefill_tokens} tokens in one segment per adapter\n\n"
        + markdown(lora_header, prefill),
        "## Paged decode attention vs SDPA on contiguous K/V (16 tokens per page)\n\n"
        "GB/s counts K and V bytes; error is max abs difference to SDPA.\n\n"
        + markdown(["batch", "context", "heads/kv", "method", "time us", "GB/s", "% peak",
                    "max abs err"], attention),
        decode_summary(decode, backend),
        f"wall time {time.perf_counter() - started:.1f} s",
    ]) + "\n"
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
