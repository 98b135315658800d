"""Profile files: round trip, atomic writes, and errors that say where the problem is."""
from __future__ import annotations

import json
import os

import pytest

from manylora.engine.model_shape import LLAMA2_7B
from manylora.engine.step_shape import StepShape
from manylora.simulator.profile_file import (
    LoadTiming, Profile, ProfileError, StepTiming, profile_from_dict, read_profile, write_profile)


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


def test_write_replaces_an_existing_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text("old")
    write_profile(small_profile(), path)
    assert read_profile(path).steps == small_profile().steps


def corrupt(edit):
    data = json.loads(json.dumps(small_profile().to_dict()))
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
