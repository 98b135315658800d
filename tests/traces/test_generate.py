"""generate_trace: separate seeded streams, byte-identical output, measured rate, config
round trip through meta.json."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from manylora.traces import (BurstArrivals, GammaArrivals, LognormalLengths, TraceConfig,
                             TraceConfigError, ZipfPopularity, generate_trace, read_trace,
                             write_trace)
from manylora.traces.generate import STREAMS, streams


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_defaults_are_the_documented_ones():
    config = TraceConfig()
    assert (config.num_adapters, config.duration_s, config.seed) == (200, 300.0, 0)
    assert config.arrivals == GammaArrivals(rate=2.0, cv=1.0)
    assert config.lengths.input_range == (8, 512) and config.lengths.output_range == (8, 512)
    assert config.catalog.ranks.ranks == (8, 16, 32, 64)


def test_rate_change_leaves_lengths_and_adapters_unchanged():
    slow = generate_trace(TraceConfig(arrivals=GammaArrivals(rate=2.0), duration_s=200.0))
    fast = generate_trace(TraceConfig(arrivals=GammaArrivals(rate=7.0, cv=3.0),
                                      duration_s=200.0))
    n = min(slow.num_requests, fast.num_requests)
    assert fast.num_requests > 2 * slow.num_requests
    for column in ("adapter_id", "prompt_len", "output_len"):
        assert np.array_equal(slow.column(column)[:n], fast.column(column)[:n]), column
    assert not np.array_equal(slow.column("arrival_s")[:n], fast.column("arrival_s")[:n])
    assert slow.adapters.equals(fast.adapters)


def test_each_stream_only_moves_its_own_columns():
    base = TraceConfig(num_requests=3000, duration_s=None, seed=4)
    other_lengths = generate_trace(dataclasses.replace(base, lengths=LognormalLengths()))
    other_popularity = generate_trace(dataclasses.replace(base,
                                                          popularity=ZipfPopularity(1.2)))
    trace = generate_trace(base)
    assert np.array_equal(trace.column("arrival_s"), other_lengths.column("arrival_s"))
    assert np.array_equal(trace.column("adapter_id"), other_lengths.column("adapter_id"))
    assert np.array_equal(trace.column("prompt_len"), other_popularity.column("prompt_len"))
    assert np.array_equal(trace.column("arrival_s"), other_popularity.column("arrival_s"))
    assert STREAMS == ("arrivals", "adapters", "lengths", "catalog")


def test_streams_follow_seed_sequence_spawn_order():
    children = np.random.SeedSequence(9).spawn(4)
    for (name, rng), child in zip(streams(9).items(), children):
        assert rng.random() == np.random.default_rng(child).random(), name


def test_same_seed_gives_byte_identical_folders(tmp_path):
    config = TraceConfig(arrivals=BurstArrivals(on_s=5, off_s=5, on_rate=20.0, cv=2.0),
                         duration_s=120.0, seed=7)
    a = folder_bytes(write_trace(generate_trace(config), tmp_path / "a"))
    b = folder_bytes(write_trace(generate_trace(config), tmp_path / "b"))
    assert a == b and set(a) == {"requests.csv", "adapters.csv", "meta.json"}
    c = folder_bytes(write_trace(generate_trace(dataclasses.replace(config, seed=8)),
                                 tmp_path / "c"))
    assert c["requests.csv"] != a["requests.csv"]


@pytest.mark.parametrize("cv", [0.5, 1.0, 2.0, 4.0])
def test_measured_rate_of_a_written_trace(tmp_path, cv):
    config = TraceConfig(arrivals=GammaArrivals(rate=4.0, cv=cv), num_requests=20_000,
                         duration_s=None, seed=1)
    trace = read_trace(write_trace(generate_trace(config), tmp_path / "t"))
    arrival = trace.column("arrival_s")
    assert trace.num_requests == 20_000
    assert abs((len(arrival) - 1) / (arrival[-1] - arrival[0]) / 4.0 - 1) < 0.05
    gaps = np.diff(arrival)
    assert abs(gaps.std() / gaps.mean() / cv - 1) < 0.1


def test_config_round_trips_through_meta(tmp_path):
    config = TraceConfig(num_adapters=17, arrivals=BurstArrivals(2, 3, 9.0, 1.0, 1.5),
                         popularity=ZipfPopularity(0.9), lengths=LognormalLengths(),
                         num_requests=500, duration_s=None, seed=3)
    trace = read_trace(write_trace(generate_trace(config), tmp_path / "t"))
    assert trace.meta["generator"] == "manylora.traces.generate"
    assert TraceConfig.from_meta(trace.meta) == config
    assert generate_trace(TraceConfig.from_meta(trace.meta)).same_as(trace)


def test_arrivals_are_whole_microseconds():
    trace = generate_trace(TraceConfig(duration_s=50.0))
    micros = trace.column("arrival_s") * 1e6
    assert np.all(np.abs(micros - np.round(micros)) < 1e-6)


@pytest.mark.parametrize("kwargs, field", [
    ({"num_adapters": 0}, "num_adapters"),
    ({"duration_s": -1.0}, "duration_s"),
    ({"duration_s": None}, "exactly one"),
    ({"num_requests": 10}, "exactly one"),
    ({"num_requests": -1, "duration_s": None}, "num_requests"),
    ({"seed": -1}, "seed"),
    ({"arrivals": "gamma"}, "arrivals"),
])
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(TraceConfigError, match=field):
        TraceConfig(**kwargs)
