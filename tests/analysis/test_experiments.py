"""validate and demo end to end at toy size: real engine replays, real simulations, reports."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import trim_mean

from manylora.analysis.capacity import CapacityConfig
from manylora.analysis.cli import main
from manylora.analysis.compare import compare_runs
from manylora.analysis.demo import DemoConfig, _profile_note
from manylora.analysis.run_folder import Run, read_run
from manylora.analysis.validate import ensure_model, reference_replay, run_validation
from manylora.analysis.validate_results import LevelResult, plot_fidelity, summary_table
from manylora.analysis.validate_workload import ValidateConfig, validation_trace
from manylora.engine.anchor_config import AnchorConfig, anchor_passes
from manylora.engine.engine_config import EngineConfig
from manylora.engine.profile_grid import GridConfig
from manylora.engine.profiler import ProfilerConfig, hardware_info
from manylora.engine.serving_probes import ServingProbeConfig
from manylora.simulator.profile_file import read_profile
from tests.analysis.experiments import write_synthetic_profile
from tests.analysis.figures import assert_labelled, assert_no_overlapping_text
from tests.analysis.runs import write_run
from tests.analysis.test_compare import CONFIG, SIM_REQUESTS

SMALL_ANCHOR = AnchorConfig(decode_batches=(1, 8), decode_context=16, prefills=((1, 16),),
                            mixed_decodes=2, every_s=0.3)
TOY_GRID = GridConfig(decode_batches=(1, 8), decode_contexts=(16,), prefill_requests=(1,),
                      prefill_lens=(16,), lora_batches=(4,), lora_distinct=(1,), ranks=(8,),
                      random_points=2, max_step_tokens=64, max_kv_tokens=1024, max_context=64)


def test_requests_per_level_fit_the_budget():
    config = ValidateConfig(levels=(0.5, 1.0), minutes=1.0)
    # 1 / (0.5 * 10) + 1 / (1.0 * 10) = 0.3 s of replay per request and level
    assert config.requests_per_level(10.0) == 300          # 200 fit, but at least 300
    assert ValidateConfig(levels=(0.5, 1.0), minutes=3.0).requests_per_level(10.0) == 600
    with pytest.raises(ValueError, match="min_adapters"):
        ValidateConfig(num_adapters=10, min_adapters=50)


def test_serving_probes_reach_the_highest_level():
    base = ServingProbeConfig()
    assert base.loads == (0.3, 0.6, 0.9)
    probes = ValidateConfig().serving_probes(base)
    assert probes.loads == (0.3, 0.6, 0.9, 1.2) and probes.anchor == ValidateConfig().anchor
    assert probes.seed == ValidateConfig().seed + 1000
    assert ValidateConfig(levels=(0.5, 0.8)).serving_probes(base).loads == base.loads


def test_validation_trace_spans_the_catalog():
    config = ValidateConfig()
    trace = validation_trace(config, rate_rps=20.0, num_requests=300)
    assert trace.num_requests == 300
    assert len(np.unique(trace.column("adapter_id"))) >= config.min_adapters
    assert trace.column("prompt_len").max() <= 64 and trace.column("output_len").max() <= 32
    assert 300 / trace.column("arrival_s")[-1] == pytest.approx(20.0, rel=0.15)
    assert sorted(set(trace.adapters["rank"])) == [8, 16, 32, 64]


def test_fidelity_summary_and_figure(tmp_path):
    a = read_run(write_run(tmp_path / "engine"))
    b = read_run(write_run(tmp_path / "sim", SIM_REQUESTS, meta={"source": "simulator"}))
    comparison = compare_runs(a, b, tmp_path / "cmp", CONFIG)
    summary = summary_table({0.5: LevelResult(1.0, 5, comparison),
                             1.2: LevelResult(2.4, 5, comparison, repeat=comparison)})
    assert len(summary) == 6 and summary["within_tolerance"].all()
    assert summary["engine_noise"].isna().sum() == 3
    assert (summary["speed_factor"] == 1.0).all()  # no anchors: the fitted model alone
    assert summary["rel_error_unanchored"].isna().all()
    assert summary["engine_noise"].iloc[3] == pytest.approx(6.5 / 6.0 - 1)
    row = summary[(summary["load"] == 1.2) & (summary["metric"] == "throughput_rps")].iloc[0]
    assert row["engine"] == pytest.approx(3 / 6.5) and row["simulator"] == pytest.approx(0.5)
    fig = plot_fidelity(summary, 0.1)
    assert_labelled(fig)
    assert_no_overlapping_text(fig)
    bars = [p.get_height() for p in fig.axes[0].patches if p.get_width() < 0.5]
    assert bars[0] == pytest.approx(row["rel_error"] * 100)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "engine vs engine" in labels and "within 10%" in labels


def test_validate_end_to_end_at_toy_size(tmp_path):
    config = ValidateConfig(levels=(0.5, 1.2), min_requests=20, minutes=0.001, num_adapters=10,
                            min_adapters=5, prompt_range=(8, 16), output_range=(2, 8),
                            engine_repeats=2, anchor=SMALL_ANCHOR,
                            capacity=CapacityConfig(busy_s=10, min_requests=40))
    profiler = ProfilerConfig(grid=TOY_GRID, warmup=1, repeats=1, load_repeats=1,
                              max_load_adapters=2, serving=ServingProbeConfig.quick())
    result = run_validation(tmp_path, config, profiler=profiler, engine=EngineConfig(threads=1))
    assert (tmp_path / "model" / "config.json").is_file() and (tmp_path / "profile.json").is_file()
    assert result.capacity.capacity_rps > 0
    assert list(result.summary["load"].unique()) == [0.5, 1.2]
    n = int(result.summary["requests"].iloc[0])
    assert n == 20
    for folder in ("load-050", "load-120"):
        engine = read_run(tmp_path / folder / "engine")
        sim = read_run(tmp_path / folder / "sim")
        assert engine.source == "engine" and sim.source == "simulator"
        assert len(engine.requests) == len(sim.requests) == n
        assert (engine.requests["status"] == "finished").all()
        # the simulation ran over the engine's own pool size
        assert sim.meta["pool"]["num_pages"] == engine.meta["pool"]["num_pages"]
        assert (tmp_path / folder / "compare" / "report.md").is_file()
        assert (tmp_path / folder / "engine-2" / "requests.csv").is_file()
    report = result.report.read_text()
    assert "## Fidelity:" in report and (tmp_path / "fidelity.png").is_file()
    # the probes reach the highest level, and the fit prices them at one machine speed
    profile = read_profile(tmp_path / "profile.json")
    assert [p.name for p in profile.serving.probes] == ["saturation", "load-0.5", "load-1.2"]
    assert profile.fit["probe_speed"] == pytest.approx(profile.serving.probe_speeds())
    assert pd.read_csv(tmp_path / "summary.csv").shape == (6, 13)
    assert result.summary["engine_noise"].notna().all()
    assert set(result.summary["engine_run"]) == {"engine"}  # two replays: the first
    # speed anchors: in every serving probe (together the reference) and every replay
    steps, reference = read_profile(tmp_path / "profile.json").serving.anchor()
    for level in (0.5, 1.2):
        folder = tmp_path / f"load-{round(level * 100):03d}"
        engine = read_run(folder / "engine")
        replay_steps, passes = anchor_passes(engine.meta["anchor"], "meta")
        assert replay_steps == steps
        # the simulated machine's speed: each pass (median of 5 around it) over the probes'
        speed = read_run(folder / "sim").meta["speed_profile"]
        smooth = pd.Series(passes).rolling(5, center=True, min_periods=1).median()
        assert speed["factors"] == pytest.approx(list(smooth / trim_mean(reference, 0.1)))
        assert len(speed["starts_s"]) == len(passes) and speed["starts_s"][0] == 0.0
        result_level = result.levels[level]
        low, high = min(speed["factors"]), max(speed["factors"])
        assert low * (1 - 1e-12) <= result_level.factor <= high * (1 + 1e-12)  # a time mean
        assert result_level.speed[1:] == (min(speed["factors"]), max(speed["factors"]))
        rows = result.summary[result.summary["load"] == level]
        assert rows["speed_factor"].to_numpy() == pytest.approx(result_level.factor)
        assert "speed_profile" not in read_run(folder / "sim-unanchored").meta
        assert rows["simulator_unanchored"].notna().all()
        # arrivals are the trace's to the microsecond, in both simulations
        sim = read_run(folder / "sim").requests.set_index("request_id")
        assert (sim["arrival_s"] == engine.requests.set_index("request_id")["arrival_s"]).all()
    assert "Speed anchors:" in report


def test_ensure_model_refuses_unknown_shapes(tmp_path):
    with pytest.raises(ValueError, match="unknown model shape 'gpt-9'"):
        ensure_model(None, "gpt-9", tmp_path, 0)
    assert ensure_model(tmp_path / "mine", None, tmp_path, 0) == tmp_path / "mine"


def test_reduced_demo(tmp_path, capsys):
    profile = write_synthetic_profile(tmp_path / "profile.json")
    config = DemoConfig.quick()
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--profile", str(profile), "--threads", "1",
                 "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.md'}" in printed
    sweep = pd.read_csv(out / "sweep.csv")
    # 2 policies x (2 rates at cv 1 + 2 cvs at the cv load) x 3 SLO scales
    assert len(sweep) == 2 * 4 * 3 and set(sweep["num_adapters"]) == {1000}
    assert set(pd.read_csv(out / "goodput.csv")["policy"]) == set(config.policies)
    fcfs = sweep[(sweep["policy"] == "fcfs") & (sweep["slo_scale"] == 1.0)
                 & (sweep["cv"] == 1.0)].sort_values("rate")
    # more load never serves first tokens sooner
    assert fcfs["ttft_mean_s"].is_monotonic_increasing
    for name in ("attainment-vs-rate", "attainment-vs-cv", "attainment-vs-slo-scale",
                 "pool_occupancy"):
        assert (out / "figures" / f"{name}.png").is_file(), name
    assert len(list((out / "sim").iterdir())) == 2 * 4
    engine = read_run(out / "validation" / "engine")
    assert len(engine.requests) == config.replay_requests
    assert (engine.requests["status"] == "finished").all()
    assert engine.meta["engine"]["device"] == "cpu"
    text = (out / "report.md").read_text()
    assert "## Goodput" in text and "validation/compare/report.md" in text
    # the synthetic profile names no CPU: the report must not pass it off as this machine's
    assert "how well the profile carries over" in text


def test_demo_says_whether_profile_and_replay_share_a_machine(tmp_path):
    here = hardware_info(torch.device("cpu"))
    assert "differ" not in _profile_note(tmp_path / "p.json", here, dict(here))
    elsewhere = {**here, "cpu_model": "another CPU"}
    note = _profile_note(tmp_path / "p.json", elsewhere, here)
    assert "differ" in note and "another CPU" in note and "manylora profile" in note


def test_the_median_speed_replay_is_compared_and_the_farthest_shows_the_noise():
    def run(name: str, step_s: float) -> Run:
        return Run(Path(name), pd.DataFrame(), pd.DataFrame({"duration_s": [step_s] * 3}))

    assert reference_replay({"engine": run("a", 0.01)}) == ("engine", None)
    assert reference_replay({"engine": run("a", 0.03), "engine-2": run("b", 0.01)}) == \
        ("engine", "engine-2")
    runs = {"engine": run("a", 0.012), "engine-2": run("b", 0.010), "engine-3": run("c", 0.0105),
            "engine-4": run("d", 0.011), "engine-5": run("e", 0.0108)}
    # sorted by mean step: b .0100, c .0105, e .0108, d .0110, a .0120 -> median e; a farthest
    assert reference_replay(runs) == ("engine-5", "engine")


def test_validate_command_passes_anchor_choice(monkeypatch, tmp_path):
    import manylora.analysis.experiment_commands as commands
    seen = {}

    def fake(out, config, **options):
        seen["anchor"] = config.anchor
        raise SystemExit(0)
    monkeypatch.setattr(commands, "run_validation", fake)
    for extra, expected in (([], AnchorConfig()), (["--no-anchor"], None)):
        with pytest.raises(SystemExit):
            main(["validate", "-o", str(tmp_path / "v"), *extra])
        assert seen["anchor"] == expected
