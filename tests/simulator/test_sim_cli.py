"""``manylora simulate``: runs from a profile or a roofline preset, repeats byte for byte, and
bad input ends with one line on stderr and exit status 2."""
from __future__ import annotations

import json

import pytest

from sim_cases import SMALL_SHAPE, small_trace
from manylora.analysis.cli import main
from manylora.analysis.run_folder import read_run
from manylora.engine.step_shape import StepShape
from manylora.simulator.profile_file import LoadTiming, Profile, StepTiming, write_profile
from manylora.traces import write_trace


@pytest.fixture(scope="module")
def trace_dir(tmp_path_factory):
    return write_trace(small_trace(n=80, seed=5), tmp_path_factory.mktemp("t") / "trace")


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory):
    steps = []
    for p in (0, 16, 64, 128):
        for d in (0, 1, 8, 32):
            if p or d:
                shape = StepShape(prefill_tokens=p, prefill_requests=int(p > 0),
                                  prefill_sq_tokens=p * p, decode_requests=d,
                                  decode_context_tokens=d * 100, distinct_adapters=1,
                                  sum_ranks=8, lora_token_ranks=8 * (p + d))
                seconds = 1e-3 + 2e-5 * (p + d) + 1e-8 * d * 100
                steps.append(StepTiming(shape, (seconds, seconds * 1.01)))
    loads = tuple(LoadTiming(r, ("q", "v"), 1000 * r, (1e-4 + r * 1e-6,), (1e-3 + r * 1e-5,))
                  for r in (8, 16, 32))
    profile = Profile(hardware={"device": "cpu"}, model=SMALL_SHAPE,
                      pool={"num_pages": 4000, "tokens_per_page": 2}, versions={},
                      settings={}, steps=tuple(steps), adapter_loads=loads)
    path = tmp_path_factory.mktemp("p") / "profile.json"
    write_profile(profile, path)
    return path


def test_simulate_from_a_profile_takes_its_model_and_pool(trace_dir, profile_path, tmp_path,
                                                           capsys) -> None:
    out = tmp_path / "run"
    assert main(["simulate", str(trace_dir), "-o", str(out), "--profile", str(profile_path),
                 "--queue", "edf", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    run = read_run(out)
    assert len(run.requests) == 80
    meta = json.loads((out / "meta.json").read_text())
    assert meta["source"] == "simulator" and meta["cost_model"]["name"] == "fitted"
    assert meta["model"]["name"] == SMALL_SHAPE.name
    assert meta["pool"]["num_pages"] == 4000 and meta["pool"]["tokens_per_page"] == 2
    assert meta["policies"]["queue"]["queue"] == "edf"
    # command-line pool options win over the profile's
    assert main(["simulate", str(trace_dir), "-o", str(out), "--profile", str(profile_path),
                 "--pool-pages", "3000", "--tokens-per-page", "1", "--quiet"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["pool"]["num_pages"] == 3000 and meta["pool"]["tokens_per_page"] == 1


def test_roofline_runs_repeat_byte_for_byte(trace_dir, tmp_path) -> None:
    args = ["--hardware", "h100-sxm", "--model-shape", "llama-2-7b", "--pool-pages", "40000",
            "--replicas", "2", "--router", "adapter-affinity", "--quiet"]
    assert main(["simulate", str(trace_dir), "-o", str(tmp_path / "a"), *args]) == 0
    assert main(["simulate", str(trace_dir), "-o", str(tmp_path / "b"), *args]) == 0
    for name in ("requests.csv", "steps.csv", "meta.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert set(read_run(tmp_path / "a").requests["replica"]) == {0, 1}


@pytest.mark.parametrize("args, message", [
    (["--hardware", "a100-80gb", "--model-shape", "llama-2-7b", "--pool-pages", "1"],
     "pool_pages must be >= 2"),
    (["--hardware", "a100-80gb"], "go together"),
    (["--hardware", "tpu", "--model-shape", "llama-2-7b", "--pool-pages", "9"],
     "unknown hardware 'tpu'"),
    (["--profile", "missing.json"], "cannot read profile"),
    (["--replicas", "0", "--pool-pages", "99"], "replicas must be >= 1"),
    (["--max-batch-size", "0", "--hardware", "a100-80gb", "--model-shape", "llama-2-7b",
      "--pool-pages", "99"], "max_batch_size must be >= 1"),
])
def test_bad_input_is_one_line_and_exit_2(trace_dir, tmp_path, capsys, args,
                                          message) -> None:
    code = main(["simulate", str(trace_dir), "-o", str(tmp_path / "run"), "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("manylora simulate: error:")
    assert message in err
    assert not (tmp_path / "run").exists()


def test_missing_trace_and_unwritable_output(tmp_path, trace_dir, capsys) -> None:
    assert main(["simulate", str(tmp_path / "nope"), "-o", str(tmp_path / "r"), "--quiet"]) == 2
    assert "no such trace folder" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["simulate", str(trace_dir), "-o", str(blocker), "--hardware", "a100-80gb",
                 "--model-shape", "llama-2-7b", "--pool-pages", "40000", "--quiet"])
    assert code == 2 and "not a folder" in capsys.readouterr().err
    assert blocker.read_text() == "x"
