"""Turning cell results into the benchmark's outputs: token agreement with manylora, medians
over repeats, the CSV of every cell, a markdown table with the targets, and the plot.

Every file is written to a temporary name beside it and renamed into place.
"""
from __future__ import annotations

import csv
import os
import statistics
from pathlib import Path
from typing import Any, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import FuncFormatter  # noqa: E402

from scaling.cell import REFERENCE, VARIANTS  # noqa: E402

METRICS = ("throughput_rps", "cpu_throughput_rps", "tokens_per_s", "latency_mean_s",
           "setup_s", "peak_rss_mib", "peak_device_mib")
CSV_COLUMNS = ("variant", "num_adapters", "repeat", "status", "requests", "done",
               "output_tokens", "elapsed_s", "cpu_s", *METRICS, "agreement", "prefix_agreement",
               "reason", "notes")
THROUGHPUTS = (("throughput_rps", "wall"), ("cpu_throughput_rps", "CPU time"))
MEASURED = ("ok", "partial")


def _prefix_share(tokens: list[int], reference: list[int]) -> float:
    """Share of ``reference`` matched before the first differing token."""
    same = next((i for i, (a, b) in enumerate(zip(tokens, reference)) if a != b),
                min(len(tokens), len(reference)))
    return same / max(len(reference), 1)


def add_agreement(results: list[dict[str, Any]]) -> None:
    """Compare greedy tokens with manylora's for the same number of adapters, over requests
    both served: ``agreement`` is the share of requests with identical tokens,
    ``prefix_agreement`` the mean share of each request's tokens before the first difference
    (in bf16 a near-tie can flip one token and everything after it). None without a manylora
    cell to compare with."""
    reference: dict[int, dict[str, list[int]]] = {}
    for r in results:
        if r["variant"] == REFERENCE and r["tokens"] and r["num_adapters"] not in reference:
            reference[r["num_adapters"]] = r["tokens"]
    for r in results:
        ref = reference.get(r["num_adapters"])
        common = [k for k in r["tokens"] if ref and k in ref]
        r["agreement"] = (sum(r["tokens"][k] == ref[k] for k in common) / len(common)
                          if common else None)
        r["prefix_agreement"] = (sum(_prefix_share(r["tokens"][k], ref[k]) for k in common)
                                 / len(common) if common else None)


