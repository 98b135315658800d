"""A broken adapter folder fails only its own requests; the others run on, still exact.

Broken at registration: missing adapter_config.json, missing or corrupt (truncated) safetensors,
a tensor whose shape does not fit the base model, an unsupported target module. Broken at load
time: weights that read as NaN. Each rejects its requests with a reason naming the file.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from engine_cases import one_cpu_thread  # noqa: F401 (autouse fixture)
from engine_cases import ZOO, Oracle, prompts, write_checkpoint, write_zoo
from manylora.engine.engine import Engine
from manylora.engine.engine_config import EngineConfig
from manylora.engine.sampling import SamplingParams
from manylora.engine.scheduler_config import ControlConfig, MemoryConfig

WEIGHTS = "adapter_model.safetensors"


def _break_missing_config(folder):
    (folder / "adapter_config.json").unlink()
    return folder / "adapter_config.json"


def _break_missing_weights(folder):
    (folder / WEIGHTS).unlink()
    return folder / WEIGHTS


def _break_truncated(folder):
    data = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(data[:len(data) // 2])
    return folder / WEIGHTS


def _break_shape(folder):
    tensors = load_file(folder / WEIGHTS)
    key = next(k for k in tensors if k.endswith("lora_A.weight"))
    tensors[key] = np.zeros((tensors[key].shape[0], tensors[key].shape[1] + 3), np.float32)
    save_file(tensors, folder / WEIGHTS)
    return folder / WEIGHTS


def _break_target(folder):
    cfg = json.loads((folder / "adapter_config.json").read_text())
    cfg["target_modules"] = cfg["target_modules"] + ["lm_head"]
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    return folder / "adapter_config.json"


def _break_nan(folder):
    tensors = load_file(folder / WEIGHTS)
    key = next(k for k in tensors if k.endswith("lora_B.weight"))
    tensors[key][0, 0] = np.nan
    save_file(tensors, folder / WEIGHTS)
    return folder / WEIGHTS


BREAKERS = [_break_missing_config, _break_missing_weights, _break_truncated, _break_shape,
            _break_target, _break_nan]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    model_dir, config = write_checkpoint(root, "llama", seed=7)
    cases = [ZOO[0], ZOO[1], ZOO[2]] + [ZOO[i % len(ZOO)] for i in range(len(BREAKERS))]
    folders = write_zoo(root / "adapters", config, cases=cases)
    good = {i: folders[i] for i in range(3)}
    broken_files = {3 + i: breaker(folders[3 + i]) for i, breaker in enumerate(BREAKERS)}
    return model_dir, config, folders, good, broken_files


def test_broken_adapters_reject_only_their_requests(setup):
    model_dir, config, folders, good, broken_files = setup
    rng = np.random.default_rng(0)
    # every broken adapter gets two requests; the good ones and the base model run beside them
    ids = list(good) + [-1] + [a for a in broken_files for _ in range(2)] + list(good)
    batch = prompts(rng, len(ids), config.vocab_size)
    engine = Engine(model_dir, folders, EngineConfig(
        control=ControlConfig(memory=MemoryConfig(pool_pages=5000)), keep_logits=True))
    outputs = engine.generate(batch, ids, SamplingParams(max_tokens=6, ignore_eos=True))
    oracle = Oracle(model_dir, good)
    for prompt, aid, out in zip(batch, ids, outputs):
        if aid in broken_files:
            assert out.status == "rejected", (aid, out)
            assert str(broken_files[aid]) in out.reason, (aid, out.reason)
            assert "," not in out.reason and '"' not in out.reason
            continue
        assert out.status == "finished" and len(out.tokens) == 6
        ref = oracle.logits(prompt + out.tokens[:-1], aid)[len(prompt) - 1:]
        torch.testing.assert_close(out.logits, ref, atol=1e-4, rtol=0)
    # the NaN adapter validated at registration and failed at load time
    nan_id = 3 + BREAKERS.index(_break_nan)
    assert nan_id not in engine.catalog or nan_id in engine.store.broken
    assert "NaN" in engine.requests[ids.index(nan_id)].reason
    assert engine.scheduler.pool.free_pages == engine.scheduler.pool.num_pages
    # later requests for a broken adapter are rejected at once, good ones still run
    late = engine.add_request(batch[0], nan_id, SamplingParams(max_tokens=2))
    assert late.state.value == "rejected"


def test_nan_adapter_fails_queued_requests_too(setup):
    """Requests of a load-failing adapter still waiting in the queue are rejected as well."""
    model_dir, config, folders, good, broken_files = setup
    nan_id = 3 + BREAKERS.index(_break_nan)
    engine = Engine(model_dir, {0: folders[0], nan_id: folders[nan_id]}, EngineConfig(
        control=ControlConfig.from_flat({"pool_pages": 5000, "max_batch_size": 1})))
    rng = np.random.default_rng(1)
    ids = [nan_id, nan_id, 0, nan_id]
    outputs = engine.generate(prompts(rng, 4, config.vocab_size), ids,
                              SamplingParams(max_tokens=3, ignore_eos=True))
    assert [o.status for o in outputs] == ["rejected", "rejected", "finished", "rejected"]
    assert all(str(broken_files[nan_id]) in o.reason for o in outputs if o.status == "rejected")
    assert engine.scheduler.pool.free_pages == engine.scheduler.pool.num_pages
