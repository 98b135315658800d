"""Adapter popularity laws against their theoretical shares (scipy chi-square)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from manylora.traces.errors import TraceConfigError
from manylora.traces.popularity import (POPULARITY, SLoRAPopularity, UniformPopularity,
                                        ZipfPopularity)

from .conftest import chi_square_bins

N_REQUESTS = 20_000


def chi_square_pvalue(ids: np.ndarray, probabilities: np.ndarray) -> float:
    observed = np.bincount(ids, minlength=len(probabilities))
    obs, exp = chi_square_bins(observed, probabilities * len(ids))
    return stats.chisquare(obs, exp).pvalue


@pytest.mark.parametrize("alpha, n", [(0.1, 100), (0.5, 1000), (1.0, 200), (2.0, 50)])
def test_slora_shares_match_theory(alpha, n):
    law = SLoRAPopularity(alpha)
    ids = law.sample(np.random.default_rng(11), N_REQUESTS, n)
    assert ids.min() >= 0 and ids.max() < n
    # P(i) = ((i+1)/n)^alpha - (i/n)^alpha, written out here rather than taken from the law.
    theory = ((np.arange(n) + 1) / n) ** alpha - (np.arange(n) / n) ** alpha
    np.testing.assert_allclose(law.probabilities(n), theory, rtol=1e-12)
    assert chi_square_pvalue(ids, theory) > 0.01
    # Power: a 15% different alpha is rejected.
    other = SLoRAPopularity(alpha * 1.15).probabilities(n)
    assert chi_square_pvalue(ids, other) < 1e-3


def test_slora_is_exactly_the_s_lora_rule():
    n, alpha = 300, 0.3
    ids = SLoRAPopularity(alpha).sample(np.random.default_rng(5), 1000, n)
    expected = (np.random.default_rng(5).power(alpha, 1000) * n).astype(int)
    assert np.array_equal(ids, expected)


def test_slora_alpha_one_is_uniform():
    np.testing.assert_allclose(SLoRAPopularity(1.0).probabilities(64), np.full(64, 1 / 64))


@pytest.mark.parametrize("exponent, n", [(0.8, 1000), (1.0, 100), (1.5, 5000)])
def test_zipf_shares_match_theory(exponent, n):
    law = ZipfPopularity(exponent)
    ids = law.sample(np.random.default_rng(12), N_REQUESTS, n)
    weights = 1.0 / (np.arange(n) + 1.0) ** exponent
    theory = weights / weights.sum()
    np.testing.assert_allclose(law.probabilities(n), theory, rtol=1e-12)
    assert chi_square_pvalue(ids, theory) > 0.01
    assert chi_square_pvalue(ids, ZipfPopularity(exponent * 1.1).probabilities(n)) < 1e-3


def test_uniform_shares():
    ids = UniformPopularity().sample(np.random.default_rng(13), N_REQUESTS, 300)
    assert chi_square_pvalue(ids, np.full(300, 1 / 300)) > 0.01


def test_sampling_is_prefix_stable():
    for name in POPULARITY.names():
        law = POPULARITY.get(name)()
        short = law.sample(np.random.default_rng(3), 100, 50)
        longer = law.sample(np.random.default_rng(3), 10_000, 50)
        assert np.array_equal(short, longer[:100]), name


def test_registry_round_trip_and_errors():
    law = ZipfPopularity(1.3)
    assert POPULARITY.from_dict(POPULARITY.to_dict(law)) == law
    with pytest.raises(TraceConfigError, match="unknown popularity 'pareto'"):
        POPULARITY.get("pareto")
    with pytest.raises(TraceConfigError, match="alpha"):
        SLoRAPopularity(0.0)
    with pytest.raises(TraceConfigError, match="exponent"):
        ZipfPopularity(-1.0)