def _median(values: Iterable[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


def summary_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (variant, adapters): medians over the repeats that measured something."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["variant"], r["num_adapters"]), []).append(r)
    order = {name: i for i, name in enumerate(VARIANTS)}
    rows = []
    for (variant, n), cells in sorted(groups.items(), key=lambda g: (g[0][1], order[g[0][0]])):
        measured = [c for c in cells if c["status"] in MEASURED]
        use = measured or cells
        status = "ok" if any(c["status"] == "ok" for c in cells) else use[0]["status"]
        row = {"variant": variant, "num_adapters": n, "status": status, "repeats": len(use),
               "reason": next((c["reason"] for c in use if c["reason"]), ""),
               "agreement": _median(c.get("agreement") for c in use),
               "prefix_agreement": _median(c.get("prefix_agreement") for c in use)}
        row.update({m: _median(c[m] for c in use) for m in METRICS})
        rows.append(row)
    return rows


def _replace(path: Path, write) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def write_csv(results: list[dict[str, Any]], path: Path) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            out = csv.DictWriter(f, CSV_COLUMNS, extrasaction="ignore")
            out.writeheader()
            for r in results:
                out.writerow({**r, "notes": "; ".join(f"{k}={v}" for k, v in
                                                     r["notes"].items())})
    return _replace(path, write)


def _fmt(value: float | None, digits: int) -> str:
    """``digits`` significant digits, no exponent for the sizes seen here."""
    if value is None:
        return ""
    return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"


def markdown_table(rows: Sequence[dict[str, Any]], on_cpu: bool) -> str:
    """The summary as a markdown table: on a CPU with requests per CPU-second, elsewhere with
    the peak device memory instead."""
    extra, extra_name = ("cpu_throughput_rps", "req/CPU-s") if on_cpu else \
        ("peak_device_mib", "peak device (MiB)")
    lines = [f"| adapters | variant | req/s | {extra_name} | tokens/s | mean latency (s) | "
             f"peak RSS (MiB) | setup (s) | same tokens as manylora (prefix) | status |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        agree = "" if r["agreement"] is None else \
            f"{100 * r['agreement']:.0f}% ({100 * r['prefix_agreement']:.0f}%)"
        status = r["status"] + (f" ({r['reason']})" if r["reason"] else "")
        lines.append(f"| {r['num_adapters']} | {r['variant']} | {_fmt(r['throughput_rps'], 3)} "
                     f"| {_fmt(r[extra], 4 if extra == 'peak_device_mib' else 3)} | "
                     f"{_fmt(r['tokens_per_s'], 3)} | {_fmt(r['latency_mean_s'], 3)} | "
                     f"{_fmt(r['peak_rss_mib'], 4)} | {_fmt(r['setup_s'], 2)} | {agree} | "
                     f"{status} |")
    return "\n".join(lines)


def _throughput(rows: Sequence[dict[str, Any]], variant: str, n: int, metric: str
                ) -> float | None:
    for r in rows:
        if r["variant"] == variant and r["num_adapters"] == n and r["status"] in MEASURED:
            return r[metric]
    return None


def targets(rows: Sequence[dict[str, Any]], most: int, compared_at: int = 100) -> list[str]:
    """The issue's two targets, as measured by wall and by CPU time (or why they could not
    be judged)."""
    lines = []
    for metric, clock in THROUGHPUTS:
        one, many = (_throughput(rows, REFERENCE, n, metric) for n in (1, most))
        if one and many:
            ratio = many / one
            lines.append(f"manylora throughput ({clock}) with {most} adapters / with 1: "
                         f"{ratio:.2f} (target >= 0.90: {'met' if ratio >= 0.9 else 'missed'})")
        ours, peft = (_throughput(rows, v, compared_at, metric) for v in (REFERENCE, "peft"))
        if ours and peft:
            ratio = ours / peft
            lines.append(f"manylora / HF PEFT ({clock}) at {compared_at} adapters: "
                         f"{ratio:.1f}x (target >= 10x: {'met' if ratio >= 10 else 'missed'})")
    return lines or [f"the targets need manylora at 1 and {most} adapters, and manylora and "
                     f"PEFT at {compared_at}"]


def plot(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """Throughput and mean latency against the number of adapters, one line per variant;
    hollow markers are partial runs (stopped at the time budget); the legend names the
    adapter counts where a variant did not run."""
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(11, 4.2))
    for variant in VARIANTS:
        mine = [r for r in rows if r["variant"] == variant and r["status"] in MEASURED]
        if not mine:
            continue
        missing = [str(r["num_adapters"]) for r in rows
                   if r["variant"] == variant and r["status"] not in MEASURED]
        label = variant + (f" (not run: {', '.join(missing)})" if missing else "")
        xs = [r["num_adapters"] for r in mine]
        line, = ax_t.plot(xs, [r["throughput_rps"] for r in mine], marker="o", label=label)
        for r in mine:
            if r["status"] == "partial":
                ax_t.plot([r["num_adapters"]], [r["throughput_rps"]], marker="o",
                          markerfacecolor="white", color=line.get_color())
        full = [r for r in mine if r["latency_mean_s"] is not None]
        ax_l.plot([r["num_adapters"] for r in full], [r["latency_mean_s"] for r in full],
                  marker="o", color=line.get_color(), label=variant)
    for ax, label in ((ax_t, "throughput (requests/s)"), (ax_l, "mean latency (s)")):
        ax.set_xscale("log")
        ax.set_xlabel("adapters")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax_t.yaxis.set_major_formatter(plain)
    ax_t.yaxis.set_minor_formatter(plain)
    if ax_t.get_legend_handles_labels()[0]:  # nothing to name when no cell served
        ax_t.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()

    def write(tmp: Path) -> None:
        fig.savefig(tmp, dpi=110, format="png")
    _replace(path, write)
    plt.close(fig)
    return path
