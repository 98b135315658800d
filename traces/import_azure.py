"""Turning an Azure LLM inference trace into a trace folder: `AzureImportConfig`, `import_azure`.

Real arrivals and lengths come from the file; adapters are assigned by a popularity law and
the catalog is built as for synthetic traces, from the same seeded streams (`generate.streams`:
the adapters stream picks adapters, the catalog stream ranks; the arrivals and lengths streams
are not used). Optional steps, in this order: keep the window ``[start, end)`` seconds after
the file's first request; shift so that the first kept request arrives at 0; divide every
arrival time (hence every inter-arrival gap) by ``rate_scale``, so 2 doubles the rate.
Token counts of 0 are raised to 1 and counted in meta.json (``zero_lengths_raised_to_1``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from manylora.traces.azure_source import load_azure, source_label
from manylora.traces.catalog import CatalogConfig, build_catalog
from manylora.traces.errors import TraceConfigError, check
from manylora.traces.generate import streams, to_microseconds
from manylora.traces.popularity import POPULARITY, Popularity, SLoRAPopularity
from manylora.traces.trace import Trace

GENERATOR = "import-azure"


@dataclass(frozen=True)
class AzureImportConfig:
    """What to import and how to assign adapters. ``source``: ``azure-code``, ``azure-conv``
    or a path to a CSV with TIMESTAMP, ContextTokens, GeneratedTokens."""

    source: str = "azure-conv"
    num_adapters: int = 200
    popularity: Popularity = field(default_factory=SLoRAPopularity)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    window_s: tuple[float, float] | None = None
    rate_scale: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        owner = "AzureImportConfig"
        check(isinstance(self.source, str) and bool(self.source), owner, "source", self.source,
              "a shipped trace name (azure-code, azure-conv) or a CSV path")
        check(isinstance(self.num_adapters, (int, np.integer)) and self.num_adapters >= 1,
              owner, "num_adapters", self.num_adapters, "a whole number >= 1")
        check(isinstance(self.popularity, Popularity), owner, "popularity", self.popularity,
              f"a popularity law ({', '.join(POPULARITY.names())})")
        if self.window_s is not None:
            check(len(self.window_s) == 2 and 0 <= self.window_s[0] < self.window_s[1]
                  and all(math.isfinite(w) for w in self.window_s), owner, "window_s",
                  self.window_s, "START END seconds with 0 <= START < END")
        check(self.rate_scale > 0 and math.isfinite(self.rate_scale), owner, "rate_scale",
              self.rate_scale, "a positive finite number")
        check(isinstance(self.seed, (int, np.integer)) and self.seed >= 0, owner, "seed",
              self.seed, "a whole number >= 0")

    def to_dict(self) -> dict[str, Any]:
        return {"source": source_label(self.source), "num_adapters": int(self.num_adapters),
                "popularity": POPULARITY.to_dict(self.popularity),
                "catalog": self.catalog.to_dict(),
                "window_s": None if self.window_s is None else [float(w) for w in self.window_s],
                "rate_scale": float(self.rate_scale)}


def import_azure(config: AzureImportConfig) -> Trace:
    """Read an Azure-format trace and give its requests adapters, ranks and a meta.json."""
    table = load_azure(config.source)
    keep = np.ones(len(table), dtype=bool)
    if config.window_s is not None:
        start, end = config.window_s
        keep = (table.arrival_s >= start) & (table.arrival_s < end)
        if not keep.any():
            raise TraceConfigError(
                f"AzureImportConfig.window_s: [{start:g}, {end:g}) s holds no request of "
                f"{source_label(config.source)}, which spans 0 to {table.arrival_s[-1]:.6g} s")
    arrival_s = table.arrival_s[keep]
    arrival_s = to_microseconds((arrival_s - arrival_s[0]) / config.rate_scale)
    n = len(arrival_s)
    rng = streams(int(config.seed))
    requests = pd.DataFrame({
        "request_id": np.arange(n, dtype=np.int64), "arrival_s": arrival_s,
        "adapter_id": config.popularity.sample(rng["adapters"], n, config.num_adapters),
        "prompt_len": table.prompt_len[keep], "output_len": table.output_len[keep]})
    adapters = build_catalog(config.catalog, config.num_adapters, rng["catalog"])
    meta = {
        "generator": GENERATOR, "source": source_label(config.source),
        "source_sha256": table.sha256, "params": config.to_dict(), "seed": int(config.seed),
        "source_requests": len(table), "requests": n,
        "source_rows_out_of_time_order": table.reordered_rows,
        "zero_lengths_raised_to_1": {"prompt_len": int(table.prompt_was_zero[keep].sum()),
                                     "output_len": int(table.output_was_zero[keep].sum())},
        "attribution": "Azure LLM inference traces 2023, CC-BY 4.0, Microsoft Azure Public "
                       "Dataset; cite Patel et al., \"Splitwise: Efficient generative LLM "
                       "inference using phase splitting\", ISCA 2024",
    }
    return Trace(requests, adapters, meta)
