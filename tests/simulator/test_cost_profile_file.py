"""Profile files: round trip, atomic writes, and errors that say where the problem is."""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from manylora.engine.anchor_config import AnchorConfig, anchor_record, anchor_steps
from manylora.engine.model_shape import LLAMA2_7B
from manylora.engine.step_shape import StepShape
from manylora.simulator.profile_file import (
    LoadTiming, Profile, ProfileError, Serving, ServingProbe, StepTiming, profile_from_dict,
    read_profile, write_profile)

SERVING = Serving(40.0, (
    ServingProbe("saturation", 1e6, 3, np.array([[30, 3, 300, 0, 0, 2, 16, 240, 2, 9000],
                                                 [0, 0, 0, 3, 36, 2, 16, 24, 0, 0]],
                                                dtype=np.float64), np.array([0.02, 0.007])),
    ServingProbe("load-0.5", 20.0, 1, np.array([[12, 1, 144, 0, 0, 0, 0, 0, 0, 0]],
                                               dtype=np.float64), np.array([0.004]))))


def small_profile() -> Profile:
    return Profile(
        hardware={"device": "cpu", "cpu_model": "test"}, model=LLAMA2_7B,
        pool={"tokens_per_page": 16, "num_pages": 100}, versions={"torch": "x"},
        settings={"repeats": 2},
        steps=(StepTiming(StepShape(prefill_tokens=10, prefill_requests=1,
                                    prefill_sq_tokens=100), (0.01, 0.011)),
               StepTiming(StepShape(decode_requests=2, decode_context_tokens=30), (0.005,))),
        adapter_loads=(LoadTiming(8, ("q", "v"), 4096, (1e-4, 2e-4), (1e-3,)),))


def test_round_trip_is_exact(tmp_path):
    path = tmp_path / "p.json"
    profile = small_profile().with_fit({"form": "lean", "coefficients": {"step": 0.1}})
    write_profile(profile, path)
    assert read_profile(path) == profile
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]  # no temporary left behind
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"


def test_serving_probes_round_trip_as_columns(tmp_path):
    path = tmp_path / "p.json"
    profile = dataclasses.replace(small_profile(), serving=SERVING)
    write_profile(profile, path)
    back = read_profile(path)
    assert back == profile and back.serving == SERVING
    probe = json.loads(path.read_text())["serving"]["probes"][0]
    assert probe["steps"]["decode_context_tokens"] == [0, 36]  # one list per field
    shapes, seconds, index = back.serving.arrays()
    assert shapes.shape == (3, 10) and seconds.tolist() == [0.02, 0.007, 0.004]
    assert index.tolist() == [0, 0, 1]
    assert small_profile().serving is None  # profiles before serving probes still read


def test_fits_calibrate_on_the_open_loop_probes_only():
    assert [p.name for p in SERVING.calibration().probes] == ["load-0.5"]
    assert SERVING.calibration().saturation_rps == SERVING.saturation_rps
    assert Serving(40.0, SERVING.probes[:1]).calibration() is None


def test_speed_anchors_round_trip_and_pool_over_probes(tmp_path):
    config = AnchorConfig(decode_batches=(1, 4), prefills=((1, 8),))
    anchored = Serving(40.0, tuple(
        dataclasses.replace(probe, anchor=anchor_record(config, passes))
        for probe, passes in zip(SERVING.probes, ([(0.0, 0.5)], [(0.0, 0.1), (3.0, 0.12)]))))
    path = tmp_path / "p.json"
    write_profile(dataclasses.replace(small_profile(), serving=anchored), path)
    back = read_profile(path).serving
    assert back == anchored and back.probes[1].anchor["passes"][1]["seconds"] == 0.12
    # passes pooled over the probes asked for
    assert back.calibration().anchor() == (anchor_steps(config), [0.1, 0.12])
    assert back.anchor() == (anchor_steps(config), [0.5, 0.1, 0.12])  # every probe's
    assert SERVING.calibration().anchor() is None  # probes without anchors
    mixed = Serving(40.0, (anchored.probes[1], dataclasses.replace(
        anchored.probes[1], anchor=anchor_record(AnchorConfig(), [(0.0, 0.2)]))))
    assert mixed.anchor() is None  # different steps cannot be pooled


