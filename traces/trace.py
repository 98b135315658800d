"""`Trace`: one workload in memory, columnar (one DataFrame per CSV file, no per-request objects).

``requests``: ``request_id, arrival_s, adapter_id, prompt_len, output_len`` (int64 except
``arrival_s``, float64 seconds). ``adapters``: ``adapter_id, rank, alpha, targets[, path]``.
``meta``: what made it (generator, parameters, seed, or the imported source).
Constructing a `Trace` validates and normalises both frames (validate.py), so every `Trace` in
the program obeys the trace-folder rules whether it was generated, imported or read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from manylora.traces.validate import (validate_adapters, validate_links, validate_meta,
                                      validate_requests)


@dataclass(frozen=True, eq=False)
class Trace:
    """A validated workload. ``source`` (the folder it came from, if any) only labels errors."""

    requests: pd.DataFrame
    adapters: pd.DataFrame
    meta: dict[str, Any]
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        prefix = f"{self.source}/" if self.source else ""
        requests = validate_requests(self.requests, f"{prefix}requests.csv")
        adapters = validate_adapters(self.adapters, f"{prefix}adapters.csv")
        validate_links(requests, adapters, f"{prefix}requests.csv", f"{prefix}adapters.csv")
        meta = validate_meta(self.meta, f"{prefix}meta.json")
        object.__setattr__(self, "requests", requests)
        object.__setattr__(self, "adapters", adapters)
        object.__setattr__(self, "meta", dict(meta))

    @property
    def num_requests(self) -> int:
        return len(self.requests)

    @property
    def num_adapters(self) -> int:
        """Adapters in the catalog (adapters.csv), used or not."""
        return len(self.adapters)

    def column(self, name: str) -> np.ndarray:
        """One requests.csv column as a numpy array ``[num_requests]``."""
        return self.requests[name].to_numpy()

    def same_as(self, other: "Trace") -> bool:
        """Same requests, adapters and meta, value for value."""
        return (self.requests.equals(other.requests) and self.adapters.equals(other.adapters)
                and self.meta == other.meta)
