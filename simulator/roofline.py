"""Analytic roofline cost model: step time from FLOPs and bytes over a device's peaks.

For hardware that has not been profiled. Each phase of a step runs at the slower of its compute
time (FLOPs over peak x efficiency) and its memory time (bytes over HBM bandwidth x
efficiency); phases run one after another, so their times add, plus fixed per-step and
per-layer overheads (hardware.py) and any adapter copies that block the step:

- linear layers: all tokens of the step go through every weight matrix once. FLOPs
  ``2 * params`` per token (the LM head only for each request's last token); bytes: the
  weights, streamed once per step. This is what makes small decode batches memory-bound.
- prefill attention (causal): ``L (L + 1) / 2`` query-key pairs per prompt of length L, 4 FLOPs
  per pair per query channel (QK^T and PV) per layer; bytes: Q, K, V read, output and K/V
  into the pool written, per token.
- decode attention: every context token's K and V are read once per layer (4 FLOPs per channel
  per context token); memory-bound at any batch size.
- LoRA: each distinct adapter's A and B read once (``sum_ranks``); FLOPs
  ``2 * rank * (d_in + d_out)`` per token per adapted target (``lora_token_ranks``).

Activation traffic between kernels is left out: it matters only at batch sizes where the
linear layers are compute-bound anyway.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar

import numpy as np

from manylora.engine.model_shape import TARGETS, ModelShape, bytes_per_token, canonical_target
from manylora.engine.step_shape import StepShape
from manylora.simulator.adapter_load_model import AdapterLoadModel, TierCost
from manylora.simulator.cost_base import step_columns
from manylora.simulator.hardware import GpuSpec

DEFAULT_LORA_TARGETS: tuple[str, ...] = ("q", "k", "v", "o")  # as in S-LoRA's experiments


class RooflineCostModel:
    """Roofline step times for one model shape on one GPU preset."""

    deterministic: ClassVar[bool] = True  # a function of the shape: blocks may be costed at once

    def __init__(self, gpu: GpuSpec, shape: ModelShape,
                 lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS) -> None:
        targets = tuple(dict.fromkeys(canonical_target(t) for t in lora_targets))
        if not targets:
            raise ValueError("RooflineCostModel.lora_targets must name at least one target")
        self.gpu, self.shape = gpu, shape
        self.lora_targets = tuple(t for t in TARGETS if t in targets)
        layers, dtype_bytes = shape.num_layers, shape.dtype_bytes
        h, q, kv = shape.hidden_size, shape.q_width, shape.kv_width
        linear_params = layers * (h * q + 2 * h * kv + q * h + 3 * h * shape.intermediate_size)
        head_params = shape.vocab_size * h
        gemm_rate = gpu.peak_flops * gpu.gemm_efficiency
        attention_rate = gpu.peak_flops * gpu.attention_efficiency
        memory_rate = gpu.hbm_bytes_per_s * gpu.memory_efficiency
        lora_width = sum(sum(shape.target_dims(t)) for t in self.lora_targets)
        # Seconds per unit of each shape term; the formula below only multiplies and adds.
        self._linear_s_per_token = 2.0 * linear_params / gemm_rate
        self._head_s_per_row = 2.0 * head_params / gemm_rate
        self._weights_s = (linear_params + head_params) * dtype_bytes / memory_rate
        self._attention_s_per_pair = 4.0 * q * layers / attention_rate
        self._prefill_io_s_per_token = (2 * q + 4 * kv) * layers * dtype_bytes / memory_rate
        self._kv_read_s_per_token = bytes_per_token(shape) / memory_rate
        self._lora_s_per_token_rank = 2.0 * lora_width * layers / gemm_rate
        self._lora_read_s_per_rank = lora_width * layers * dtype_bytes / memory_rate
        self._overhead_s = gpu.step_overhead_s + layers * gpu.layer_overhead_s
        self._h2d_s_per_byte = 1.0 / (gpu.h2d_bytes_per_s * gpu.h2d_efficiency)
        self.weight_bytes = (linear_params + head_params) * dtype_bytes
        self.loads = AdapterLoadModel(
            host=TierCost(gpu.h2d_latency_s, gpu.h2d_bytes_per_s * gpu.h2d_efficiency),
            disk=TierCost(gpu.disk_latency_s, gpu.disk_bytes_per_s))

    def phases(self, s: StepShape, minimum: Callable = min) -> dict[str, tuple[Any, Any]]:
        """(compute seconds, memory seconds) of each phase, for a shape or a shape of columns."""
        tokens = s.prefill_tokens + s.decode_requests
        logit_rows = s.prefill_requests + s.decode_requests
        active = minimum(tokens, 1)  # an empty step streams no weights
        pairs = (s.prefill_sq_tokens + s.prefill_tokens) * 0.5
        return {
            "linear": (tokens * self._linear_s_per_token + logit_rows * self._head_s_per_row,
                       active * self._weights_s),
            "prefill_attention": (pairs * self._attention_s_per_pair,
                                  s.prefill_tokens * self._prefill_io_s_per_token),
            "decode_attention": (s.decode_context_tokens * self._attention_s_per_pair,
                                 s.decode_context_tokens * self._kv_read_s_per_token),
            "lora": (s.lora_token_ranks * self._lora_s_per_token_rank,
                     s.sum_ranks * self._lora_read_s_per_rank),
        }

    def _evaluate(self, s: StepShape, maximum: Callable, minimum: Callable) -> Any:
        t = minimum(s.prefill_tokens + s.decode_requests, 1) * self._overhead_s
        for compute_s, memory_s in self.phases(s, minimum).values():
            t = t + maximum(compute_s, memory_s)
        return t + s.adapter_loads * self.gpu.h2d_latency_s + \
            s.adapter_load_bytes * self._h2d_s_per_byte

    def step_times(self, shapes: np.ndarray) -> np.ndarray:
        return np.asarray(self._evaluate(step_columns(shapes), np.maximum, np.minimum),
                          dtype=np.float64)

    def step_time(self, shape: StepShape) -> float:
        return float(self._evaluate(shape, max, min))

    def adapter_load_time(self, num_bytes: int, tier: str) -> float:
        return self.loads.time(num_bytes, tier)

    def describe(self) -> dict[str, Any]:
        return {"name": "roofline", "hardware": self.gpu.to_dict(), "model_shape": self.shape.name,
                "lora_targets": list(self.lora_targets)}
