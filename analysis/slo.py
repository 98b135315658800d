"""SLO attainment and user satisfaction, as S-LoRA and DistServe define them.

Per-request latencies come from ``metrics.request_latencies``. Every function takes the whole
requests table: aborted and rejected requests are in the denominator and always count as misses
(S-LoRA scores an aborted request 0 even if it streamed a first token before being dropped).

- S-LoRA attainment (``slora/utils/metric.py: attainment_func``): a request attains its SLO when
  its first-token latency (from arrival) is strictly below the TTFT SLO.
- S-LoRA user satisfaction (``reward``): ``1 - (ttft / slo)**2`` when ttft < slo, else 0; the
  mean over all requests, aborted and rejected ones scoring 0.
- DistServe attainment (``count_valid_results``): TTFT <= its SLO and TPOT <= its SLO, where
  TPOT is ``(last token - first token) / (output tokens - 1)`` and 0 for a one-token output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SLO:
    """Latency objectives. Defaults: S-LoRA's 6 s first token; 0.2 s per output token
    (5 tokens/s, about reading speed)."""

    ttft_s: float = 6.0
    tpot_s: float = 0.2

    def __post_init__(self) -> None:
        for name in ("ttft_s", "tpot_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"SLO.{name} must be a finite number > 0, got {value!r}")

    def scaled(self, scale: float) -> "SLO":
        """Both objectives multiplied by ``scale`` (DistServe's 'SLO scale' axis)."""
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"SLO scale must be a finite number > 0, got {scale!r}")
        return replace(self, ttft_s=self.ttft_s * scale, tpot_s=self.tpot_s * scale)


def _finished(latencies: pd.DataFrame) -> np.ndarray:
    return (latencies["status"] == "finished").to_numpy()


def slora_hits(latencies: pd.DataFrame, slo: SLO) -> np.ndarray:
    """bool per request: finished and first token strictly within the TTFT SLO."""
    return _finished(latencies) & (latencies["ttft_s"].to_numpy() < slo.ttft_s)


def distserve_hits(latencies: pd.DataFrame, slo: SLO) -> np.ndarray:
    """bool per request: finished, TTFT <= its SLO and TPOT <= its SLO."""
    return (_finished(latencies) & (latencies["ttft_s"].to_numpy() <= slo.ttft_s)
            & (latencies["tpot_s"].to_numpy() <= slo.tpot_s))


def satisfaction_scores(latencies: pd.DataFrame, slo: SLO) -> np.ndarray:
    """S-LoRA's reward per request in [0, 1]; 0 for misses, aborts and rejections."""
    ttft = latencies["ttft_s"].to_numpy()
    hit = slora_hits(latencies, slo)
    return np.where(hit, 1.0 - (np.where(hit, ttft, 0.0) / slo.ttft_s) ** 2, 0.0)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else math.nan


def slora_attainment(latencies: pd.DataFrame, slo: SLO) -> float:
    """Fraction of requests attaining the SLO the S-LoRA way; NaN for an empty run."""
    return _mean(slora_hits(latencies, slo).astype(np.float64))


def distserve_attainment(latencies: pd.DataFrame, slo: SLO) -> float:
    """Fraction of requests attaining both SLOs the DistServe way; NaN for an empty run."""
    return _mean(distserve_hits(latencies, slo).astype(np.float64))


def user_satisfaction(latencies: pd.DataFrame, slo: SLO) -> float:
    """S-LoRA's mean user satisfaction; NaN for an empty run."""
    return _mean(satisfaction_scores(latencies, slo))
