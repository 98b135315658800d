"""Trace folders: exact round trip, atomic replacement, in-memory validation."""
from __future__ import annotations

import pandas as pd
import pytest

from manylora.traces import Trace, TraceConfig, TraceError, generate_trace, read_trace, write_trace
from manylora.traces import trace_io


def small_trace(**requests_overrides) -> Trace:
    requests = pd.DataFrame({"request_id": [0, 1, 2], "arrival_s": [0.0, 0.25, 1.000001],
                             "adapter_id": [1, -1, 0], "prompt_len": [5, 6, 7],
                             "output_len": [1, 2, 3], **requests_overrides})
    adapters = pd.DataFrame({"adapter_id": [0, 1], "rank": [4, 8], "alpha": [0.1, 12.5],
                             "targets": ["q;k;v;o", "down;q_proj"],
                             "path": ["adapters/a0", "/abs/with,comma"]})
    return Trace(requests, adapters, {"generator": "test", "nested": {"x": [1, 2]}})


def test_round_trip_is_exact(tmp_path):
    trace = small_trace()
    assert trace.adapters["targets"].tolist() == ["q;k;v;o", "q;down"]  # canonical order
    back = read_trace(write_trace(trace, tmp_path / "t"))
    assert back.same_as(trace)
    generated = generate_trace(TraceConfig(duration_s=100.0))
    assert read_trace(write_trace(generated, tmp_path / "g")).same_as(generated)


def test_requests_csv_format(tmp_path):
    folder = write_trace(small_trace(), tmp_path / "t")
    assert (folder / "requests.csv").read_text() == (
        "request_id,arrival_s,adapter_id,prompt_len,output_len\n"
        "0,0.000000,1,5,1\n1,0.250000,-1,6,2\n2,1.000001,0,7,3\n")
    assert (folder / "adapters.csv").read_text().splitlines()[2] == \
        '1,8,12.5,q;down,"/abs/with,comma"'


def test_replaces_an_existing_trace_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "t"
    write_trace(generate_trace(TraceConfig(duration_s=10.0, seed=1)), target)
    second = generate_trace(TraceConfig(duration_s=10.0, seed=2))
    write_trace(second, target)
    assert read_trace(target).same_as(second)
    assert [p.name for p in tmp_path.iterdir()] == ["t"]


def test_refuses_to_replace_a_folder_holding_other_files(tmp_path):
    target = tmp_path / "t"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(TraceError, match="notes.txt"):
        write_trace(small_trace(), target)
    assert (target / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]


def test_failed_write_keeps_the_old_trace(tmp_path, monkeypatch):
    target = tmp_path / "t"
    old = small_trace()
    write_trace(old, target)

    def broken(trace, out):
        raise OSError("disk full")
    monkeypatch.setattr(trace_io, "_write_adapters", broken)
    with pytest.raises(OSError, match="disk full"):
        write_trace(generate_trace(TraceConfig(duration_s=5.0)), target)
    assert read_trace(target).same_as(old)
    assert [p.name for p in tmp_path.iterdir()] == ["t"]


def test_in_memory_trace_is_validated_too():
    with pytest.raises(TraceError, match=r"requests.csv: row 3, column arrival_s"):
        small_trace(arrival_s=[0.0, -2.0, 1.0])
    with pytest.raises(TraceError, match=r"row 4, column adapter_id: no such adapter"):
        small_trace(adapter_id=[0, 1, 5])


def test_lenient_header_and_optional_adapter_columns(trace_folder):
    folder = trace_folder(
        requests="request_id, arrival_s, adapter_id, prompt_len, output_len\n0, 0.5, 0, 3, 4\n",
        adapters="adapter_id,rank\n0,16\n")
    trace = read_trace(folder)
    assert trace.adapters.iloc[0].to_dict() == {"adapter_id": 0, "rank": 16, "alpha": 16.0,
                                                "targets": "q;k;v;o"}
    assert trace.column("arrival_s").tolist() == [0.5]


def test_empty_trace_is_valid(trace_folder):
    trace = read_trace(trace_folder(requests="request_id,arrival_s,adapter_id,prompt_len,"
                                             "output_len\n"))
    assert trace.num_requests == 0 and trace.num_adapters == 2
