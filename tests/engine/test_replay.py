"""``manylora replay``: a 200-request, 100-adapter trace on CPU, every request accounted for,
the pool empty at the end; adapters without folders materialised or rejected with a reason."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from engine_cases import one_cpu_thread  # noqa: F401 (autouse fixture)
from engine_cases import write_checkpoint
from manylora.analysis.cli import main
from manylora.analysis.run_folder import read_run
from manylora.engine.make_tiny import adapter_config_json, write_adapter
from manylora.traces import (PoissonArrivals, TraceConfig, UniformLengths, generate_trace,
                             read_trace, write_trace)

TIME_SCALE = "20"  # trace seconds per wall second


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay")
    trace = generate_trace(TraceConfig(
        num_adapters=100, num_requests=200, duration_s=None,
        arrivals=PoissonArrivals(rate=10.0), lengths=UniformLengths((4, 24), (1, 12)), seed=5))
    write_trace(trace, root / "trace")
    model_dir, config = write_checkpoint(root, seed=2)
    rng = np.random.default_rng(0)
    for aid in range(10):  # ten adapters have folders; the rest come from the trace catalog
        write_adapter(root / "adapters" / str(aid), config,
                      adapter_config_json(8, 16.0, ["q", "k", "v", "o"]), rng)
    return root, model_dir, trace


def _replay(root, model_dir, out, *extra):
    return main(["replay", str(root / "trace"), "--model", str(model_dir), "--adapters",
                 str(root / "adapters"), "-o", str(out), "--time-scale", TIME_SCALE, "--quiet",
                 "--pool-pages", "60000", "--threads", "1", *extra])


def test_every_request_is_accounted_for_and_the_pool_ends_empty(setup, tmp_path):
    root, model_dir, trace = setup
    used = set(trace.column("adapter_id"))
    assert len(used) > 50  # the trace really spreads over many adapters
    assert _replay(root, model_dir, tmp_path / "run", "--materialize-missing-adapters") == 0
    run = read_run(tmp_path / "run")  # the analysis reader validates the folder
    requests = pd.read_csv(tmp_path / "run" / "requests.csv")
    assert requests["request_id"].tolist() == sorted(trace.column("request_id").tolist())
    assert (requests["status"] == "finished").all()
    assert (requests["output_tokens"] == requests["output_len"]).all()
    assert (requests["first_token_s"] >= requests["arrival_s"]).all()
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["source"] == "engine" and meta["trace"] == trace.meta
    assert meta["pool"]["free_pages_at_end"] == meta["pool"]["num_pages"] == 60000
    steps = pd.read_csv(tmp_path / "run" / "steps.csv")
    assert steps["prefill_requests"].sum() == 200
    assert steps["distinct_adapters"].max() > 1 and (steps["duration_s"] > 0).all()
    assert steps["adapter_loads"].sum() >= len(used - {-1})
    # steps run back to back tile the replay's time, as a simulator's do: each starts where
    # the one before ended (CSV rounding aside), or later after an idle wait, never earlier
    end = (steps["start_s"] + steps["duration_s"]).to_numpy()[:-1]
    gap = steps["start_s"].to_numpy()[1:] - end
    assert gap.min() > -2e-9 and (np.abs(gap) <= 2e-9).mean() > 0.5
    # a request's first token exists within its prefill step, and arrived before it began
    prefill = steps[steps["prefill_requests"] > 0]
    index = np.searchsorted(prefill["start_s"].to_numpy(), requests["first_token_s"]) - 1
    began = prefill["start_s"].to_numpy()[index]
    assert (requests["arrival_s"].to_numpy() <= began + 1e-6).all()
    assert (requests["first_token_s"].to_numpy()
            <= began + prefill["duration_s"].to_numpy()[index] + 1e-6).all()
    assert len(run.requests) == 200
    assert not list(tmp_path.glob(".manylora-adapters-*"))  # materialised copies cleaned up


def test_missing_and_broken_adapters_reject_only_their_requests(setup, tmp_path):
    root, model_dir, trace = setup
    # adapter 3's folder is replaced by a broken one named in the trace's path column
    shutil.copytree(root / "trace", tmp_path / "trace")
    adapters = pd.read_csv(tmp_path / "trace" / "adapters.csv")
    adapters["path"] = ""
    broken = tmp_path / "broken3"
    shutil.copytree(root / "adapters" / "3", broken)
    (broken / "adapter_model.safetensors").write_bytes(b"junk")
    adapters.loc[adapters["adapter_id"] == 3, "path"] = str(broken)
    adapters.to_csv(tmp_path / "trace" / "adapters.csv", index=False)
    read_trace(tmp_path / "trace")
    code = main(["replay", str(tmp_path / "trace"), "--model", str(model_dir), "--adapters",
                 str(root / "adapters"), "-o", str(tmp_path / "run"), "--time-scale",
                 TIME_SCALE, "--quiet", "--pool-pages", "60000", "--threads", "1"])
    assert code == 0
    requests = pd.read_csv(tmp_path / "run" / "requests.csv", keep_default_na=False)
    assert len(requests) == 200
    have_folder = requests["adapter_id"].between(0, 9) & (requests["adapter_id"] != 3)
    ok = have_folder | (requests["adapter_id"] == -1)
    assert (requests.loc[ok, "status"] == "finished").all()
    rejected = requests[~ok]
    assert (rejected["status"] == "rejected").all() and len(rejected) > 0
    on3 = rejected[rejected["adapter_id"] == 3]
    assert len(on3) and on3["reason"].str.contains(str(broken / "adapter_model.safetensors"),
                                                   regex=False).all()
    others = rejected[rejected["adapter_id"] != 3]
    assert others["reason"].str.contains("has no folder").all()
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["pool"]["free_pages_at_end"] == meta["pool"]["num_pages"]


def test_bad_inputs_are_one_line_errors(setup, tmp_path, capsys):
    root, model_dir, _ = setup
    assert main(["replay", str(tmp_path / "nope"), "--model", str(model_dir), "-o",
                 str(tmp_path / "run")]) == 2
    assert "no such trace folder" in capsys.readouterr().err
    assert main(["replay", str(root / "trace"), "--model", str(model_dir), "-o",
                 str(tmp_path / "run"), "--time-scale", "0"]) == 2
    assert "ReplayConfig.time_scale" in capsys.readouterr().err
    assert main(["replay", str(root / "trace"), "--model", str(model_dir), "-o",
                 str(tmp_path / "run"), "--lora-backend", "cutlass"]) == 2
    assert "EngineConfig.lora_backend" in capsys.readouterr().err
