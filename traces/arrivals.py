"""Arrival processes: when requests arrive, as a registry of small frozen configs.

- ``poisson``: exponential gaps at ``rate``.
- ``gamma``: Gamma gaps with shape ``1/cv^2`` and scale ``cv^2/rate`` (S-LoRA, AlpaServe), so
  the mean gap is ``1/rate`` and the gaps' coefficient of variation is ``cv``.
- ``schedule``: a piecewise-constant rate given as ``(start_s, rate)`` pieces.
- ``bursts``: on/off periods, ``on_rate`` for ``on_s`` seconds then ``off_rate`` for ``off_s``.

The time-varying ones use time rescaling: a unit-rate renewal process with Gamma(cv) gaps is
drawn in "operational time" ``s`` and mapped to real time through the inverse of the
cumulative rate ``L(t)``, the integral of the rate up to ``t``. With ``cv = 1`` this is exactly
the non-homogeneous Poisson process; with other ``cv`` every stretch of constant rate is a Gamma
renewal process of that rate and cv.

As in S-LoRA, the first arrival comes one gap after time 0. With ``num_requests`` exactly that
many arrivals are drawn (S-LoRA draws ``int(rate * duration)``); with ``duration_s`` the process
is cut at ``duration_s``, so the count is itself random.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np

from manylora.traces.errors import TraceConfigError, check
from manylora.traces.registry import Registry


class ArrivalProcess(ABC):
    """Draws non-decreasing arrival times in seconds."""

    name: ClassVar[str]

    def sample(self, rng: np.random.Generator, *, num_requests: int | None = None,
               duration_s: float | None = None) -> np.ndarray:
        """Arrival times, float64 ``[n]``: exactly ``num_requests`` of them, or all in
        ``[0, duration_s)``. Give exactly one of the two."""
        if (num_requests is None) == (duration_s is None):
            raise TraceConfigError("give exactly one of num_requests and duration_s")
        if num_requests is not None:
            check(num_requests >= 0, type(self).__name__, "num_requests", num_requests, ">= 0")
            return self._times(np.cumsum(self._gaps(rng, num_requests)))
        check(duration_s > 0 and math.isfinite(duration_s), type(self).__name__, "duration_s",
              duration_s, "a positive finite number")
        horizon, expected = self._horizon(duration_s)
        points = _points_until(lambda k: self._gaps(rng, k), horizon, expected)
        # Points past the horizon may lie beyond a schedule's end (rate 0 for good).
        times = self._times(points[points < horizon])
        return times[times < duration_s]

    @abstractmethod
    def _gaps(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` gaps in the process's own time (real seconds, or operational time)."""

    @abstractmethod
    def _horizon(self, duration_s: float) -> tuple[float, float]:
        """How far the summed gaps must reach to cover ``duration_s`` real seconds, and the
        expected number of gaps that takes."""

    @abstractmethod
    def _times(self, points: np.ndarray) -> np.ndarray:
        """Map summed gaps to real arrival times."""


