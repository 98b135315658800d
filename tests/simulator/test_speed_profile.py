"""SpeedProfile: a machine whose speed varies, simulated in work time and reported in wall
time; checked against closed forms of single-server queues."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from manylora.analysis.experiment import Deployment
from manylora.engine.model_shape import LLAMA2_7B
from manylora.engine.scheduler_config import ControlConfig
from manylora.simulator.queueing_cost_models import ConstantCostModel
from manylora.simulator.simulation import simulate
from manylora.simulator.speed_profile import SpeedProfile, to_wall_time, work_time_trace
from manylora.traces import Trace
from tests.simulator.test_sim_queueing import lindley

CONTROL = ControlConfig.from_flat({"max_batch_size": 1, "pool_pages": 64})
ADAPTERS = pd.DataFrame({"adapter_id": [0], "rank": [8], "alpha": [16.0], "targets": ["q"]})


def single_token_trace(arrivals: np.ndarray) -> Trace:
    requests = pd.DataFrame({"request_id": np.arange(len(arrivals)), "arrival_s": arrivals,
                             "adapter_id": -1, "prompt_len": 1, "output_len": 1})
    return Trace(requests, ADAPTERS, {"generator": "test", "params": {}, "seed": 0})


def test_work_and_wall_time_are_inverse_and_piecewise_linear():
    speed = SpeedProfile((0.0, 10.0, 15.0), (1.0, 2.0, 0.5))
    wall = np.array([0.0, 5.0, 10.0, 12.0, 15.0, 16.0])
    work = speed.to_work(wall)
    # 2x slower from 10 s: 2 s of wall do 1 s of work; 2x faster from 15 s
    assert work == pytest.approx([0.0, 5.0, 10.0, 11.0, 12.5, 14.5])
    assert speed.to_wall(work) == pytest.approx(wall)
    assert np.isnan(speed.to_wall(np.array([np.nan]))[0])
    assert speed.mean_factor(15.0) == pytest.approx(15.0 / 12.5)
    assert SpeedProfile.constant(1.3).mean_factor(100.0) == pytest.approx(1.3)


def test_from_passes_takes_the_running_median_from_midpoints():
    speed = SpeedProfile.from_passes([0.0, 1.0, 2.0, 3.0, 4.0], [0.2, 0.2, 0.4, 0.22, 0.2],
                                     reference_s=0.2, window=3)
    # pass k holds from the midpoint after pass k-1, at the median of passes k-1, k, k+1:
    # (0.2, 0.2), (0.2, 0.2, 0.4), (0.2, 0.4, 0.22), (0.4, 0.22, 0.2), (0.22, 0.2) over 0.2
    assert speed.starts == (0.0, 0.5, 1.5, 2.5, 3.5)
    assert speed.factors == pytest.approx((1.0, 1.0, 1.1, 1.1, 1.05))
    assert SpeedProfile.from_passes([0.0, 1.0], [0.2, 0.4], 0.2, 1).factors == (1.0, 2.0)
    # passes at one moment: the last one holds from there
    assert SpeedProfile.from_passes([0.0, 0.0, 0.0], [0.2, 0.3, 0.4], 0.2, 1) == \
        SpeedProfile((0.0,), (2.0,))
    with pytest.raises(ValueError, match="time order"):
        SpeedProfile.from_passes([1.0, 0.0], [0.2, 0.2], 0.2, 1)


@pytest.mark.parametrize("starts, factors, message", [
    ((), (), "at least one"),
    ((1.0,), (1.0,), "begin at 0"),
    ((0.0, 2.0, 2.0), (1.0, 1.0, 1.0), "increase"),
    ((0.0,), (0.0,), "finite and > 0"),
])
def test_bad_profiles_are_refused(starts, factors, message):
    with pytest.raises(ValueError, match=message):
        SpeedProfile(starts, factors)


def test_a_constant_slowdown_waits_as_the_recursion_over_slower_service():
    """D/1 queue, 0.8 s steps on a machine 1.5x slower: Lindley's waits over 1.2 s steps."""
    rng = np.random.default_rng(5)
    arrivals = np.cumsum(rng.exponential(1.0 / 0.6, 2000))
    trace = single_token_trace(arrivals)
    speed = SpeedProfile.constant(1.5)
    result = to_wall_time(simulate(work_time_trace(trace, speed), ConstantCostModel(0.8),
                                   CONTROL, LLAMA2_7B), trace, speed)
    assert [r.arrival_s for r in result.requests] == arrivals.tolist()
    wait = np.array([r.admitted_s - r.arrival_s for r in result.requests])
    assert np.abs(wait - lindley(arrivals, np.full(len(arrivals), 1.2))).max() < 1e-9
    _, times = result.steps.columns()
    assert times[:, 1] == pytest.approx(1.2)


def test_a_slow_spell_builds_a_queue_where_it_happens(tmp_path):
    """One request per second, 0.8 s steps: never a wait, until the machine runs 2x slower
    from 10 to 20 s, where each step takes 1.6 s and the queue grows by 0.6 s a request; it
    drains once the machine is back to speed."""
    trace = single_token_trace(np.arange(40, dtype=float))
    speed = SpeedProfile((0.0, 10.0, 20.0), (1.0, 2.0, 1.0))
    setup = Deployment(ConstantCostModel(0.8), LLAMA2_7B, CONTROL)
    run = setup.simulate_run(trace, tmp_path / "sim", 0, speed)
    requests = pd.read_csv(run / "requests.csv")
    wait = (requests["admitted_s"] - requests["arrival_s"]).to_numpy()
    assert wait[:10] == pytest.approx(0.0, abs=1e-6)
    assert wait[10:16] == pytest.approx(0.6 * np.arange(6), abs=1e-6)
    # request 16's step straddles 20 s (0.4 s slow, then 0.6 s at speed): the longest
    # wait, 3.6 s, then 0.2 s less per request until request 35
    assert wait.max() == pytest.approx(3.6, abs=1e-6) and wait[16] == pytest.approx(3.6)
    assert wait[18] == pytest.approx(3.4, abs=1e-6)
    assert wait[35:] == pytest.approx(0.0, abs=1e-6)
    steps = pd.read_csv(run / "steps.csv")
    assert steps["duration_s"].to_numpy()[:10] == pytest.approx(0.8, abs=1e-6)
    assert steps["duration_s"].to_numpy()[11] == pytest.approx(1.6, abs=1e-6)
    assert (steps["start_s"].iloc[1:].to_numpy()
            >= (steps["start_s"] + steps["duration_s"]).iloc[:-1].to_numpy() - 1e-6).all()
    assert json.loads((run / "meta.json").read_text())["speed_profile"]["factors"] == [1, 2, 1]
