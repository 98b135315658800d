"""Arrival processes against their distributions (scipy KS tests) and the rate schedule
against an independently written cumulative rate (time-rescaling theorem)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from manylora.traces.arrivals import (BurstArrivals, GammaArrivals, PoissonArrivals,
                                      ScheduleArrivals)
from manylora.traces.errors import TraceConfigError

N = 20_000


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def gaps_of(times: np.ndarray) -> np.ndarray:
    return np.diff(np.concatenate([[0.0], times]))


def gamma_fit_pvalue(gaps: np.ndarray, rate: float, cv: float, resolution: float) -> float:
    """p-value that ``gaps`` are Gamma(1/cv^2, cv^2/rate) gaps seen at ``resolution``.

    Recorded times cannot resolve gaps below their resolution (at cv 4 about 15% of Gamma
    gaps are under a microsecond), so the fit is tested in two parts: a binomial test of the
    share of gaps <= resolution, and a KS test of the others against the Gamma truncated
    there. The smaller p-value (Bonferroni-doubled) is returned."""
    law = stats.gamma(a=1 / cv**2, scale=cv**2 / rate)
    below = law.cdf(resolution)
    small = int((gaps <= resolution).sum())
    p_small = stats.binomtest(small, len(gaps), below).pvalue
    truncated = lambda x: (law.cdf(x) - below) / (1 - below)  # noqa: E731
    p_ks = stats.kstest(gaps[gaps > resolution], truncated).pvalue
    return min(1.0, 2 * min(p_small, p_ks))


@pytest.mark.parametrize("cv", [0.5, 1.0, 2.0, 4.0])
def test_gamma_gaps_follow_requested_gamma(cv):
    rate = 3.0
    times = GammaArrivals(rate=rate, cv=cv).sample(rng(1), num_requests=N)
    gaps = gaps_of(times)
    assert gamma_fit_pvalue(gaps, rate, cv, resolution=1e-6) > 0.01
    # The test has power: a 20% wrong cv is rejected.
    assert gamma_fit_pvalue(gaps, rate, 1.2 * cv, resolution=1e-6) < 1e-3
    assert len(times) == N and np.all(np.diff(times) >= 0)


@pytest.mark.parametrize("cv", [0.5, 1.0, 2.0, 4.0])
def test_measured_rate_within_5_percent_at_20k(cv):
    rate = 5.0
    times = GammaArrivals(rate=rate, cv=cv).sample(rng(2), num_requests=N)
    measured = N / times[-1]
    assert abs(measured / rate - 1) < 0.05
    # With a duration instead of a count the number of arrivals carries the rate.
    times = GammaArrivals(rate=rate, cv=cv).sample(rng(3), duration_s=N / rate)
    assert abs(len(times) / N - 1) < 0.05
    assert times.max() < N / rate


def test_poisson_is_exponential():
    gaps = gaps_of(PoissonArrivals(rate=0.5).sample(rng(4), num_requests=N))
    assert stats.kstest(gaps, stats.expon(scale=2.0).cdf).pvalue > 0.01


def test_duration_sample_is_prefix_of_longer_one():
    short = GammaArrivals(rate=2.0, cv=2.0).sample(rng(5), duration_s=100.0)
    longer = GammaArrivals(rate=2.0, cv=2.0).sample(rng(5), duration_s=10_000.0)
    np.testing.assert_allclose(short, longer[:len(short)], rtol=1e-12)


def schedule_cumulative(t: np.ndarray, starts: list[float], rates: list[float]) -> np.ndarray:
    """L(t) written independently of the library: integral of the step rate."""
    out = np.zeros_like(t)
    ends = starts[1:] + [np.inf]
    for a, b, r in zip(starts, ends, rates):
        out += r * np.clip(np.minimum(t, b) - a, 0.0, None)
    return out


@pytest.mark.parametrize("cv", [1.0, 2.0])
def test_schedule_time_rescaled_gaps(cv):
    starts, rates = [0.0, 100.0, 200.0, 260.0], [2.0, 0.0, 10.0, 0.5]
    process = ScheduleArrivals(pieces=tuple(zip(starts, rates)), cv=cv)
    times = process.sample(rng(6), duration_s=2000.0)
    assert not np.any((times >= 100.0) & (times < 200.0))  # the zero-rate piece
    rescaled = gaps_of(schedule_cumulative(times, starts, rates))
    # Time rescaling: in operational time the gaps are unit-rate Gamma(cv) gaps.
    assert stats.kstest(rescaled, stats.gamma(a=1 / cv**2, scale=cv**2).cdf).pvalue > 0.01
    expected = schedule_cumulative(np.array([2000.0]), starts, rates)[0]
    assert abs(len(times) - expected) < 4 * cv * np.sqrt(expected)


def test_schedule_counts_per_piece_are_poisson():
    starts, rates = [0.0, 50.0, 80.0], [4.0, 20.0, 1.0]
    counts = []
    for seed in range(200):
        times = ScheduleArrivals(tuple(zip(starts, rates))).sample(rng(seed), duration_s=100.0)
        counts.append(np.histogram(times, bins=[0, 50, 80, 100])[0])
    counts = np.array(counts)  # [seeds, pieces]
    means = np.array([4.0 * 50, 20.0 * 30, 1.0 * 20])
    # Poisson counts: mean equals variance equals rate * length in every piece.
    z = (counts.mean(axis=0) - means) / np.sqrt(means / len(counts))
    assert np.all(np.abs(z) < 4)
    assert np.all(np.abs(counts.var(axis=0, ddof=1) / means - 1) < 0.3)


def test_bursts_only_in_on_periods_and_rescaled_exponential():
    on, off, rate = 3.0, 7.0, 40.0
    times = BurstArrivals(on_s=on, off_s=off, on_rate=rate).sample(rng(7), num_requests=N)
    assert np.all(times % (on + off) < on)
    operational = np.floor(times / (on + off)) * on * rate + (times % (on + off)) * rate
    assert stats.kstest(gaps_of(operational), stats.expon().cdf).pvalue > 0.01
    with_off = BurstArrivals(on, off, rate, off_rate=2.0).sample(rng(8), duration_s=5000.0)
    in_off = (with_off % (on + off)) >= on
    assert abs(in_off.sum() / (2.0 * off * 500) - 1) < 0.1


def test_schedule_that_ends_at_zero_cannot_supply_too_many_requests():
    process = ScheduleArrivals(((0.0, 1.0), (10.0, 0.0)))
    assert len(process.sample(rng(), duration_s=1000.0)) < 40
    with pytest.raises(TraceConfigError, match="falls to 0"):
        process.sample(rng(), num_requests=1000)


def test_same_seed_same_times_and_exact_count():
    a = GammaArrivals(2.0, 3.0).sample(rng(9), num_requests=1234)
    b = GammaArrivals(2.0, 3.0).sample(rng(9), num_requests=1234)
    assert len(a) == 1234 and np.array_equal(a, b)


@pytest.mark.parametrize("make, field", [
    (lambda: GammaArrivals(rate=0.0), "rate"),
    (lambda: GammaArrivals(rate=-1.0), "rate"),
    (lambda: GammaArrivals(rate=1.0, cv=0.0), "cv"),
    (lambda: PoissonArrivals(rate=float("inf")), "rate"),
    (lambda: ScheduleArrivals(((5.0, 1.0),)), "pieces"),
    (lambda: ScheduleArrivals(((0.0, 1.0), (0.0, 2.0))), "pieces"),
    (lambda: ScheduleArrivals(((0.0, -1.0),)), "pieces"),
    (lambda: ScheduleArrivals(((0.0, 0.0),)), "pieces"),
    (lambda: BurstArrivals(on_s=0.0), "on_s"),
    (lambda: BurstArrivals(off_rate=-1.0), "off_rate"),
])
def test_bad_parameters_name_the_field(make, field):
    with pytest.raises(TraceConfigError, match=field):
        make()


def test_count_or_duration_exactly_one():
    with pytest.raises(TraceConfigError, match="exactly one"):
        GammaArrivals().sample(rng(), num_requests=3, duration_s=1.0)
    with pytest.raises(TraceConfigError, match="exactly one"):
        GammaArrivals().sample(rng())
