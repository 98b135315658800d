"""Cost models by name, the loaders the simulate command calls, and the shipped profile."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from manylora.engine.step_shape import STEP_SHAPE_FIELDS, StepShape
from manylora.simulator.cost_model import (
    COST_MODELS, CostModel, CostModelError, ProfileError, cost_model_from_args,
    default_cost_model, fitted_cost_model, load_cost_model, shipped_profile_path)
from manylora.simulator.fitted_cost_model import FittedCostModel
from manylora.simulator.profile_file import read_profile, write_profile
from manylora.simulator.roofline import RooflineCostModel


def test_default_is_the_fitted_model_of_the_shipped_profile():
    model = default_cost_model()
    assert isinstance(model, FittedCostModel) and isinstance(model, CostModel)
    assert model.deterministic
    described = model.describe()
    assert described["name"] == "fitted" and described["profile"]["file"] == "cpu-tiny.json"
    assert len(described["profile"]["sha256"]) == 64
    assert cost_model_from_args().describe() == described


def test_shipped_profile_is_fitted_and_reports_its_cv_error():
    profile = read_profile(shipped_profile_path())
    fit = profile.fit
    assert fit is not None and fit["form"] in fit["cv"]["forms"]
    assert fit["cv"]["folds"] == 5 and fit["cv"]["points"] == len(profile.steps) >= 100
    assert profile.hardware["device"] == "cpu"
    # the make-tiny default model: 4 layers, hidden 256, fp32
    assert (profile.model.num_layers, profile.model.hidden_size, profile.model.dtype_bytes) \
        == (4, 256, 4)


def test_shipped_model_behaves_physically():
    model = default_cost_model()

    def decode(batch: int, context: int, adapters: int = 0, rank: int = 16) -> float:
        return model.step_time(StepShape(
            decode_requests=batch, decode_context_tokens=batch * context,
            distinct_adapters=adapters, sum_ranks=adapters * rank,
            lora_token_ranks=batch * rank if adapters else 0))
    assert 0.0 < decode(1, 64) < decode(32, 64) < decode(32, 1024)
    assert decode(32, 256) < decode(32, 256, adapters=8) < decode(32, 256, adapters=32)
    per_token = [decode(b, 128) / b for b in (1, 4, 16, 64)]
    assert per_token == sorted(per_token, reverse=True)  # batching amortises the weights
    prefill = [model.step_time(StepShape(prefill_tokens=n, prefill_requests=1,
                                         prefill_sq_tokens=n * n)) for n in (16, 256, 1024)]
    assert prefill == sorted(prefill)
    assert 0.0 < model.adapter_load_time(10**6, "host") < model.adapter_load_time(10**6, "disk")


def test_profile_option_and_refitting_a_profile_without_fit(tmp_path):
    profile = read_profile(shipped_profile_path())
    unfitted = tmp_path / "unfitted.json"
    write_profile(profile.with_fit(None), unfitted)  # fitted when loaded: the same fit
    refitted, shipped = fitted_cost_model(unfitted), default_cost_model()
    assert refitted.form == shipped.form
    for name, c in shipped.coefficients.items():
        assert refitted.coefficients[name] == pytest.approx(c, rel=1e-6, abs=1e-15)
    shapes = np.array([s.shape for s in profile.steps], dtype=np.float64)
    assert np.allclose(refitted.step_times(shapes), shipped.step_times(shapes), rtol=1e-6)
    assert cost_model_from_args(profile=unfitted).describe()["profile"]["file"] == \
        "unfitted.json"


def test_hardware_and_model_shape_select_the_roofline():
    model = cost_model_from_args(hardware="h100-sxm", model_shape="llama-2-13b")
    assert isinstance(model, RooflineCostModel)
    assert model.describe()["hardware"]["name"] == "h100-sxm"
    assert model.step_times(np.zeros((0, len(STEP_SHAPE_FIELDS)))).shape == (0,)
    assert load_cost_model("roofline", hardware="h200", model_shape_name="llama-2-7b") \
        .describe()["model_shape"] == "llama-2-7b"
    assert set(COST_MODELS) == {"fitted", "roofline"}


@pytest.mark.parametrize("kwargs, message", [
    (dict(profile="p.json", hardware="h200", model_shape="llama-2-7b"), "not both"),
    (dict(hardware="h200"), "go together"),
    (dict(model_shape="llama-2-7b"), "go together"),
    (dict(hardware="tpu", model_shape="llama-2-7b"), "unknown hardware 'tpu'; presets: "),
    (dict(hardware="h200", model_shape="llama-3"), "unknown model shape 'llama-3'; known: "),
    (dict(profile="/nonexistent/p.json"), "cannot read profile"),
])
def test_bad_options_raise_user_errors(kwargs, message):
    with pytest.raises(CostModelError, match=message):
        cost_model_from_args(**kwargs)


def test_unknown_cost_model_and_broken_stored_fit(tmp_path):
    with pytest.raises(CostModelError, match="unknown cost model 'magic'"):
        load_cost_model("magic")
    profile = read_profile(shipped_profile_path())
    path = tmp_path / "broken.json"
    write_profile(profile.with_fit({**profile.fit, "form": "cubic"}), path)
    with pytest.raises(ProfileError, match="broken.json: field 'fit': unknown cost-model form"):
        fitted_cost_model(path)
    coefficients = dict(profile.fit["coefficients"])
    coefficients[next(iter(coefficients))] = -1.0
    write_profile(profile.with_fit({**profile.fit, "coefficients": coefficients}), path)
    with pytest.raises(ProfileError, match="must be finite and >= 0"):
        fitted_cost_model(path)


_TORCH_FREE = """
import sys
sys.modules["torch"] = None
import manylora.simulator.cost_model, manylora.engine.profile_grid
manylora.simulator.cost_model.default_cost_model()
assert not [m for m in sys.modules if m.split(".")[0] in ("triton",)]
print("ok")
"""


def test_cost_models_and_profile_grid_import_no_torch():
    result = subprocess.run([sys.executable, "-c", _TORCH_FREE], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
