"""Azure trace import: real arrivals and lengths, windowing, rate scaling, zero lengths,
attribution shipped with the data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from manylora.traces import (AzureImportConfig, SLoRAPopularity, TraceError, import_azure,
                             read_trace, write_trace)
from manylora.traces.azure_source import AZURE_DATA_DIR, SHIPPED_SOURCES, load_azure


def raw_source(name: str) -> pd.DataFrame:
    """The shipped file read independently of the library."""
    frame = pd.read_csv(AZURE_DATA_DIR / SHIPPED_SOURCES[name])
    stamps = pd.to_datetime(frame["TIMESTAMP"], format="ISO8601")
    frame["offset_s"] = (stamps - stamps.min()).dt.total_seconds()
    return frame.sort_values("offset_s", kind="stable").reset_index(drop=True)


def test_shipped_files_carry_their_attribution():
    readme = (AZURE_DATA_DIR / "README.md").read_text()
    assert "CC-BY 4.0" in readme and "Splitwise" in readme and "ISCA 2024" in readme
    for file in SHIPPED_SOURCES.values():
        assert (AZURE_DATA_DIR / file).stat().st_size > 100_000


@pytest.mark.parametrize("name", list(SHIPPED_SOURCES))
def test_full_import_keeps_every_request(name):
    raw = raw_source(name)
    trace = import_azure(AzureImportConfig(name))
    assert trace.num_requests == len(raw)
    np.testing.assert_allclose(trace.column("arrival_s"), raw["offset_s"], atol=5e-7)
    assert np.array_equal(trace.column("prompt_len"), raw["ContextTokens"].to_numpy())
    assert np.array_equal(trace.column("output_len"), raw["GeneratedTokens"].to_numpy())
    assert trace.meta["source"] == name and trace.meta["source_requests"] == len(raw)
    assert "Splitwise" in trace.meta["attribution"]


def test_window_and_rate_scale():
    raw = raw_source("azure-conv")
    trace = import_azure(AzureImportConfig("azure-conv", window_s=(600.0, 1200.0),
                                           rate_scale=4.0))
    inside = raw[(raw["offset_s"] >= 600.0) & (raw["offset_s"] < 1200.0)]
    assert trace.num_requests == len(inside)
    expected = (inside["offset_s"] - inside["offset_s"].iloc[0]) / 4.0
    np.testing.assert_allclose(trace.column("arrival_s"), expected, atol=5e-7)
    assert trace.column("arrival_s")[0] == 0.0
    assert np.array_equal(trace.column("output_len"), inside["GeneratedTokens"].to_numpy())


def test_adapters_follow_the_popularity_law_and_seed():
    config = AzureImportConfig("azure-conv", num_adapters=50, popularity=SLoRAPopularity(0.4),
                               seed=3)
    trace = import_azure(config)
    observed = np.bincount(trace.column("adapter_id"), minlength=50)
    theory = SLoRAPopularity(0.4).probabilities(50) * trace.num_requests
    assert stats.chisquare(observed, theory).pvalue > 0.01
    assert import_azure(config).same_as(trace)


def test_same_import_same_bytes(tmp_path):
    config = AzureImportConfig("azure-code", window_s=(0.0, 300.0), seed=1)
    a = write_trace(import_azure(config), tmp_path / "a")
    b = write_trace(import_azure(config), tmp_path / "b")
    for file in ("requests.csv", "adapters.csv", "meta.json"):
        assert (a / file).read_bytes() == (b / file).read_bytes()
    assert read_trace(a).same_as(import_azure(config))


def test_zero_lengths_are_raised_and_counted_and_rows_sorted(tmp_path):
    source = tmp_path / "mine.csv"
    source.write_text("TIMESTAMP,ContextTokens,GeneratedTokens,Extra\n"
                      "2024-05-10 00:00:01.500000,0,12,a\n"
                      "2024-05-10 00:00:00.250000,30,0,b\n"
                      "2024-05-10 00:00:03.000000,0,0,c\n"
                      "2024-05-10 00:00:02.000000,1,1,d\n")
    trace = import_azure(AzureImportConfig(str(source), num_adapters=3))
    assert trace.column("arrival_s").tolist() == [0.0, 1.25, 1.75, 2.75]
    assert trace.column("prompt_len").tolist() == [30, 1, 1, 1]
    assert trace.column("output_len").tolist() == [1, 12, 1, 1]
    assert trace.meta["zero_lengths_raised_to_1"] == {"prompt_len": 2, "output_len": 2}
    assert trace.meta["source_rows_out_of_time_order"] == 4
    assert trace.meta["source"] == "mine.csv" and len(trace.meta["source_sha256"]) == 64
    windowed = import_azure(AzureImportConfig(str(source), window_s=(1.0, 2.5)))
    assert windowed.meta["zero_lengths_raised_to_1"] == {"prompt_len": 1, "output_len": 0}


@pytest.mark.parametrize("text, expected", [
    ("TIMESTAMP,ContextTokens\n2024-01-01 00:00:00,5\n", "row 1: missing column 'GeneratedTokens'"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-01-01 00:00:00,5,5\nyesterday,5,5\n",
     "row 3, column TIMESTAMP: not a date and time, got 'yesterday'"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-01-01 00:00:00,-5,5\n",
     "row 2, column ContextTokens: must be >= 0, got -5"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n", "no requests"),
])
def test_bad_source_files(tmp_path, text, expected):
    source = tmp_path / "bad.csv"
    source.write_text(text)
    with pytest.raises(TraceError, match="bad.csv") as info:
        load_azure(str(source))
    assert expected in str(info.value)
