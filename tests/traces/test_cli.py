"""The ``manylora trace`` commands end to end: defaults, every model by name, import, describe."""
from __future__ import annotations

import json

import pytest

from manylora.traces import ARRIVALS, LENGTHS, POPULARITY, read_trace
from manylora.traces.cli import ARRIVAL_BUILDERS, LENGTH_BUILDERS, POPULARITY_BUILDERS


def test_generate_with_no_arguments_uses_built_in_defaults(tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli("trace", "generate")
    assert status == 0, err
    trace = read_trace(tmp_path / "out" / "trace")
    assert out == f"wrote {trace.num_requests} requests over 200 adapters to out/trace\n"
    params = trace.meta["params"]
    assert params["arrivals"] == {"name": "gamma", "rate": 2.0, "cv": 1.0}
    assert params["duration_s"] == 300.0 and trace.meta["seed"] == 0
    assert 500 < trace.num_requests < 700  # Poisson(600)
    status, out, _ = run_cli("trace", "describe", "out/trace")
    assert status == 0 and f"requests             {trace.num_requests}" in out


def test_every_registered_model_is_reachable_from_the_command_line():
    assert set(ARRIVAL_BUILDERS) == set(ARRIVALS.names())
    assert set(POPULARITY_BUILDERS) == set(POPULARITY.names())
    assert set(LENGTH_BUILDERS) == set(LENGTHS.names())


@pytest.mark.parametrize("args, check", [
    (["--arrivals", "poisson", "--rate", "5", "--num-requests", "321"],
     lambda t: t.num_requests == 321 and t.meta["params"]["arrivals"]["name"] == "poisson"),
    (["--arrivals", "schedule", "--rate-schedule", "0:10,20:0,40:5", "--duration", "60"],
     lambda t: not ((t.column("arrival_s") >= 20) & (t.column("arrival_s") < 40)).any()),
    (["--arrivals", "bursts", "--burst", "2", "8", "--rate", "30", "--duration", "100"],
     lambda t: ((t.column("arrival_s") % 10) < 2).all()),
    (["--lengths", "lognormal", "--prompt-lognormal", "100", "0.5", "--input-range", "50", "150"],
     lambda t: t.column("prompt_len").min() >= 50 and t.column("prompt_len").max() <= 150),
    (["--lengths", "resample", "--length-source", "azure-code", "--output-range", "1", "20"],
     lambda t: t.column("output_len").max() <= 20),
    (["--popularity", "zipf", "--alpha", "1.5", "--num-adapters", "40"],
     lambda t: t.column("adapter_id").max() < 40 and t.num_adapters == 40),
    (["--ranks", "8:0.5,128:0.5", "--lora-alpha", "32", "--targets", "q_proj;down"],
     lambda t: set(t.adapters["rank"]) == {8, 128} and set(t.adapters["alpha"]) == {32.0}
     and set(t.adapters["targets"]) == {"q;down"}),
    (["--ranks", "4,8", "--rank-mode", "draw", "--lora-alpha", "1.5x"],
     lambda t: (t.adapters["alpha"] == 1.5 * t.adapters["rank"]).all()),
])
def test_generate_options(tmp_path, run_cli, args, check):
    status, _, err = run_cli("trace", "generate", "-o", tmp_path / "t", "--quiet", *args)
    assert status == 0, err
    assert check(read_trace(tmp_path / "t"))


def test_import_azure_and_describe_json(tmp_path, run_cli):
    status, out, err = run_cli("trace", "import-azure", "azure-code", "--window", "0", "600",
                               "--rate-scale", "2", "--num-adapters", "20", "--popularity",
                               "zipf", "-o", tmp_path / "az")
    assert status == 0, err
    assert "lengths of 0 raised to 1" in out
    status, out, _ = run_cli("trace", "describe", tmp_path / "az", "--json", "--top", "3")
    summary = json.loads(out)
    trace = read_trace(tmp_path / "az")
    assert summary["requests"] == trace.num_requests
    assert summary["generator"] == "import-azure"
    assert summary["duration_s"] < 300.0  # 600 s window at twice the rate
    assert len(summary["top_adapters"]) == 3 and summary["top_adapters"][0]["adapter_id"] == 0


def test_help_works(run_cli):
    for command in (["trace", "--help"], ["trace", "generate", "--help"],
                    ["trace", "import-azure", "--help"], ["trace", "describe", "--help"]):
        status, out, _ = run_cli(*command)
        assert status == 0 and "usage: manylora trace" in out
