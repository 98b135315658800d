"""Fitting the cost model on synthetic profiles drawn from a known formula plus noise."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from manylora.engine.model_shape import LLAMA2_7B
from manylora.engine.step_shape import StepShape
from manylora.simulator.adapter_load_model import AdapterLoadModel, TierCost, fit_tier
from manylora.simulator.cost_terms import FORMS
from manylora.simulator.cost_fit import design_matrix, fit_coefficients, serving_steps
from manylora.simulator.fitted_cost_model import FittedCostModel, fit_profile
from manylora.simulator.profile_file import (LoadTiming, Profile, Serving, ServingProbe,
                                             StepTiming)

TRUTH = {  # seconds per unit of each term, different in the two regimes
    "prefill_step.step": 2e-3, "prefill_step.prefill_tokens": 2e-5,
    "prefill_step.prefill_requests": 1e-4, "prefill_step.prefill_sq_tokens": 1e-8,
    "prefill_step.decode_requests": 3e-5, "prefill_step.decode_context_tokens": 1e-7,
    "prefill_step.distinct_adapters": 2e-4, "prefill_step.sum_ranks": 1e-6,
    "prefill_step.lora_token_ranks": 5e-9,
    "decode_step.step": 1e-3, "decode_step.decode_requests": 4e-5,
    "decode_step.decode_context_tokens": 1.5e-7, "decode_step.distinct_adapters": 1.5e-4,
    "decode_step.sum_ranks": 8e-7, "decode_step.lora_token_ranks": 4e-9,
}
HOST = (2e-4, 5e9)   # latency s, bytes/s
DISK = (3e-3, 1e9)
TRUE_LOADS = AdapterLoadModel(TierCost(*HOST), TierCost(*DISK))


def random_shape(rng: np.random.Generator) -> StepShape:
    """A step like the profiler's grid: prefill, decode or both, with 0..16 adapters."""
    kind = rng.choice(["decode", "prefill", "mixed"], p=[0.5, 0.35, 0.15])
    prompts = rng.integers(8, 513, size=rng.integers(1, 9)) if kind != "decode" else []
    contexts = rng.integers(8, 1025, size=rng.integers(1, 65)) if kind != "prefill" else []
    tokens = [int(p) for p in prompts] + [1] * len(contexts)
    distinct = int(rng.integers(0, min(len(tokens), 16) + 1))
    ranks = rng.choice([8, 16, 32, 64], size=distinct)
    owner = rng.integers(0, distinct, size=len(tokens)) if distinct else None
    token_ranks = sum(t * int(ranks[o]) for t, o in zip(tokens, owner)) if distinct else 0
    return StepShape(
        prefill_tokens=int(sum(prompts)), prefill_requests=len(prompts),
        prefill_sq_tokens=int(sum(int(p) ** 2 for p in prompts)),
        decode_requests=len(contexts), decode_context_tokens=int(sum(contexts)),
        distinct_adapters=distinct, sum_ranks=int(ranks.sum()), lora_token_ranks=token_ranks)


def synthetic_profile(n: int, noise: float, seed: int, repeats: int = 3) -> Profile:
    rng = np.random.default_rng(seed)
    shapes = [random_shape(rng) for _ in range(n)]
    truth = FittedCostModel("piecewise", TRUTH, TRUE_LOADS)
    steps = tuple(StepTiming(s, tuple(truth.step_time(s) * rng.lognormal(0.0, noise, repeats)))
                  for s in shapes)
    loads = []
    for rank in (4, 8, 16, 32, 64, 128):
        size = rank * 100_000
        loads.append(LoadTiming(rank, ("q", "v"), size,
                                tuple((HOST[0] + size / HOST[1]) * rng.lognormal(0, noise, 3)),
                                tuple((DISK[0] + size / DISK[1]) * rng.lognormal(0, noise, 3))))
    return Profile(hardware={"device": "synthetic"}, model=LLAMA2_7B, pool={}, versions={},
                   settings={"seed": seed}, steps=steps, adapter_loads=tuple(loads))



def test_noise_free_fit_recovers_the_formula_and_picks_its_form():
    profile = synthetic_profile(200, noise=0.0, seed=1, repeats=1)
    fit = fit_profile(profile)
    assert fit["form"] == "piecewise"
    for name, value in TRUTH.items():
        assert fit["coefficients"][name] == pytest.approx(value, rel=1e-6), name
    assert fit["cv"]["forms"]["piecewise"]["mape_pct"] < 1e-6
    # Forms that cannot express two regimes are measurably worse on held-out points.
    assert fit["cv"]["forms"]["linear"]["mape_pct"] > 1.0
    assert fit["cv"]["forms"]["lean"]["mape_pct"] > 1.0
    for tier, (latency, bandwidth) in (("host", HOST), ("disk", DISK)):
        assert fit["adapter_loads"][tier]["latency_s"] == pytest.approx(latency, rel=1e-6)
        assert fit["adapter_loads"][tier]["bytes_per_s"] == pytest.approx(bandwidth, rel=1e-6)


