"""Length models: inclusive uniform ranges, lognormal against scipy, joint resampling."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from manylora.traces.azure_source import load_azure
from manylora.traces.errors import TraceConfigError
from manylora.traces.lengths import (LENGTHS, LognormalLengths, ResampledLengths,
                                     UniformLengths)


def test_uniform_ranges_are_inclusive_and_uniform():
    prompt, output = UniformLengths((1, 4), (7, 7)).sample(np.random.default_rng(0), 8000)
    assert set(prompt.tolist()) == {1, 2, 3, 4}
    assert set(output.tolist()) == {7}
    assert stats.chisquare(np.bincount(prompt)[1:]).pvalue > 0.01
    assert prompt.dtype == np.int64 and output.dtype == np.int64


def test_lognormal_matches_median_and_sigma():
    model = LognormalLengths(prompt_median=1000, prompt_sigma=0.5, output_median=2000,
                             output_sigma=0.25, input_range=(1, 10**7), output_range=(1, 10**7))
    prompt, output = model.sample(np.random.default_rng(1), 5000)
    # Rounding to whole tokens is negligible at these lengths.
    assert stats.kstest(np.log(prompt), stats.norm(np.log(1000), 0.5).cdf).pvalue > 0.01
    assert stats.kstest(np.log(output), stats.norm(np.log(2000), 0.25).cdf).pvalue > 0.01


def test_lognormal_is_clipped_to_ranges():
    model = LognormalLengths(prompt_median=100, prompt_sigma=2.0, input_range=(50, 60))
    prompt, output = model.sample(np.random.default_rng(2), 2000)
    assert prompt.min() == 50 and prompt.max() == 60
    assert output.min() >= 1


def test_resample_draws_real_pairs_jointly():
    table = load_azure("azure-code")
    real = set(zip(table.prompt_len.tolist(), table.output_len.tolist()))
    prompt, output = ResampledLengths("azure-code").sample(np.random.default_rng(3), 5000)
    assert set(zip(prompt.tolist(), output.tolist())) <= real
    # Joint draws keep the source's prompt/output dependence (independent draws would not).
    source_rho = stats.spearmanr(table.prompt_len, table.output_len).statistic
    drawn_rho = stats.spearmanr(prompt, output).statistic
    assert abs(drawn_rho - source_rho) < 0.05
    # And the marginals follow the source (two-sample KS).
    assert stats.ks_2samp(prompt, table.prompt_len).pvalue > 0.01


def test_resample_ranges_filter_pairs():
    model = ResampledLengths("azure-conv", input_range=(100, 500), output_range=(1, 50))
    prompt, output = model.sample(np.random.default_rng(4), 1000)
    assert prompt.min() >= 100 and prompt.max() <= 500 and output.max() <= 50
    with pytest.raises(TraceConfigError, match="no request"):
        ResampledLengths("azure-conv", input_range=(1, 1)).sample(np.random.default_rng(), 1)


@pytest.mark.parametrize("name", LENGTHS.names())
def test_first_requests_keep_their_lengths_whatever_the_count(name):
    model = LENGTHS.get(name)()
    short = model.sample(np.random.default_rng(5), 100)
    longer = model.sample(np.random.default_rng(5), 5000)
    assert np.array_equal(short[0], longer[0][:100]) and np.array_equal(short[1], longer[1][:100])


@pytest.mark.parametrize("make, field", [
    (lambda: UniformLengths((10, 5), (1, 2)), "input_range"),
    (lambda: UniformLengths((1, 2), (0, 5)), "output_range"),
    (lambda: UniformLengths((1.5, 2), (1, 2)), "input_range"),
    (lambda: LognormalLengths(prompt_median=0.5), "prompt_median"),
    (lambda: LognormalLengths(output_sigma=-1.0), "output_sigma"),
    (lambda: ResampledLengths(""), "source"),
])
def test_bad_parameters_name_the_field(make, field):
    with pytest.raises(TraceConfigError, match=field):
        make()
