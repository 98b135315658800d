"""A machine whose speed varies over a run: simulate in its work time, report in wall time.

On a shared machine the engine's steps ran 3-10% slower or faster than when it was profiled,
changing within a minute (engine/anchor_config.py measures it with speed anchors). If the
machine runs ``f(t)`` times slower at wall time ``t`` (piecewise constant), a cost model priced
at profiling speed holds in *work time* ``tau``, with ``d tau = dt / f(t)``. So
``Deployment.simulate_run(..., speed=)`` maps the trace's arrivals to work time
(``work_time_trace``), simulates with the cost model as it is, and maps every time of the
result (admission, first token, finish, step starts and ends) back to wall time
(``to_wall_time``): a step of cost ``c`` then lasts ``c`` times the mean of ``f`` over it, and
a queue that builds up during a slow spell builds up in the simulation too (a constant factor
would spread it evenly over the run, and queueing delay grows faster than linearly in the
slowdown). Torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from manylora.engine.run_folder import StepLog
from manylora.simulator.simulation import SimulationResult
from manylora.traces.trace import Trace


@dataclass(frozen=True)
class SpeedProfile:
    """``factors[k]`` (> 0; 1.05: 5% slower than profiled) holds from ``starts[k]`` (wall
    seconds, ``starts[0] == 0``, increasing) to the next start; the last one holds on."""

    starts: tuple[float, ...]
    factors: tuple[float, ...]
    source: str = ""

    def __post_init__(self) -> None:
        starts, factors = np.asarray(self.starts, float), np.asarray(self.factors, float)
        if len(starts) == 0 or len(starts) != len(factors):
            raise ValueError(f"SpeedProfile needs as many starts as factors (at least one), "
                             f"got {len(starts)} and {len(factors)}")
        if starts[0] != 0.0 or np.any(np.diff(starts) <= 0) or not np.all(np.isfinite(starts)):
            raise ValueError(f"SpeedProfile.starts must begin at 0 and increase, got "
                             f"{self.starts[:5]}...")
        if not np.all(np.isfinite(factors)) or np.any(factors <= 0):
            raise ValueError(f"SpeedProfile.factors must be finite and > 0, got "
                             f"{self.factors[:5]}...")

    @classmethod
    def constant(cls, factor: float, source: str = "") -> SpeedProfile:
        return cls((0.0,), (float(factor),), source)

    @classmethod
    def from_passes(cls, at_s: Sequence[float], seconds: Sequence[float], reference_s: float,
                    window: int, source: str = "") -> SpeedProfile:
        """From speed-anchor passes (clock time each began, seconds each took) against the
        reference pass: each pass's factor is the median of the ``window`` passes centred on it
        (a single pass scatters by ~4%), holding from the midpoint to the previous pass."""
        at, passes = np.asarray(at_s, float), np.asarray(seconds, float)
        if len(at) == 0 or len(at) != len(passes) or np.any(np.diff(at) < 0):
            raise ValueError("SpeedProfile.from_passes: passes must be given in time order, "
                             "each with its time")
        if window < 1 or not reference_s > 0:
            raise ValueError(f"SpeedProfile.from_passes: window must be >= 1 and the reference "
                             f"> 0, got {window}, {reference_s}")
        smooth = (pd.Series(passes).rolling(window, center=True, min_periods=1).median()
                  .to_numpy() / reference_s)
        starts = np.concatenate([[0.0], (at[1:] + at[:-1]) / 2])  # pass k holds from here
        keep = np.append(np.diff(starts) > 0, True)  # of passes at one moment, the last
        return cls(tuple(starts[keep].tolist()), tuple(smooth[keep].tolist()), source)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        starts, factors = np.asarray(self.starts, float), np.asarray(self.factors, float)
        work_starts = np.concatenate([[0.0], np.cumsum(np.diff(starts) / factors[:-1])])
        return starts, factors, work_starts

    def to_work(self, wall_s: np.ndarray) -> np.ndarray:
        """Work time of wall times (>= 0)."""
        starts, factors, work = self._arrays()
        t = np.asarray(wall_s, float)
        k = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(starts) - 1)
        return work[k] + (t - starts[k]) / factors[k]

    def to_wall(self, work_s: np.ndarray) -> np.ndarray:
        """Wall time of work times (the inverse of ``to_work``); NaN stays NaN."""
        starts, factors, work = self._arrays()
        tau = np.asarray(work_s, float)
        k = np.clip(np.searchsorted(work, np.nan_to_num(tau), side="right") - 1, 0,
                    len(starts) - 1)
        return starts[k] + (tau - work[k]) * factors[k]

    def mean_factor(self, until_s: float) -> float:
        """The factor's time average over wall seconds [0, until_s]."""
        if not until_s > 0:
            return float(self.factors[0])
        return float(until_s / self.to_work(np.array([until_s]))[0])

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "starts_s": list(self.starts),
                "factors": list(self.factors)}


def _retimed(steps: StepLog, speed: SpeedProfile) -> StepLog:
    ints, times = steps.columns()
    start = speed.to_wall(times[:, 0])
    end = speed.to_wall(times[:, 0] + times[:, 1])
    out = StepLog()
    out.add_columns(ints, np.stack([start, end - start], axis=1))
    return out


def to_wall_time(result: SimulationResult, trace: Trace, speed: SpeedProfile) -> SimulationResult:
    """A result simulated over the work-time trace, in wall time: arrivals exactly the
    trace's, every other time through ``speed.to_wall`` (its requests are changed in place)."""
    arrival = dict(zip(trace.column("request_id").tolist(),
                       trace.column("arrival_s").tolist()))
    for r in result.requests:
        r.arrival_s = arrival[r.request_id]
        for name in ("admitted_s", "first_token_s", "finish_s"):
            value = getattr(r, name)
            if value is not None:
                setattr(r, name, float(speed.to_wall(np.array([value]))[0]))
    return SimulationResult(result.requests, _retimed(result.steps, speed), result.layout,
                            result.num_pages, result.stats)


def work_time_trace(trace: Trace, speed: SpeedProfile) -> Trace:
    """``trace`` with its arrivals in the machine's work time."""
    requests = trace.requests.assign(arrival_s=speed.to_work(trace.column("arrival_s")))
    return Trace(requests, trace.adapters, trace.meta)