def test_noisy_fit_recovers_the_dominant_terms_and_reports_honest_cv_error():
    noise = 0.05
    fit = fit_profile(synthetic_profile(400, noise=noise, seed=2))
    assert fit["form"] == "piecewise"
    coef = fit["coefficients"]
    for name in ("prefill_step.step", "prefill_step.prefill_tokens",
                 "prefill_step.prefill_sq_tokens", "decode_step.step",
                 "decode_step.decode_requests", "decode_step.decode_context_tokens"):
        assert coef[name] == pytest.approx(TRUTH[name], rel=0.2), name
    cv, in_sample = fit["cv"]["forms"]["piecewise"], fit["in_sample"]
    # The mean of 3 lognormal(0, 5%) repeats is off by ~2.3% on average (mean |N(0, s)| with
    # s = 5% / sqrt(3)); the fit cannot beat the noise and should not add much to it.
    noise_floor = noise / np.sqrt(3) * np.sqrt(2 / np.pi) * 100
    assert 0.7 * noise_floor < cv["mape_pct"] < 1.4 * noise_floor
    assert cv["mape_pct"] >= 0.95 * in_sample["mape_pct"]
    assert cv["mape_pct"] <= cv["p90_ape_pct"] <= cv["max_ape_pct"]  # light-tailed noise
    assert fit["cv"]["folds"] == 5 and fit["cv"]["points"] == 400


def test_fit_is_deterministic_for_a_seed():
    profile = synthetic_profile(120, noise=0.05, seed=3)
    assert fit_profile(profile, seed=7) == fit_profile(profile, seed=7)


def test_fitted_model_predicts_held_out_steps():
    train = synthetic_profile(300, 0.03, seed=4)
    test = synthetic_profile(100, 0.0, seed=5, repeats=1)
    model = FittedCostModel.from_profile(train)
    predicted = model.step_times(np.array([s.shape for s in test.steps], dtype=np.float64))
    truth = np.array([s.duration_s[0] for s in test.steps])
    assert np.median(np.abs(predicted / truth - 1)) < 0.03


def test_from_profile_uses_the_stored_fit():
    profile = synthetic_profile(60, 0.05, seed=6)
    fit = fit_profile(profile)
    # only the fixed per-step term(s) left
    fit["coefficients"] = {name: 0.25 if name.split(".")[-1] == "step" else 0.0
                           for name in fit["coefficients"]}
    model = FittedCostModel.from_profile(profile.with_fit(fit))
    assert model.step_time(StepShape(decode_requests=3, decode_context_tokens=90)) == 0.25


def test_nnls_never_returns_negative_coefficients():
    profile = synthetic_profile(80, 0.2, seed=8)
    shapes = np.array([s.shape for s in profile.steps], dtype=np.float64)
    seconds = np.array([np.mean(s.duration_s) for s in profile.steps])
    for form in FORMS:
        assert np.all(fit_coefficients(design_matrix(form, shapes), seconds) >= 0.0)


def test_blocking_adapter_copies_add_their_host_load_time():
    model = FittedCostModel("piecewise", TRUTH, TRUE_LOADS)
    base = StepShape(decode_requests=4, decode_context_tokens=400, distinct_adapters=2,
                     sum_ranks=24, lora_token_ranks=40)
    blocked = base._replace(adapter_loads=2, adapter_load_bytes=3_000_000)
    expected = 2 * HOST[0] + 3_000_000 / HOST[1]
    assert model.step_time(blocked) - model.step_time(base) == pytest.approx(expected)
    assert model.adapter_load_time(3_000_000, "disk") == pytest.approx(DISK[0] + 3e6 / DISK[1])


@pytest.mark.parametrize("latency, bandwidth", [(1e-4, 12e9), (0.0, 3e9), (5e-3, 1e8)])
def test_fit_tier_recovers_latency_and_bandwidth(latency, bandwidth):
    rng = np.random.default_rng(9)
    sizes = rng.integers(10_000, 50_000_000, size=40).astype(float)
    times = (latency + sizes / bandwidth) * rng.lognormal(0.0, 0.02, size=40)
    tier = fit_tier(sizes, times)
    assert tier.bytes_per_s == pytest.approx(bandwidth, rel=0.05)
    assert tier.latency_s == pytest.approx(latency, rel=0.2, abs=2e-5)


def test_fit_tier_with_one_size_puts_everything_on_bandwidth():
    tier = fit_tier([1000.0, 1000.0], [1e-3, 1e-3])
    assert tier.latency_s == 0.0 and tier.time(1000.0) == pytest.approx(1e-3)


OVERHEAD_S = 6e-4  # what each real serving step pays beyond its grid cost


def with_serving_probes(profile: Profile, noise: float, seed: int) -> Profile:
    """Three probes whose steps cost the truth plus a per-step overhead grid points never
    see (scheduling, completion, the replay loop), with multiplicative noise."""
    rng = np.random.default_rng(seed)
    truth = FittedCostModel("piecewise", TRUTH, TRUE_LOADS)
    probes = []
    for name in ("saturation", "load-0.3", "load-0.6"):
        shapes = np.array([random_shape(rng) for _ in range(300)], dtype=np.float64)
        seconds = (truth.step_times(shapes) + OVERHEAD_S) * rng.lognormal(0.0, noise, 300)
        probes.append(ServingProbe(name, 10.0, 300, shapes, seconds))
    return dataclasses.replace(profile, serving=Serving(20.0, tuple(probes)))


