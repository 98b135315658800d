"""Summary statistics of a trace (``manylora trace describe``): size, rate, burstiness,
adapter popularity and length percentiles, as a JSON-ready dict and as text."""
from __future__ import annotations

from typing import Any

import numpy as np

from manylora.traces.trace import Trace
from manylora.traces.validate import BASE_MODEL

PERCENTILES: tuple[int, ...] = (50, 90, 99)


def _lengths(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {}
    stats = {"mean": float(values.mean()), "min": int(values.min())}
    stats.update({f"p{q}": float(np.percentile(values, q)) for q in PERCENTILES})
    stats["max"] = int(values.max())
    return stats


def describe(trace: Trace, top: int = 5) -> dict[str, Any]:
    """Request count, span, measured rate and inter-arrival CV, adapter use and shares of the
    ``top`` most used adapters, ranks in the catalog, length percentiles."""
    arrival = trace.column("arrival_s")
    adapter = trace.column("adapter_id")
    n = len(arrival)
    gaps = np.diff(arrival)
    span = float(arrival[-1] - arrival[0]) if n else 0.0
    with_adapter = adapter[adapter != BASE_MODEL]
    ids, counts = np.unique(with_adapter, return_counts=True)
    order = np.lexsort((ids, -counts))[:top]  # most used first, ties by id
    ranks, rank_counts = np.unique(trace.adapters["rank"].to_numpy(), return_counts=True)
    return {
        "requests": n,
        "duration_s": float(arrival[-1]) if n else 0.0,
        # (n - 1) gaps over the span from first to last arrival: unbiased for a renewal process
        "rate_per_s": (n - 1) / span if span > 0 else None,
        "interarrival_cv": float(gaps.std() / gaps.mean()) if len(gaps) > 1 and gaps.mean() > 0
        else None,
        "adapters_in_catalog": trace.num_adapters,
        "adapters_used": int(len(ids)),
        "base_model_requests": int(n - len(with_adapter)),
        "top_adapters": [{"adapter_id": int(ids[k]), "requests": int(counts[k]),
                          "share": float(counts[k] / n)} for k in order],
        "catalog_ranks": {str(int(r)): int(c) for r, c in zip(ranks, rank_counts)},
        "prompt_len": _lengths(trace.column("prompt_len")),
        "output_len": _lengths(trace.column("output_len")),
        "generator": trace.meta.get("generator"),
    }


def _number(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_description(summary: dict[str, Any]) -> str:
    """The `describe` dict as aligned text lines."""
    lines = [
        f"generator            {summary['generator']}",
        f"requests             {summary['requests']}",
        f"duration             {summary['duration_s']:.3f} s (last arrival)",
        f"rate                 {_number(summary['rate_per_s'])} req/s",
        f"inter-arrival cv     {_number(summary['interarrival_cv'])}",
        f"adapters             {summary['adapters_used']} used of "
        f"{summary['adapters_in_catalog']} in the catalog"
        f" ({summary['base_model_requests']} base-model requests)",
        "catalog ranks        " + ", ".join(f"{r}: {c}" for r, c in
                                            summary["catalog_ranks"].items()),
        "top adapters         " + ", ".join(
            f"{a['adapter_id']} ({100 * a['share']:.3g}%)" for a in summary["top_adapters"]),
    ]
    for column in ("prompt_len", "output_len"):
        stats = summary[column]
        if stats:
            lines.append(f"{column:<21}" + "  ".join(
                f"{k} {v:.0f}" if k != "mean" else f"mean {v:.1f}" for k, v in stats.items()))
    return "\n".join(lines)
