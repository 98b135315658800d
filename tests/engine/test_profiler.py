"""The profiler: grid shapes counted like the scheduler, and a --quick run on a tiny model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from manylora.analysis.cli import main
from manylora.engine.make_tiny import TinyModelSpec, make_tiny
from manylora.engine.profile_grid import GridConfig, GridPoint, build_grid
from manylora.engine.request import Request, RequestState
from manylora.engine.serving_probes import ServingProbeConfig, saturation_throughput
from manylora.engine.step_shape import STEP_SHAPE_FIELDS, StepShape
from manylora.simulator.cost_model import cost_model_from_args
from manylora.simulator.profile_file import read_profile


def test_grid_point_counts_like_the_scheduler():
    # two prompts (adapter slot 1 rank 16, none), three decodes (slots 0, 1, 0; rank 8, 16)
    point = GridPoint(prefill_lens=(5, 7), context_lens=(10, 20, 30),
                      request_slots=(1, -1, 0, 1, 0), slot_ranks=(8, 16))
    assert point.shape() == StepShape(
        prefill_tokens=12, prefill_requests=2, prefill_sq_tokens=25 + 49, decode_requests=3,
        decode_context_tokens=60, distinct_adapters=2, sum_ranks=24,
        lora_token_ranks=5 * 16 + 0 + 8 + 16 + 8)
    assert point.kv_tokens == 72


def test_grid_is_seeded_bounded_and_covers_every_term():
    config = GridConfig()
    grid = build_grid(config, max_context=4096, rng=np.random.default_rng(3))
    assert grid == build_grid(config, 4096, np.random.default_rng(3))
    assert grid != build_grid(config, 4096, np.random.default_rng(4))
    shapes = np.array([p.shape() for p in grid], dtype=np.float64)
    for p in grid:
        assert p.shape().tokens <= config.max_step_tokens
        assert p.kv_tokens <= config.max_kv_tokens
        assert max(p.prefill_lens + p.context_lens) <= config.max_context
        assert sorted({s for s in p.request_slots if s >= 0}) == list(range(len(p.slot_ranks)))
    # every shape term varies across the grid (else its coefficient could not be fitted)
    for i, name in enumerate(STEP_SHAPE_FIELDS[:8]):
        assert len(np.unique(shapes[:, i])) > 5, name
    mixed = [p for p in grid if p.prefill_lens and p.context_lens]
    assert len(mixed) >= 10
    assert len(build_grid(config, max_context=64, rng=np.random.default_rng(0))) > 20
    assert all(max(p.prefill_lens + p.context_lens) <= 64
               for p in build_grid(config, 64, np.random.default_rng(0)))


@pytest.mark.parametrize("field, value", [("ranks", ()), ("max_kv_tokens", 0),
                                          ("random_points", -1)])
def test_grid_config_names_bad_fields(field, value):
    with pytest.raises(ValueError, match=f"GridConfig.{field}"):
        GridConfig(**{field: value})


@pytest.fixture(scope="module")
def quick_profile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("profile")
    spec = TinyModelSpec(layers=2, hidden=64, intermediate=128, heads=4, kv_heads=2, vocab=256,
                         max_position_embeddings=512)
    make_tiny(folder / "tiny", spec, num_adapters=5, ranks=[4, 8, 16], seed=0)
    out = folder / "out" / "profile.json"
    return folder, out


def test_quick_profile_writes_a_valid_fitted_profile(quick_profile, capsys):
    folder, out = quick_profile
    assert main(["profile", "--model", str(folder / "tiny"), "--quick", "--quiet",
                 "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "cross-validated error MAPE" in printed
    profile = read_profile(out)  # validates every field
    assert len(profile.steps) >= 15
    assert all(len(s.duration_s) == 2 for s in profile.steps)
    assert profile.model.num_layers == 2 and profile.model.hidden_size == 64
    assert profile.hardware["device"] == "cpu" and profile.hardware["torch_threads"] >= 1
    assert profile.versions["torch"] and profile.pool["tokens_per_page"] == 1
    # the engine's pool with default settings (256 MiB), which the simulator will size from
    assert profile.pool["num_pages"] == 256 * 2**20 // profile.pool["page_bytes"]
    assert profile.pool["profiled_pages"] >= profile.pool["num_pages"]
    # --quick times the first 4 adapters; make-tiny cycles q,v / q,k,v,o / all / gate,up,down
    assert len(profile.adapter_loads) == 4
    assert {tuple(a.targets) for a in profile.adapter_loads} >= {("q", "v"), ("gate", "up",
                                                                              "down")}
    assert all(a.bytes > 0 and len(a.host_to_pool_s) == 2 for a in profile.adapter_loads)
    fit = profile.fit
    assert fit["form"] in fit["cv"]["forms"]
    for errors in fit["cv"]["forms"].values():
        # (the mean may exceed the P90 when one point is far off)
        assert 0.0 <= errors["mape_pct"] <= errors["max_ape_pct"]
        assert 0.0 <= errors["p90_ape_pct"] <= errors["max_ape_pct"]
    assert f"MAPE {fit['cv']['forms'][fit['form']]['mape_pct']:.1f}%" in printed
    # The simulator loads it; predictions are positive and grow with the batch.
    model = cost_model_from_args(profile=out)
    small = model.step_time(StepShape(decode_requests=1, decode_context_tokens=32))
    big = model.step_time(StepShape(decode_requests=16, decode_context_tokens=16 * 256,
                                    prefill_tokens=200, prefill_requests=2,
                                    prefill_sq_tokens=20000))
    assert 0.0 < small < big
    assert model.adapter_load_time(10**6, "disk") > 0.0
    assert model.describe()["profile"]["file"] == "profile.json"
    assert [p.name for p in out.parent.iterdir()] == ["profile.json"]
    # the serving probes replayed on the engine itself: a burst, then one open-loop load
    serving = profile.serving
    assert [p.name for p in serving.probes] == ["saturation", "load-0.5"]
    assert serving.probes[1].offered_rps == pytest.approx(0.5 * serving.saturation_rps)
    quick = ServingProbeConfig.quick()
    assert serving.probes[0].requests == quick.burst_requests
    for probe in serving.probes:
        shapes = probe.shapes
        assert len(probe.duration_s) == len(shapes) > 0 and (probe.duration_s > 0).all()
        # every request prefilled once, in one of the probe's steps
        assert shapes[:, STEP_SHAPE_FIELDS.index("prefill_requests")].sum() == probe.requests
    assert profile.settings["serving"]["burst_requests"] == quick.burst_requests
    assert fit["serving_in_sample"].keys() == {"load-0.5"}  # the burst measures throughput


def test_profile_settings_record_how_it_was_measured(quick_profile):
    _, out = quick_profile
    data = json.loads(out.read_text())
    settings = data["settings"]
    assert settings["repeats"] == 2 and settings["warmup"] == 1
    assert settings["lora_backend"] == "torch" and settings["dtype"] == "float32"
    # mean LoRA width over the 5 adapters is nearest to the MLP-only set's
    assert settings["lora_targets"] == ["gate", "up", "down"]


@pytest.mark.parametrize("args, message", [
    (["--model", "{missing}"], "not a checkpoint folder"),
    (["--model", "{tiny}", "--repeats", "0"], "ProfilerConfig.repeats must be >= 1"),
    (["--model", "{tiny}", "--threads", "-1"], "EngineConfig.threads must be >= 0"),
    (["--model", "{tiny}", "--dtype", "int8"], "EngineConfig.dtype"),
    (["--model", "{tiny}", "--adapters", "{missing}"], "no such adapter folder"),
])
def test_bad_input_is_one_line_and_exit_2(quick_profile, capsys, args, message):
    folder, _ = quick_profile
    names = {"missing": str(folder / "missing"), "tiny": str(folder / "tiny")}
    argv = ["profile", "--quick", "--quiet", "-o", str(folder / "bad.json")] + \
        [a.format(**names) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("manylora profile: error:") and message in err[0]
    assert not (folder / "bad.json").exists()


def _finished(arrival: float, admitted: float, finish: float) -> Request:
    req = Request(0, arrival, -1, 8, 4)
    req.state, req.admitted_s, req.finish_s = RequestState.FINISHED, admitted, finish
    return req


def test_saturation_throughput_counts_completions_while_requests_waited():
    # a burst at 0: finishes at 1, 2, ..., 10 s; the last request was admitted at 6 s
    reqs = [_finished(0.0, min(i, 6.0), float(i)) for i in range(1, 11)]
    # between the first finish (1 s) and the last admission (6 s): 6 finishes in 5 s
    assert saturation_throughput(reqs) == pytest.approx(6 / 5)
    # nothing ever waited (all admitted at once): the whole run
    assert saturation_throughput([_finished(0.0, 0.0, 2.0), _finished(0.0, 0.0, 4.0)]) == 0.5
    with pytest.raises(ValueError, match="no request of the saturation probe finished"):
        saturation_throughput([Request(0, 0.0, -1, 8, 4)])


@pytest.mark.parametrize("field, value", [("loads", ()), ("seconds", 0.0),
                                          ("output_range", (4, 2)), ("burst_requests", 0)])
def test_serving_probe_config_names_bad_fields(field, value):
    with pytest.raises(ValueError, match=f"ServingProbeConfig.{field}"):
        ServingProbeConfig(**{field: value})
