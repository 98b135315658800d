"""Goodput over a rate sweep, against crossings computed by hand."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from manylora.analysis.goodput import goodput, goodput_table


def test_linear_crossing():
    # last point >= 0.9 is rate 2 (0.95); next is 0.85: 2 + 0.05 / 0.10 * 1
    assert goodput([1, 2, 3, 4], [1.0, 0.95, 0.85, 0.5]) == pytest.approx(2.5)
    assert goodput([1, 2, 3, 4], [1.0, 0.95, 0.85, 0.5], interpolation="none") == 2


def test_non_monotone_curve_uses_highest_rate_above_target():
    assert goodput([1, 2, 3, 4], [1.0, 0.8, 0.95, 0.5]) == pytest.approx(3 + 0.05 / 0.45)


def test_edges():
    assert goodput([1, 2], [0.99, 0.95]) == 2          # sweep never left the SLO region
    assert math.isnan(goodput([1, 2], [0.5, 0.1]))
    assert math.isnan(goodput([], []))
    assert goodput([1, 2], [0.9, 0.5]) == 1            # exactly on the target counts
    with pytest.raises(ValueError, match="interpolation 'cubic'"):
        goodput([1], [1], interpolation="cubic")
    with pytest.raises(ValueError, match="target"):
        goodput([1], [1], target=0)
    with pytest.raises(ValueError, match="rates must be > 0"):
        goodput([0, 1], [1, 1])


def test_seeds_averaged_and_grouped():
    sweep = pd.DataFrame({
        "policy": ["fcfs"] * 4 + ["abort"] * 2,
        "rate": [1, 2, 2, 3, 1, 2],
        "attainment_slora": [1.0, 0.9, 1.0, 0.7, 0.8, 0.6],
    })
    table = goodput_table(sweep, by=["policy"]).set_index("policy")
    # fcfs: rate 2 averages to 0.95, then 0.7 at 3: 2 + 0.05 / 0.25
    assert table.loc["fcfs", "goodput_rps"] == pytest.approx(2.2)
    assert math.isnan(table.loc["abort", "goodput_rps"])
    with pytest.raises(ValueError, match="no column 'cv'"):
        goodput_table(sweep, by=["cv"])