def test_serving_probes_teach_the_fit_the_overhead_the_grid_never_sees():
    profile = with_serving_probes(synthetic_profile(200, noise=0.02, seed=11), 0.02, seed=12)
    fit = fit_profile(profile)
    assert fit["form"] == "piecewise" and fit["serving_weight"] > 0
    for term, overhead in fit["serving_overhead"].items():
        assert term.endswith(".step") and overhead == pytest.approx(OVERHEAD_S, rel=0.25)
        assert fit["coefficients"][term] == pytest.approx(TRUTH[term] + overhead, rel=0.05)
    # the model's busy time on every probe is right, in sample and held out
    assert all(abs(e["busy_bias_pct"]) < 0.5 for e in fit["serving_in_sample"].values())
    serving = fit["cv"]["serving"]
    # the saturation burst is stored but not fitted (Serving.calibration)
    assert serving["probes"] == ["load-0.3", "load-0.6"]
    assert serving["steps"] == 600
    chosen, grid_only = (next(c for c in serving["candidates"]
                              if (c["form"], c["serving_weight"]) == key)
                         for key in (("piecewise", fit["serving_weight"]), ("piecewise", 0.0)))
    assert chosen["rms_busy_bias_pct"] < 1.0
    # fitted to the grid alone, the model misses the overhead on every probe
    assert all(e["busy_bias_pct"] < -2.0 for e in grid_only["probes"].values())
    # grid points are still priced without the overhead
    assert fit["cv"]["forms"]["piecewise"]["mape_pct"] < 5.0
    assert fit["in_sample"]["mape_pct"] < 3.0


def test_profiles_without_probes_fit_the_grid_alone():
    fit = fit_profile(synthetic_profile(100, noise=0.02, seed=13))
    assert fit["serving_weight"] == 0.0 and fit["cv"]["serving"] is None
    assert fit["serving_in_sample"] is None
    assert all(v == 0.0 for v in fit["serving_overhead"].values())


def test_serving_blocks_are_contiguous_within_each_probe():
    probe = np.array([0, 0, 0, 0, 1, 1, 1])
    steps = serving_steps(np.ones((7, 1)), np.ones(7), probe, folds=2)
    assert steps.block.tolist() == [0, 0, 1, 1, 0, 0, 1]


def test_anchored_probes_are_fitted_at_the_calibrations_mean_speed():
    """A probe during which the machine ran 1.3x slower (its anchor passes say so) teaches the
    fit nothing about step shapes: its durations are divided by its speed before fitting."""
    from manylora.engine.anchor_config import AnchorConfig, anchor_record

    profile = with_serving_probes(synthetic_profile(200, noise=0.02, seed=11), 0.02, seed=12)
    slow = {"saturation": 1.0, "load-0.3": 1.0, "load-0.6": 1.3}

    def anchored(speed_of: dict[str, float]) -> Profile:
        probes = tuple(dataclasses.replace(
            p, duration_s=p.duration_s * speed_of[p.name],
            anchor=anchor_record(AnchorConfig(), [(0.0, 0.1 * speed_of[p.name]),
                                                  (1.0, 0.1 * speed_of[p.name])]))
            for p in profile.serving.probes)
        return dataclasses.replace(profile, serving=Serving(20.0, probes))

    drifted = anchored(slow)
    speeds = drifted.serving.probe_speeds()
    # the reference is the mean pass of every probe: (0.1 + 0.1 + 0.13) / 3
    assert speeds["load-0.6"] == pytest.approx(0.13 / 0.11)
    assert speeds["saturation"] == pytest.approx(0.1 / 0.11)
    fit = fit_profile(drifted)
    assert fit["probe_speed"] == pytest.approx(speeds)
    # priced at the probes' mean speed, 1.1x the machine of load-0.3, on every probe's steps
    model = FittedCostModel.from_profile(dataclasses.replace(drifted, fit=fit))
    truth = FittedCostModel("piecewise", TRUTH, TRUE_LOADS)
    for probe in profile.serving.probes[1:]:
        expected = 1.1 * (truth.step_times(probe.shapes) + OVERHEAD_S).sum()
        assert model.step_times(probe.shapes).sum() == pytest.approx(expected, rel=0.01)
    # without anchors the slow probe's drift would have gone into the model
    unanchored = fit_profile(dataclasses.replace(drifted, serving=Serving(20.0, tuple(
        dataclasses.replace(p, anchor=None) for p in drifted.serving.probes))))
    assert unanchored["probe_speed"] is None
    assert abs(unanchored["serving_in_sample"]["load-0.6"]["busy_bias_pct"]) > 5.0
    assert all(abs(e["busy_bias_pct"]) < 0.5 for e in fit["serving_in_sample"].values())
