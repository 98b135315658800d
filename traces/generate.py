"""Synthetic workloads: `TraceConfig` and `generate_trace`, the Python API the engine,
simulator and sweeps call (the ``manylora trace generate`` command builds the same config).

Randomness: ``SeedSequence(seed).spawn(4)`` gives four independent streams in a fixed order:
arrivals, adapters, lengths, catalog. Changing the arrival process (say, the rate) changes how
many requests there are but not what the other streams draw: request i keeps its adapter and
lengths. Arrival times are rounded to whole microseconds, the precision requests.csv keeps,
so a trace written and read back equals the one generated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from manylora.traces.arrivals import ARRIVALS, ArrivalProcess, GammaArrivals
from manylora.traces.catalog import CatalogConfig, build_catalog
from manylora.traces.errors import TraceConfigError, check
from manylora.traces.lengths import LENGTHS, LengthModel, UniformLengths
from manylora.traces.popularity import POPULARITY, Popularity, SLoRAPopularity
from manylora.traces.trace import Trace

GENERATOR = "manylora.traces.generate"
STREAMS: tuple[str, ...] = ("arrivals", "adapters", "lengths", "catalog")
MICROS = 1_000_000


def streams(seed: int) -> dict[str, np.random.Generator]:
    """The trace streams, one generator per name in `STREAMS`, from one seed."""
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(STREAMS, children)}


def to_microseconds(arrival_s: np.ndarray) -> np.ndarray:
    """Arrival times rounded to whole microseconds (monotone, so order is kept)."""
    return np.round(arrival_s * MICROS) / MICROS


@dataclass(frozen=True)
class TraceConfig:
    """Everything that decides a synthetic trace. Defaults: 200 adapters, S-LoRA popularity
    with alpha 1 (uniform), 2 requests/s with cv 1, 300 s, lengths uniform in 8..512, ranks
    8,16,32,64 cycled, lora_alpha 2 x rank on q,k,v,o, seed 0."""

    num_adapters: int = 200
    arrivals: ArrivalProcess = field(default_factory=lambda: GammaArrivals(rate=2.0, cv=1.0))
    popularity: Popularity = field(default_factory=SLoRAPopularity)
    lengths: LengthModel = field(default_factory=UniformLengths)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    duration_s: float | None = 300.0
    num_requests: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        owner = "TraceConfig"
        check(isinstance(self.num_adapters, (int, np.integer)) and self.num_adapters >= 1,
              owner, "num_adapters", self.num_adapters, "a whole number >= 1")
        check(isinstance(self.arrivals, ArrivalProcess), owner, "arrivals", self.arrivals,
              f"an arrival process ({', '.join(ARRIVALS.names())})")
        check(isinstance(self.popularity, Popularity), owner, "popularity", self.popularity,
              f"a popularity law ({', '.join(POPULARITY.names())})")
        check(isinstance(self.lengths, LengthModel), owner, "lengths", self.lengths,
              f"a length model ({', '.join(LENGTHS.names())})")
        check(isinstance(self.catalog, CatalogConfig), owner, "catalog", self.catalog,
              "a CatalogConfig")
        if (self.duration_s is None) == (self.num_requests is None):
            raise TraceConfigError("TraceConfig: give exactly one of duration_s and "
                                   f"num_requests, got duration_s={self.duration_s!r}, "
                                   f"num_requests={self.num_requests!r}")
        if self.duration_s is not None:
            check(self.duration_s > 0 and math.isfinite(self.duration_s), owner, "duration_s",
                  self.duration_s, "a positive finite number of seconds")
        if self.num_requests is not None:
            check(isinstance(self.num_requests, (int, np.integer)) and self.num_requests >= 0,
                  owner, "num_requests", self.num_requests, "a whole number >= 0")
        check(isinstance(self.seed, (int, np.integer)) and self.seed >= 0, owner, "seed",
              self.seed, "a whole number >= 0")

    def to_dict(self) -> dict[str, Any]:
        """The parameters as meta.json keeps them (without the seed, which sits beside)."""
        return {"num_adapters": int(self.num_adapters),
                "arrivals": ARRIVALS.to_dict(self.arrivals),
                "popularity": POPULARITY.to_dict(self.popularity),
                "lengths": LENGTHS.to_dict(self.lengths),
                "catalog": self.catalog.to_dict(),
                "duration_s": self.duration_s, "num_requests": self.num_requests}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "TraceConfig":
        """The config that generated a trace, from its meta.json."""
        params = meta["params"]
        return cls(num_adapters=params["num_adapters"],
                   arrivals=ARRIVALS.from_dict(params["arrivals"]),
                   popularity=POPULARITY.from_dict(params["popularity"]),
                   lengths=LENGTHS.from_dict(params["lengths"]),
                   catalog=CatalogConfig.from_dict(params["catalog"]),
                   duration_s=params["duration_s"], num_requests=params["num_requests"],
                   seed=meta["seed"])


def generate_trace(config: TraceConfig) -> Trace:
    """Draw a synthetic trace; same config, same trace (and same bytes when written)."""
    rng = streams(int(config.seed))
    arrival_s = to_microseconds(config.arrivals.sample(
        rng["arrivals"], num_requests=config.num_requests, duration_s=config.duration_s))
    n = len(arrival_s)
    adapter_id = config.popularity.sample(rng["adapters"], n, config.num_adapters)
    prompt_len, output_len = config.lengths.sample(rng["lengths"], n)
    requests = pd.DataFrame({"request_id": np.arange(n, dtype=np.int64), "arrival_s": arrival_s,
                             "adapter_id": adapter_id, "prompt_len": prompt_len,
                             "output_len": output_len})
    adapters = build_catalog(config.catalog, config.num_adapters, rng["catalog"])
    meta = {"generator": GENERATOR, "params": config.to_dict(), "seed": int(config.seed)}
    return Trace(requests, adapters, meta)