def test_write_replaces_an_existing_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text("old")
    write_profile(small_profile(), path)
    assert read_profile(path).steps == small_profile().steps


def corrupt(edit):
    profile = dataclasses.replace(small_profile(), serving=SERVING)
    data = json.loads(json.dumps(profile.to_dict()))
    edit(data)
    return data


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(format="other"), "not a manylora profile"),
    (lambda d: d.update(format_version=99), "format_version"),
    (lambda d: d["steps"][1].update(decode_requests=-1),
     r"steps\[1\]\.decode_requests: expected an integer >= 0, got -1"),
    (lambda d: d["steps"][0].update(prefill_tokens=1.5), r"steps\[0\]\.prefill_tokens"),
    (lambda d: d["steps"][0].update(duration_s=[0.1, -2.0]), r"steps\[0\]\.duration_s\[1\]"),
    (lambda d: d["steps"][0].update(duration_s=[]), r"steps\[0\]\.duration_s"),
    (lambda d: d["steps"][0].update(decode_requets=1), "unknown field 'decode_requets'"),
    (lambda d: d["steps"][1].update(decode_requests=0), "prefill_tokens or decode_requests"),
    (lambda d: d.update(steps=[]), "'steps': expected a non-empty list"),
    (lambda d: d["adapter_loads"][0].update(targets=["qq"]), r"adapter_loads\[0\]\.targets"),
    (lambda d: d["adapter_loads"][0].update(rank=0), r"adapter_loads\[0\]\.rank"),
    (lambda d: d["adapter_loads"][0].update(disk_to_host_s=None),
     r"adapter_loads\[0\]\.disk_to_host_s"),
    (lambda d: d["model"].update(num_layers=0), "ModelShape.num_layers"),
    (lambda d: d["model"].pop("vocab_size"), "'model': expected keys"),
    (lambda d: d.update(hardware=[]), "'hardware': expected an object"),
    (lambda d: d.update(fit=3), "'fit': expected an object or null"),
    (lambda d: d.update(serving=[]), "serving: expected an object or null"),
    (lambda d: d["serving"].update(probes=[]), r"serving\.probes: expected a non-empty list"),
    (lambda d: d["serving"].update(saturation_rps=0), r"serving\.saturation_rps"),
    (lambda d: d["serving"]["probes"][1].update(offered_rps="fast"),
     r"serving\.probes\[1\]\.offered_rps: expected a number > 0"),
    (lambda d: d["serving"]["probes"][0]["steps"]["duration_s"].__setitem__(1, 0.0),
     r"serving\.probes\[0\]\.steps\.duration_s\[1\]: expected seconds > 0"),
    (lambda d: d["serving"]["probes"][0]["steps"]["prefill_tokens"].__setitem__(0, -3),
     r"serving\.probes\[0\]\.steps\.prefill_tokens\[0\]: expected an integer >= 0"),
    (lambda d: d["serving"]["probes"][0]["steps"]["sum_ranks"].pop(),
     r"serving\.probes\[0\]\.steps\.sum_ranks: expected a list of 2 values"),
    (lambda d: d["serving"]["probes"][0]["steps"].update(ranks=[1, 2]),
     r"serving\.probes\[0\]\.steps: unknown field 'ranks'"),
    (lambda d: d["serving"]["probes"][1].update(anchor={"steps": [{}], "passes": [
        {"at_s": 0, "seconds": "slow"}]}),
     r"serving\.probes\[1\]\.anchor\.passes\[0\]\.seconds: expected seconds > 0"),
    (lambda d: d["serving"]["probes"][1].update(anchor=[]),
     r"serving\.probes\[1\]\.anchor: expected an anchor record"),
])
def test_bad_profiles_name_the_entry_and_field(edit, message):
    with pytest.raises(ProfileError, match=message) as info:
        profile_from_dict(corrupt(edit), "prof.json")
    assert str(info.value).startswith("prof.json")


def test_unreadable_and_non_json_files(tmp_path):
    with pytest.raises(ProfileError, match="cannot read profile"):
        read_profile(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": ')
    with pytest.raises(ProfileError, match=r"bad.json: not valid JSON \(line 1, column 12\)"):
        read_profile(bad)
