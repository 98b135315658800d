"""Goodput: the highest request rate at which SLO attainment stays at or above a target.

Input is a rate sweep, (rate, attainment) pairs. Points at the same rate (seeds) are averaged
first. Two ways to read between sweep points, chosen by name:

- ``linear`` (default): attainment is taken as piecewise linear in rate between neighbouring
  sweep points; goodput is the highest rate on that curve with attainment >= target. When the
  last point at or above the target is followed by one below it, that is the crossing
  ``r_i + (a_i - target) / (a_i - a_{i+1}) * (r_{i+1} - r_i)``.
- ``none``: the highest swept rate whose attainment is >= target (a lower bound).

Either way goodput is NaN when no swept rate reaches the target, and equals the highest swept
rate when even that one does (the sweep did not go far enough to find the limit).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd

DEFAULT_TARGET = 0.9


def _linear(rates: np.ndarray, attainment: np.ndarray, target: float, last: int) -> float:
    if last == len(rates) - 1:
        return float(rates[last])
    a0, a1 = attainment[last], attainment[last + 1]
    return float(rates[last] + (a0 - target) / (a0 - a1) * (rates[last + 1] - rates[last]))


def _none(rates: np.ndarray, attainment: np.ndarray, target: float, last: int) -> float:
    return float(rates[last])


INTERPOLATIONS: dict[str, Callable[[np.ndarray, np.ndarray, float, int], float]] = {
    "linear": _linear,
    "none": _none,
}


def goodput(rates: Sequence[float], attainment: Sequence[float],
            target: float = DEFAULT_TARGET, interpolation: str = "linear") -> float:
    """Highest rate with attainment >= target (see the module docstring); NaN if none."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"goodput interpolation {interpolation!r} is not one of "
                         f"{', '.join(INTERPOLATIONS)}")
    if not 0 < target <= 1:
        raise ValueError(f"goodput target must be in (0, 1], got {target!r}")
    frame = pd.DataFrame({"rate": np.asarray(rates, dtype=np.float64),
                          "attainment": np.asarray(attainment, dtype=np.float64)}).dropna()
    if len(frame) and (frame["rate"] <= 0).any():
        raise ValueError(f"goodput rates must be > 0, got {frame['rate'].min()!r}")
    curve = frame.groupby("rate", sort=True)["attainment"].mean()
    rates_arr, attain_arr = curve.index.to_numpy(), curve.to_numpy()
    above = np.flatnonzero(attain_arr >= target)
    if not len(above):
        return math.nan
    return INTERPOLATIONS[interpolation](rates_arr, attain_arr, target, int(above[-1]))


def goodput_table(sweep: pd.DataFrame, by: Sequence[str], rate: str = "rate",
                  metric: str = "attainment_slora", target: float = DEFAULT_TARGET,
                  interpolation: str = "linear") -> pd.DataFrame:
    """Goodput for each group of a sweep table (e.g. by policy and cv), seeds averaged."""
    for column in (*by, rate, metric):
        if column not in sweep.columns:
            raise ValueError(f"goodput: the sweep table has no column {column!r}")
    rows = []
    for key, group in sweep.groupby(list(by), sort=True) if by else [((), sweep)]:
        key = key if isinstance(key, tuple) else (key,)
        value = goodput(group[rate], group[metric], target, interpolation)
        rows.append((*key, value))
    return pd.DataFrame(rows, columns=[*by, "goodput_rps"])
