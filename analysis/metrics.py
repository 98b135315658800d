"""Run metrics: per-request latencies, the run summary, outcome counts and breakdowns.

Pandas in, pandas out. Definitions (they follow S-LoRA's benchmark client, so numbers are
comparable with its paper):

- latency = finish - arrival; TTFT = first token - arrival; TPOT as DistServe (``slo.py``);
  normalized latency = latency / output tokens (S-LoRA's "latency per output token"); queueing
  delay = admitted - arrival. All are over finished requests only; NaN when none finished.
- percentiles are numpy's default (linear interpolation between order statistics).
- throughput = finished requests / measurement interval, output tokens/s = output tokens of
  finished requests / interval; the interval runs from the first arrival to the last event
  (finish, else first token, else admission, else arrival) of the selected requests. With no
  requests, or a zero-length interval, throughput is NaN; with requests but none finished, 0.
- attainment and satisfaction count every selected request; aborted and rejected are misses.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from manylora.analysis.slo import (SLO, distserve_attainment, slora_attainment,
                                   user_satisfaction)
from manylora.analysis.window import Window

PERCENTILES = (50, 90, 99)
_DISTRIBUTIONS = ("latency", "ttft", "tpot")

SUMMARY_COLUMNS: tuple[str, ...] = (
    "requests", "finished", "aborted", "rejected", "preemptions", "duration_s",
    "throughput_rps", "output_tps",
    *(f"{name}_{stat}_s" for name in _DISTRIBUTIONS
      for stat in ("mean", *(f"p{p}" for p in PERCENTILES))),
    "norm_latency_mean_s", "queue_mean_s",
    "attainment_slora", "attainment_distserve", "satisfaction",
    "ttft_slo_s", "tpot_slo_s",
)
"""Names (and order) of :func:`summarize`'s result; the sweep table's metric columns."""


def request_latencies(requests: pd.DataFrame) -> pd.DataFrame:
    """The requests table plus latency_s, ttft_s, tpot_s, norm_latency_s and queue_s.

    Each is NaN for requests that did not finish, so aborted requests never enter a latency
    statistic (they enter attainment as misses instead).
    """
    out = requests.copy()
    finished = (out["status"] == "finished").to_numpy()
    arrival = out["arrival_s"].to_numpy(dtype=np.float64)
    first = np.where(finished, out["first_token_s"].to_numpy(dtype=np.float64), np.nan)
    finish = np.where(finished, out["finish_s"].to_numpy(dtype=np.float64), np.nan)
    tokens = out["output_tokens"].to_numpy(dtype=np.float64)
    out["latency_s"] = finish - arrival
    out["ttft_s"] = first - arrival
    with np.errstate(divide="ignore", invalid="ignore"):
        out["tpot_s"] = np.where(tokens > 1, (finish - first) / (tokens - 1),
                                 np.where(finished, 0.0, np.nan))
        out["norm_latency_s"] = np.where(finished, (finish - arrival) / tokens, np.nan)
    out["queue_s"] = np.where(finished, out["admitted_s"].to_numpy(dtype=np.float64) - arrival,
                              np.nan)
    return out


def measurement_interval(requests: pd.DataFrame) -> float:
    """Seconds from the first arrival to the last event of these requests; NaN if empty."""
    if requests.empty:
        return math.nan
    last = requests["arrival_s"].to_numpy(dtype=np.float64)
    for column in ("admitted_s", "first_token_s", "finish_s"):
        last = np.fmax(last, requests[column].to_numpy(dtype=np.float64))
    return float(last.max() - requests["arrival_s"].min())


def _stats(values: np.ndarray) -> list[float]:
    values = values[~np.isnan(values)]
    if not len(values):
        return [math.nan] * (1 + len(PERCENTILES))
    return [float(values.mean()), *(float(v) for v in np.percentile(values, PERCENTILES))]


def _per_second(amount: float, seconds: float) -> float:
    return amount / seconds if seconds > 0 else math.nan


def summarize(requests: pd.DataFrame, slo: SLO = SLO(), window: Window = Window()) -> pd.Series:
    """All run metrics for one requests table (see the module docstring), named as
    :data:`SUMMARY_COLUMNS`."""
    table = request_latencies(window.select(requests))
    status = table["status"]
    finished = (status == "finished").to_numpy()
    interval = measurement_interval(table)
    values: list[float] = [
        len(table), int(finished.sum()), int((status == "aborted").sum()),
        int((status == "rejected").sum()), int(table["preemptions"].sum()), interval,
        _per_second(finished.sum(), interval),
        _per_second(table["output_tokens"].to_numpy()[finished].sum(), interval),
    ]
    for name in _DISTRIBUTIONS:
        values += _stats(table[f"{name}_s"].to_numpy(dtype=np.float64))
    values += [
        _stats(table["norm_latency_s"].to_numpy(dtype=np.float64))[0],
        _stats(table["queue_s"].to_numpy(dtype=np.float64))[0],
        slora_attainment(table, slo), distserve_attainment(table, slo),
        user_satisfaction(table, slo), slo.ttft_s, slo.tpot_s,
    ]
    return pd.Series(values, index=list(SUMMARY_COLUMNS), dtype=np.float64, name="value")


def outcome_counts(requests: pd.DataFrame, window: Window = Window()) -> pd.DataFrame:
    """Requests per (status, reason), e.g. how many were aborted for missing their deadline."""
    table = window.select(requests)
    counts = (table.groupby(["status", "reason"], sort=True).size()
              .rename("requests").reset_index())
    return counts.astype({"requests": np.int64})


def breakdown(requests: pd.DataFrame, by: str, slo: SLO = SLO(),
              window: Window = Window()) -> pd.DataFrame:
    """One :func:`summarize` row per value of ``by`` (e.g. ``replica`` or ``adapter_id``).

    The window is applied to the whole run first, so every group sees the same exclusion.
    """
    if by not in requests.columns:
        raise ValueError(f"breakdown: no column {by!r} in the requests table; choose one of "
                         f"{', '.join(requests.columns)}")
    table = window.select(requests)
    rows = {key: summarize(group, slo) for key, group in table.groupby(by, sort=True)}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(SUMMARY_COLUMNS))
    frame.index.name = by
    return frame.reset_index()
