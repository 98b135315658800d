"""describe() on traces whose statistics are known by construction."""
from __future__ import annotations

import numpy as np
import pandas as pd

from manylora.traces import Trace, TraceConfig, GammaArrivals, describe, generate_trace
from manylora.traces.describe import format_description


def test_describe_known_trace():
    requests = pd.DataFrame({"request_id": range(5), "arrival_s": [1.0, 2.0, 3.0, 4.0, 5.0],
                             "adapter_id": [3, 3, 3, -1, 1], "prompt_len": [10, 20, 30, 40, 50],
                             "output_len": [1, 1, 1, 1, 100]})
    adapters = pd.DataFrame({"adapter_id": [1, 3, 4], "rank": [8, 8, 64]})
    summary = describe(Trace(requests, adapters, {"generator": "hand"}), top=2)
    assert summary["requests"] == 5 and summary["duration_s"] == 5.0
    assert summary["rate_per_s"] == 1.0 and summary["interarrival_cv"] == 0.0
    assert summary["adapters_used"] == 2 and summary["adapters_in_catalog"] == 3
    assert summary["base_model_requests"] == 1
    assert summary["top_adapters"] == [{"adapter_id": 3, "requests": 3, "share": 0.6},
                                       {"adapter_id": 1, "requests": 1, "share": 0.2}]
    assert summary["catalog_ranks"] == {"8": 2, "64": 1}
    assert summary["prompt_len"]["p50"] == 30.0 and summary["output_len"]["max"] == 100
    text = format_description(summary)
    assert "3 (60%), 1 (20%)" in text and "1 base-model requests" in text


def test_describe_measures_rate_and_cv_of_generated_trace():
    trace = generate_trace(TraceConfig(arrivals=GammaArrivals(rate=10.0, cv=2.0),
                                       num_requests=20_000, duration_s=None))
    summary = describe(trace)
    assert abs(summary["rate_per_s"] / 10.0 - 1) < 0.05
    assert abs(summary["interarrival_cv"] / 2.0 - 1) < 0.1


def test_describe_empty_trace():
    empty = Trace(pd.DataFrame({c: np.zeros(0, dtype=np.int64) for c in
                                ("request_id", "arrival_s", "adapter_id", "prompt_len",
                                 "output_len")}),
                  pd.DataFrame({"adapter_id": [0], "rank": [8]}), {"generator": "none"})
    summary = describe(empty)
    assert summary["requests"] == 0 and summary["rate_per_s"] is None
    assert "n/a" in format_description(summary)
