"""Speed anchors: fixed steps counted like the scheduler counts them, timed inside a replay
whose clock leaves them out."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from manylora.engine.anchor_config import (AnchorConfig, AnchorMismatchError, check_same_steps,
                                           anchor_passes, anchor_points, anchor_record,
                                           anchor_steps, anchor_times, mean_pass)
from manylora.engine.engine_config import EngineConfig
from manylora.engine.make_tiny import TinyModelSpec, make_tiny
from manylora.engine.replay import ReplayConfig, replay_trace
from manylora.traces import Trace, write_trace

SMALL = AnchorConfig(decode_batches=(1, 6), decode_context=20, prefills=((2, 16),),
                     mixed_decodes=3, ranks=(4, 8), max_adapters=4, every_s=0.2)


def test_points_are_decodes_alone_then_prefills_beside_decodes():
    shapes = [p.shape() for p in anchor_points(SMALL)]
    assert [s.decode_requests for s in shapes] == [1, 6, 3]
    assert [s.prefill_requests for s in shapes] == [0, 0, 2]
    # batch 6 over 4 adapters of ranks 4, 8, 4, 8 (slots 0..3, then 0, 1 again)
    six = shapes[1]
    assert six.decode_context_tokens == 120 and six.distinct_adapters == 4
    assert six.sum_ranks == 24 and six.lora_token_ranks == 4 + 8 + 4 + 8 + 4 + 8
    mixed = shapes[2]  # 2 prompts of 16 tokens (slots 0, 1) and 3 decodes (slots 2, 3, 0)
    assert mixed.prefill_tokens == 32 and mixed.prefill_sq_tokens == 2 * 16 * 16
    assert mixed.lora_token_ranks == 16 * 4 + 16 * 8 + 4 + 8 + 4
    assert AnchorConfig().max_adapters == max(p.shape().distinct_adapters
                                              for p in anchor_points(AnchorConfig()))


@pytest.mark.parametrize("options, message", [
    ({"decode_batches": (), "prefills": ()}, "needs decode_batches or prefills"),
    ({"decode_batches": (0,)}, "must be >= 1"),
    ({"ranks": ()}, "must be >= 1"),
    ({"every_s": 0.0}, "every_s must be > 0"),
    ({"settle_passes": -1}, "settle_passes must be >= 0"),
])
def test_config_names_bad_fields(options, message):
    with pytest.raises(ValueError, match=message):
        AnchorConfig(**options)


def test_mean_pass_is_trimmed_and_steps_must_match():
    assert mean_pass([0.2, 0.19, 0.21]) == pytest.approx(0.2)
    # the slowest and fastest 10% of the passes are cut before averaging
    assert mean_pass([0.2] * 8 + [2.0, 0.02]) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="without timed passes"):
        mean_pass([])
    steps = anchor_steps(SMALL)
    check_same_steps(steps, anchor_steps(SMALL))
    with pytest.raises(AnchorMismatchError, match="different steps"):
        check_same_steps(steps, anchor_steps(AnchorConfig()))


def test_records_round_trip_and_bad_records_name_the_field():
    record = anchor_record(SMALL, [(0.0, 0.1), (3.0, 0.12)])
    assert anchor_passes(record, "x") == (anchor_steps(SMALL), [0.1, 0.12])
    assert record["config"]["prefills"] == [[2, 16]]
    with pytest.raises(ValueError, match=r"run/meta.json: anchor.passes\[1\].seconds"):
        anchor_passes({**record, "passes": [{"seconds": 0.1}, {"seconds": -1}]},
                      "run/meta.json: anchor")
    assert anchor_times(record, "x") == [0.0, 3.0]
    with pytest.raises(ValueError, match=r"x.passes\[1\].at_s: expected seconds >= 3"):
        anchor_times({"passes": [{"at_s": 3.0}, {"at_s": 1.0}]}, "x")
    with pytest.raises(ValueError, match="x.steps"):
        anchor_passes({**record, "steps": []}, "x")


def test_a_replay_times_its_anchor_with_the_clock_paused(tmp_path):
    spec = TinyModelSpec(layers=2, hidden=64, intermediate=128, heads=4, kv_heads=2, vocab=256,
                         max_position_embeddings=128)
    make_tiny(tmp_path / "tiny", spec, num_adapters=2, ranks=[4, 8], seed=0)
    n = 12
    requests = pd.DataFrame({"request_id": np.arange(n), "arrival_s": 0.1 * np.arange(n),
                             "adapter_id": np.arange(n) % 2, "prompt_len": 8,
                             "output_len": 6})
    adapters = pd.DataFrame({"adapter_id": [0, 1], "rank": [4, 8], "alpha": [8.0, 16.0],
                             "targets": ["q;k;v;o", "q;k;v;o"]})
    write_trace(Trace(requests, adapters, {"generator": "test", "params": {}, "seed": 0}),
                tmp_path / "trace")
    engine = EngineConfig(threads=1)
    plain = replay_trace(tmp_path / "trace", tmp_path / "tiny", tmp_path / "tiny" / "adapters",
                         tmp_path / "plain", engine)
    anchored = replay_trace(tmp_path / "trace", tmp_path / "tiny",
                            tmp_path / "tiny" / "adapters", tmp_path / "anchored", engine,
                            ReplayConfig(anchor=SMALL))
    import json
    meta = json.loads((anchored / "meta.json").read_text())
    steps, passes = anchor_passes(meta["anchor"], "meta")
    assert steps == anchor_steps(SMALL)
    at = [p["at_s"] for p in meta["anchor"]["passes"]]
    # the first pass as the clock starts, one each every_s, one at the end
    assert at[0] == pytest.approx(0.0, abs=0.05) and len(passes) >= 3
    assert np.all(np.diff(at[:-1]) >= SMALL.every_s - 1e-9)
    assert "anchor" not in json.loads((plain / "meta.json").read_text())
    # each pass lists every anchor step's seconds, in the steps' order, summing to the pass
    for entry in meta["anchor"]["passes"]:
        assert len(entry["step_seconds"]) == len(steps) and min(entry["step_seconds"]) > 0
        assert sum(entry["step_seconds"]) == pytest.approx(entry["seconds"])
    # steps tile the replay's clock, which leaves the passes out: the step rows still join
    steps_csv = pd.read_csv(anchored / "steps.csv")
    ends = (steps_csv["start_s"] + steps_csv["duration_s"]).to_numpy()[:-1]
    starts = steps_csv["start_s"].to_numpy()[1:]
    assert np.all(starts >= ends - 1e-9)
    # and no step (the tiny model's take about a millisecond) absorbed a pass
    assert steps_csv["duration_s"].max() < sum(passes) / len(passes) * 5
    finished = pd.read_csv(anchored / "requests.csv")
    assert (finished["status"] == "finished").all() and len(finished) == n


@pytest.mark.parametrize("settle", [0, 2])
def test_each_timed_pass_follows_its_untimed_settling_passes(tmp_path, settle):
    from manylora.engine.anchor import AnchorRunner
    from manylora.engine.engine import Engine

    spec = TinyModelSpec(layers=1, hidden=32, intermediate=64, heads=4, kv_heads=2, vocab=64,
                         max_position_embeddings=128)
    make_tiny(tmp_path / "tiny", spec, num_adapters=0, ranks=[4], seed=0)
    engine = Engine(tmp_path / "tiny", None, EngineConfig(threads=1))
    config = dataclasses.replace(SMALL, settle_passes=settle)
    runner = AnchorRunner(engine.model, engine.layout, engine.dtype, config, ("q", "v"))
    ran = []
    run = runner.runner.run
    runner.runner.run = lambda rows: ran.append(rows) or run(rows)
    seconds = runner.timed_pass()
    steps = len(anchor_points(config))
    assert len(seconds) == steps and min(seconds) > 0
    # every step once per settling pass, then once timed
    assert len(ran) == steps * (settle + 1)
    assert all(sum(r is rows for r in ran) == settle + 1 for rows in runner.rows)
