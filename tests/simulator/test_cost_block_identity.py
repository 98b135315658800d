"""Every cost model gives the same bits for a block of steps as for each step alone.

The simulator costs a run of steady decode steps in one ``step_times`` call and must get
exactly what stepping one by one (``step_time``) would give.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manylora.engine.model_shape import MODEL_SHAPES
from manylora.engine.step_shape import STEP_SHAPE_FIELDS, StepShape
from manylora.simulator.adapter_load_model import AdapterLoadModel, TierCost
from manylora.simulator.cost_base import CostModel
from manylora.simulator.cost_terms import FORMS
from manylora.simulator.fitted_cost_model import FittedCostModel
from manylora.simulator.hardware import HARDWARE_PRESETS
from manylora.simulator.roofline import RooflineCostModel

LOADS = AdapterLoadModel(TierCost(1.3e-4, 7.1e9), TierCost(2.9e-3, 1.7e9))


def fitted_models() -> list[FittedCostModel]:
    rng = np.random.default_rng(0)
    models = []
    for form, terms in FORMS.items():
        # Awkward magnitudes and some exact zeros, so roundings differ from term to term.
        coef = {n: float(rng.choice([0.0, 1.0]) * rng.lognormal(-12, 3)) for n in terms}
        models.append(FittedCostModel(form, coef, LOADS))
    return models


MODELS: list[CostModel] = fitted_models() + [
    RooflineCostModel(gpu, shape) for gpu in HARDWARE_PRESETS.values()
    for shape in MODEL_SHAPES.values()]

shape_rows = st.lists(
    st.tuples(*[st.integers(0, 2**31) for _ in STEP_SHAPE_FIELDS]), min_size=1, max_size=40)


def assert_same_bits(block: np.ndarray, single: float) -> None:
    assert np.float64(single).view(np.uint64) == block.view(np.uint64)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.describe()["name"])
@settings(max_examples=40, deadline=None)
@given(rows=shape_rows)
def test_block_equals_rows_bit_for_bit(model, rows):
    shapes = np.array(rows, dtype=np.float64)   # [n, fields]
    block = model.step_times(shapes)             # [n]
    assert block.dtype == np.float64 and block.shape == (len(rows),)
    for i, row in enumerate(rows):
        one = model.step_times(shapes[i:i + 1])
        assert one.view(np.uint64)[0] == block.view(np.uint64)[i]
        assert_same_bits(block[i:i + 1], model.step_time(StepShape(*row)))


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.describe()["name"])
def test_steady_decode_run_in_one_block(model):
    # 500 decode steps of 37 requests whose contexts grow by one token per step.
    steps = np.arange(500)
    shapes = np.zeros((500, len(STEP_SHAPE_FIELDS)))
    shapes[:, STEP_SHAPE_FIELDS.index("decode_requests")] = 37
    shapes[:, STEP_SHAPE_FIELDS.index("decode_context_tokens")] = 37 * 300 + 37 * steps
    shapes[:, STEP_SHAPE_FIELDS.index("distinct_adapters")] = 11
    shapes[:, STEP_SHAPE_FIELDS.index("sum_ranks")] = 11 * 24
    shapes[:, STEP_SHAPE_FIELDS.index("lora_token_ranks")] = 37 * 24
    block = model.step_times(shapes)
    stepped = np.array([model.step_time(StepShape(
        decode_requests=37, decode_context_tokens=37 * 300 + 37 * int(i), distinct_adapters=11,
        sum_ranks=11 * 24, lora_token_ranks=37 * 24)) for i in steps])
    assert np.array_equal(block.view(np.uint64), stepped.view(np.uint64))
    assert np.all(np.diff(block) >= 0)  # longer contexts never cost less


@pytest.mark.parametrize("model", MODELS[:1] + MODELS[-1:], ids=lambda m: m.describe()["name"])
def test_step_times_rejects_wrong_widths(model):
    with pytest.raises(ValueError, match="StepShape field order"):
        model.step_times(np.zeros((3, len(STEP_SHAPE_FIELDS) - 1)))
    with pytest.raises(ValueError, match="StepShape field order"):
        model.step_times(np.zeros(len(STEP_SHAPE_FIELDS)))


def test_models_satisfy_the_protocol():
    assert all(isinstance(m, CostModel) for m in MODELS)
