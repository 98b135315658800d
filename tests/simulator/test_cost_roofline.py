"""The roofline cost model: physics sanity checks and published figures."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from manylora.engine.model_shape import LLAMA2_7B, LLAMA2_13B
from manylora.engine.step_shape import STEP_SHAPE_FIELDS, StepShape
from manylora.simulator.hardware import (
    A100_80GB, H100_SXM, H200, HARDWARE_PRESETS, GpuSpec, UnknownHardwareError, hardware_preset)
from manylora.simulator.roofline import RooflineCostModel

A100_7B = RooflineCostModel(A100_80GB, LLAMA2_7B)


def decode(batch: int, context: int) -> StepShape:
    return StepShape(decode_requests=batch, decode_context_tokens=batch * context)


def prefill(requests: int, length: int) -> StepShape:
    return StepShape(prefill_tokens=requests * length, prefill_requests=requests,
                     prefill_sq_tokens=requests * length * length)


def test_llama7b_batch1_decode_on_a100_is_weight_streaming():
    # 6.6 G parameters (without the embedding table) x 2 bytes = 13.2 GB per step.
    assert A100_7B.weight_bytes == pytest.approx(13.2e9, rel=0.01)
    pure_streaming = A100_7B.weight_bytes / A100_80GB.hbm_bytes_per_s  # 6.5 ms
    step = A100_7B.step_time(decode(1, 512))
    assert pure_streaming < step < 1.6 * pure_streaming
    phases = A100_7B.phases(decode(1, 512))
    compute_s, memory_s = phases["linear"]
    assert memory_s > 50 * compute_s  # deep in the memory-bound regime


def test_long_prefill_is_compute_bound():
    compute_s, memory_s = A100_7B.phases(prefill(1, 4096))["linear"]
    assert compute_s > 5 * memory_s
    # 2 FLOPs per parameter per token at 70% of 312 TFLOP/s, plus attention and overheads.
    floor = 2 * 6.6e9 * 4096 / (A100_80GB.peak_flops * A100_80GB.gemm_efficiency)
    assert floor < A100_7B.step_time(prefill(1, 4096)) < 1.5 * floor


def test_decode_crossover_batch_sits_at_the_ridge_point():
    def bound(batch):
        compute_s, memory_s = A100_7B.phases(decode(batch, 1))["linear"]
        return compute_s > memory_s
    crossover = next(b for b in range(1, 4096) if bound(b))
    ridge = (A100_80GB.peak_flops * A100_80GB.gemm_efficiency) / \
        (A100_80GB.hbm_bytes_per_s * A100_80GB.memory_efficiency)  # FLOPs per byte
    # Two FLOPs per two-byte weight per token: the crossover batch is the ridge in FLOPs/byte.
    assert crossover == pytest.approx(ridge, rel=0.05)


def test_batching_decode_raises_throughput_until_compute_bound():
    per_token = [A100_7B.step_time(decode(b, 256)) / b for b in (1, 2, 4, 8, 16, 32, 64)]
    assert all(a > b for a, b in zip(per_token, per_token[1:]))


@pytest.mark.parametrize("gpu", list(HARDWARE_PRESETS.values()), ids=list(HARDWARE_PRESETS))
@pytest.mark.parametrize("field", STEP_SHAPE_FIELDS)
def test_step_time_is_monotone_in_every_shape_field(gpu, field):
    model = RooflineCostModel(gpu, LLAMA2_13B, ("q", "k", "v", "o", "gate", "up", "down"))
    rng = np.random.default_rng(STEP_SHAPE_FIELDS.index(field))
    for _ in range(50):
        base = StepShape(*(int(v) for v in rng.integers(0, 5000, size=len(STEP_SHAPE_FIELDS))))
        for delta in (1, 10, 1000, 100_000):
            bigger = base._replace(**{field: getattr(base, field) + delta})
            assert model.step_time(bigger) >= model.step_time(base)


def test_faster_memory_and_smaller_models_are_faster_at_decode():
    times = {(g.name, m.name): RooflineCostModel(g, m).step_time(decode(8, 1024))
             for g in (A100_80GB, H100_SXM, H200) for m in (LLAMA2_7B, LLAMA2_13B)}
    for m in ("llama-2-7b", "llama-2-13b"):
        assert times["a100-80gb", m] > times["h100-sxm", m] > times["h200", m]
    for g in HARDWARE_PRESETS:
        assert times[g, "llama-2-13b"] > times[g, "llama-2-7b"]


@pytest.mark.parametrize("gpu, published_s", [(A100_80GB, 0.2340), (H100_SXM, 0.1538)])
def test_request_latency_is_a_tight_lower_bound_on_published_llama7b_figures(gpu, published_s):
    # NVIDIA NeMo Framework performance page, Llama-2-7B inference, batch 1, TP 1,
    # 128 input / 20 output tokens: 234.0 ms on A100 80GB SXM4, 153.8 ms on H100 80GB HBM3.
    model = RooflineCostModel(gpu, LLAMA2_7B)
    latency = model.step_time(prefill(1, 128)) + sum(
        model.step_time(decode(1, 128 + i)) for i in range(1, 20))
    assert 0.7 * published_s < latency < published_s


def test_lora_terms_cost_adapter_reads_and_token_flops():
    base = decode(32, 512)
    with_lora = base._replace(distinct_adapters=32, sum_ranks=32 * 64,
                              lora_token_ranks=32 * 64)
    extra = A100_7B.step_time(with_lora) - A100_7B.step_time(base)
    # q,k,v,o rank 64 on 7B: 32 layers x 4 x 64 x (4096 + 4096) x 2 bytes = 134 MB per adapter.
    adapter_bytes = 32 * 4 * 64 * 8192 * 2
    expected = 32 * adapter_bytes / (A100_80GB.hbm_bytes_per_s * A100_80GB.memory_efficiency)
    assert extra == pytest.approx(expected, rel=1e-9)


def test_adapter_loads_go_over_the_host_link():
    size = 32 * 4 * 16 * 8192 * 2  # rank-16 q,k,v,o adapter of Llama-2-7B: 16.8 MB
    host = A100_7B.adapter_load_time(size, "host")
    assert host == pytest.approx(10e-6 + size / (32e9 * 0.8))
    assert A100_7B.adapter_load_time(size, "disk") > host
    blocked = decode(4, 100)._replace(adapter_loads=1, adapter_load_bytes=size)
    assert A100_7B.step_time(blocked) - A100_7B.step_time(decode(4, 100)) == \
        pytest.approx(host)
    with pytest.raises(ValueError, match="tier"):
        A100_7B.adapter_load_time(size, "nvlink")


def test_empty_step_costs_nothing():
    assert A100_7B.step_time(StepShape()) == 0.0


def test_presets_and_validation():
    assert hardware_preset("h200") is H200
    with pytest.raises(UnknownHardwareError, match="a100-80gb, h100-sxm, h200"):
        hardware_preset("v100")
    with pytest.raises(ValueError, match="GpuSpec.memory_efficiency"):
        dataclasses.replace(A100_80GB, memory_efficiency=1.5)
    with pytest.raises(ValueError, match="GpuSpec.peak_flops"):
        dataclasses.replace(A100_80GB, peak_flops=0.0)
    with pytest.raises(ValueError, match="GpuSpec.step_overhead_s"):
        dataclasses.replace(A100_80GB, step_overhead_s=float("nan"))
    assert isinstance(A100_80GB, GpuSpec)