def _points_until(draw: Callable[[int], np.ndarray], horizon: float,
                  expected: float) -> np.ndarray:
    """Cumulative gaps, drawn in chunks until they pass ``horizon``; the first chunk is a
    little over the ``expected`` count so that one draw usually suffices."""
    chunks: list[np.ndarray] = []
    total = 0.0
    size = max(1024, int(expected * 1.05) + 16)
    while total < horizon:
        points = np.cumsum(draw(size)) + total
        chunks.append(points)
        total = float(points[-1])
        size = max(1024, size // 4)
    return np.concatenate(chunks) if chunks else np.zeros(0)


def _check_rate_cv(owner: str, rate: float, cv: float) -> None:
    check(rate > 0 and math.isfinite(rate), owner, "rate", rate, "a positive finite number")
    check(cv > 0 and math.isfinite(cv), owner, "cv", cv, "a positive finite number")


class _ConstantRate(ArrivalProcess):
    rate: float

    def _horizon(self, duration_s: float) -> tuple[float, float]:
        return duration_s, duration_s * self.rate

    def _times(self, points: np.ndarray) -> np.ndarray:
        return points


ARRIVALS: Registry[ArrivalProcess] = Registry("arrival process")


@ARRIVALS.register
@dataclass(frozen=True)
class PoissonArrivals(_ConstantRate):
    """Poisson arrivals: exponential gaps with mean ``1/rate``."""

    name: ClassVar[str] = "poisson"
    rate: float = 1.0

    def __post_init__(self) -> None:
        _check_rate_cv("PoissonArrivals", self.rate, 1.0)

    def _gaps(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.exponential(1.0 / self.rate, n)


@ARRIVALS.register
@dataclass(frozen=True)
class GammaArrivals(_ConstantRate):
    """Gamma renewal arrivals with mean rate ``rate`` and gap coefficient of variation ``cv``."""

    name: ClassVar[str] = "gamma"
    rate: float = 1.0
    cv: float = 1.0

    def __post_init__(self) -> None:
        _check_rate_cv("GammaArrivals", self.rate, self.cv)

    def _gaps(self, rng: np.random.Generator, n: int) -> np.ndarray:
        cv2 = self.cv * self.cv
        return rng.gamma(1.0 / cv2, cv2 / self.rate, n)


@dataclass(frozen=True)
class PiecewiseRate:
    """A piecewise-constant rate: ``rates[k]`` from ``starts[k]`` to the next start; with a
    ``period`` the pattern repeats every ``period`` seconds, otherwise the last piece lasts
    for ever."""

    starts: np.ndarray  # [P] seconds, starts[0] == 0, strictly increasing
    rates: np.ndarray   # [P] arrivals per second, >= 0
    period: float | None

    def _ends(self) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative rate at the start and at the end of each piece (within one period)."""
        begin = np.concatenate([[0.0], np.cumsum(self.rates[:-1] * np.diff(self.starts))])
        if self.period is not None:
            last = self.rates[-1] * (self.period - self.starts[-1])
        else:
            last = np.inf if self.rates[-1] > 0 else 0.0
        return begin, np.append(begin[1:], begin[-1] + last)

    def cumulative(self, t: float) -> float:
        """``L(t)``: expected arrivals (at cv 1) in ``[0, t)``."""
        begin, end = self._ends()
        whole_periods = 0.0
        if self.period is not None:
            cycles, t = divmod(t, self.period)
            whole_periods = cycles * end[-1]
        k = int(np.searchsorted(self.starts, t, side="right")) - 1
        return float(whole_periods + begin[k] + self.rates[k] * (t - self.starts[k]))

    def inverse(self, s: np.ndarray) -> np.ndarray:
        """Real times ``t`` with ``L(t) = s``, for sorted operational times ``s``."""
        begin, end = self._ends()
        cycles = np.zeros_like(s)
        if self.period is not None:
            cycles = np.floor(s / end[-1])
            s = np.clip(s - cycles * end[-1], 0.0, np.nextafter(end[-1], 0.0))
        # side="right" skips zero-rate pieces, whose start and end coincide.
        k = np.searchsorted(end, s, side="right")
        if len(k) and k[-1] >= len(end):
            raise TraceConfigError(
                f"the rate schedule falls to 0 for good after {end[-1]:.6g} expected arrivals; "
                "ask for fewer requests, a duration, or a positive final rate")
        times = (cycles * (self.period or 0.0) + self.starts[k]
                 + (s - begin[k]) / self.rates[k])
        # Rounding at piece and period boundaries must not reorder arrivals.
        return np.maximum.accumulate(times) if len(times) else times


class _Warped(ArrivalProcess):
    cv: float

    @abstractmethod
    def rate_function(self) -> PiecewiseRate:
        """The piecewise-constant rate this process follows."""

    def _gaps(self, rng: np.random.Generator, n: int) -> np.ndarray:
        cv2 = self.cv * self.cv
        return rng.gamma(1.0 / cv2, cv2, n)

    def _horizon(self, duration_s: float) -> tuple[float, float]:
        # Operational time runs at unit rate: the horizon is also the expected count.
        horizon = self.rate_function().cumulative(duration_s)
        return horizon, horizon

    def _times(self, points: np.ndarray) -> np.ndarray:
        return self.rate_function().inverse(points)


@ARRIVALS.register
@dataclass(frozen=True)
class ScheduleArrivals(_Warped):
    """A rate schedule: ``pieces`` are ``(start_s, rate)``, the first starting at 0; each rate
    holds until the next start, the last one for ever."""

    name: ClassVar[str] = "schedule"
    pieces: tuple[tuple[float, float], ...] = ((0.0, 1.0),)
    cv: float = 1.0

    def __post_init__(self) -> None:
        owner = "ScheduleArrivals"
        check(len(self.pieces) > 0 and all(len(p) == 2 for p in self.pieces), owner, "pieces",
              self.pieces, "a non-empty list of (start_s, rate) pairs")
        starts = [p[0] for p in self.pieces]
        rates = [p[1] for p in self.pieces]
        check(starts[0] == 0, owner, "pieces", self.pieces, "a schedule whose first start is 0")
        check(all(b > a for a, b in zip(starts, starts[1:])) and math.isfinite(starts[-1]),
              owner, "pieces", self.pieces, "pieces with strictly increasing finite starts")
        check(all(r >= 0 and math.isfinite(r) for r in rates) and max(rates) > 0, owner,
              "pieces", self.pieces, "finite rates >= 0, at least one of them > 0")
        _check_rate_cv(owner, 1.0, self.cv)

    def rate_function(self) -> PiecewiseRate:
        return PiecewiseRate(np.array([p[0] for p in self.pieces], dtype=np.float64),
                             np.array([p[1] for p in self.pieces], dtype=np.float64), None)


@ARRIVALS.register
@dataclass(frozen=True)
class BurstArrivals(_Warped):
    """On/off bursts: ``on_rate`` for ``on_s`` seconds, then ``off_rate`` for ``off_s``
    seconds, repeated; the trace starts in an on period."""

    name: ClassVar[str] = "bursts"
    on_s: float = 10.0
    off_s: float = 10.0
    on_rate: float = 1.0
    off_rate: float = 0.0
    cv: float = 1.0

    def __post_init__(self) -> None:
        owner = "BurstArrivals"
        for field in ("on_s", "off_s"):
            value = getattr(self, field)
            check(value > 0 and math.isfinite(value), owner, field, value,
                  "a positive finite number of seconds")
        _check_rate_cv(owner, self.on_rate, self.cv)
        check(self.off_rate >= 0 and math.isfinite(self.off_rate), owner, "off_rate",
              self.off_rate, "a finite rate >= 0")

    def rate_function(self) -> PiecewiseRate:
        return PiecewiseRate(np.array([0.0, self.on_s]),
                             np.array([self.on_rate, self.off_rate]), self.on_s + self.off_s)
