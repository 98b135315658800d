"""What the profiler's serving probes replay: their workload, their traces, and the saturation
throughput their rates derive from (profile_serving.py runs them on the engine).

Torch-free, so that command-line modules can state the defaults without importing the engine.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

from manylora.engine.anchor_config import AnchorConfig
from manylora.engine.request import Request, RequestState
from manylora.traces import (CatalogConfig, CycleRanks, GammaArrivals, TraceConfig,
                             UniformLengths, UniformPopularity, generate_trace)
from manylora.traces.trace import Trace

# The burst that measures saturation throughput. Its steps are stored but not fitted: its first
# step prefills the whole token budget at once (8,180 tokens, 27% of the probe's busy time on
# this CPU), a shape open-loop serving does not produce, and a linear fit that matched that
# probe's busy time over-predicted the mixed prefill+decode steps of real overload by ~15%.
SATURATION_PROBE = "saturation"

BURST_RATE = 1e6  # requests per second: the saturation probe's requests arrive at once


@dataclass(frozen=True)
class ServingProbeConfig:
    """The probes' workload and how long each runs."""

    loads: tuple[float, ...] = (0.3, 0.6, 0.9)  # open-loop probes, shares of saturation
    seconds: float = 8.0                # arrival period of each open-loop probe
    burst_requests: int = 400           # the saturation probe (more than one batch holds)
    min_requests: int = 50              # per open-loop probe, at least
    num_adapters: int = 100
    prompt_range: tuple[int, int] = (8, 64)
    output_range: tuple[int, int] = (8, 32)
    ranks: tuple[int, ...] = (8, 16, 32, 64)
    cv: float = 1.0
    seed: int = 1000
    anchor: AnchorConfig | None = None  # speed anchors in every probe (manylora validate's)

    def __post_init__(self) -> None:
        if not self.loads or not all(0 < x < math.inf for x in self.loads):
            raise ValueError(f"ServingProbeConfig.loads must be shares > 0, got {self.loads}")
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"ServingProbeConfig.seconds must be > 0, got {self.seconds!r}")
        for name in ("burst_requests", "min_requests", "num_adapters"):
            if getattr(self, name) < 1:
                raise ValueError(f"ServingProbeConfig.{name} must be >= 1, got "
                                 f"{getattr(self, name)!r}")
        for name in ("prompt_range", "output_range"):
            low, high = getattr(self, name)
            if not 1 <= low <= high:
                raise ValueError(f"ServingProbeConfig.{name} must be (low, high) with "
                                 f"1 <= low <= high, got {getattr(self, name)}")
        if not self.ranks or min(self.ranks) < 1:
            raise ValueError(f"ServingProbeConfig.ranks must be ranks >= 1, got {self.ranks}")
        if not (math.isfinite(self.cv) and self.cv > 0):
            raise ValueError(f"ServingProbeConfig.cv must be > 0, got {self.cv!r}")
        if self.seed < 0:
            raise ValueError(f"ServingProbeConfig.seed must be >= 0, got {self.seed!r}")

    @classmethod
    def quick(cls, seed: int = 1000) -> ServingProbeConfig:
        return cls(loads=(0.5,), seconds=1.0, burst_requests=24, min_requests=8,
                   num_adapters=6, prompt_range=(4, 16), output_range=(2, 8), ranks=(4, 8),
                   seed=seed)

    def to_dict(self) -> dict[str, Any]:
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        out["anchor"] = None if self.anchor is None else self.anchor.to_dict()
        return out

    def trace(self, rate_rps: float, num_requests: int, probe: int,
              targets: Sequence[str]) -> Trace:
        """Probe ``probe``'s trace: Gamma arrivals over the shared catalog, its own seed."""
        return generate_trace(TraceConfig(
            num_adapters=self.num_adapters, arrivals=GammaArrivals(rate=rate_rps, cv=self.cv),
            popularity=UniformPopularity(),
            lengths=UniformLengths(input_range=self.prompt_range,
                                   output_range=self.output_range),
            catalog=CatalogConfig(ranks=CycleRanks(ranks=self.ranks), targets=tuple(targets)),
            duration_s=None, num_requests=num_requests, seed=self.seed + probe))


def saturation_throughput(requests: Iterable[Request]) -> float:
    """Completions per second while requests still waited: from the first finish to the last
    admission (the whole run when nothing ever waited)."""
    reqs = [r for r in requests if r.state is RequestState.FINISHED]
    if not reqs:
        raise ValueError("no request of the saturation probe finished")
    first_finish = min(r.finish_s for r in reqs)
    last_admission = max(r.admitted_s for r in reqs)
    done = sum(1 for r in reqs if first_finish <= r.finish_s <= last_admission)
    if last_admission - first_finish > 0 and done > 1:
        return done / (last_admission - first_finish)
    return len(reqs) / (max(r.finish_s for r in reqs) - min(r.arrival_s for r in reqs))
