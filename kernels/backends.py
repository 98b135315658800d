"""Kernel backends by name, so the engine picks implementations without branching on strings.

``LORA_BACKENDS``: ``triton`` (the heterogeneous pool kernels), ``torch`` (the plain-torch
references: a loop over the step's distinct adapters; what the engine runs on CPU) and
``padded`` (the S-LoRA ablation: per-token weights padded to the largest rank, bmm).
``ATTENTION_BACKENDS``: ``triton`` and ``torch``. Every backend of a kind has the same call
signatures (see ``lora_ops`` and ``attention_ops``).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

import torch

from manylora.kernels import attention_ops, lora_ops, lora_padded
from manylora.kernels.batch_meta import BatchMeta

LoraOp = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, BatchMeta, int], None]


class UnknownBackendError(ValueError):
    """A backend name that no registry holds."""


@dataclass(frozen=True)
class LoraBackend:
    """``y += scale * (x @ A^T) @ B`` for one layer and target, over a step's rows."""

    name: str
    decode: LoraOp   # (y [D, d_out], x [D, d_in], pool_layer, meta, target)
    prefill: LoraOp  # (y [P, d_out], x [P, d_in], pool_layer, meta, target)

    def apply(self, y: torch.Tensor, x: torch.Tensor, pool_layer: torch.Tensor,
              meta: BatchMeta, target: int) -> None:
        """All T = P + D rows of the step: y [T, d_out] += LoRA(x [T, d_in]) in place."""
        split = meta.num_prefill_tokens
        if split:
            self.prefill(y[:split], x[:split], pool_layer, meta, target)
        if meta.num_decode_tokens:
            self.decode(y[split:], x[split:], pool_layer, meta, target)


@dataclass(frozen=True)
class AttentionBackend:
    """Attention and KV store for one layer over a step's rows."""

    name: str
    decode: Callable[[torch.Tensor, torch.Tensor, BatchMeta, float], torch.Tensor]
    prefill: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, BatchMeta, float],
                      torch.Tensor]
    kv_store: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, BatchMeta], None]


LORA_BACKENDS: Mapping[str, LoraBackend] = MappingProxyType({b.name: b for b in (
    LoraBackend("triton", lora_ops.lora_decode_triton, lora_ops.lora_prefill_triton),
    LoraBackend("torch", lora_ops.lora_decode_torch, lora_ops.lora_prefill_torch),
    LoraBackend("padded", lora_padded.lora_decode_padded, lora_padded.lora_prefill_padded),
)})

ATTENTION_BACKENDS: Mapping[str, AttentionBackend] = MappingProxyType({b.name: b for b in (
    AttentionBackend("triton", attention_ops.decode_attention_triton,
                     attention_ops.prefill_attention_triton, attention_ops.kv_store_triton),
    AttentionBackend("torch", attention_ops.decode_attention_torch,
                     attention_ops.prefill_attention_torch, attention_ops.kv_store_torch),
)})

# On CPU the Triton kernels only run interpreted (for tests); the engine runs the references.
_DEFAULT_BY_DEVICE_TYPE: Mapping[str, str] = MappingProxyType({"cpu": "torch"})


def _lookup(registry: Mapping, kind: str, name: str):
    try:
        return registry[name]
    except KeyError:
        raise UnknownBackendError(f"unknown {kind} backend {name!r}; choose one of "
                                  f"{', '.join(registry)}") from None


def lora_backend(name: str) -> LoraBackend:
    return _lookup(LORA_BACKENDS, "LoRA", name)


def attention_backend(name: str) -> AttentionBackend:
    return _lookup(ATTENTION_BACKENDS, "attention", name)


def default_backend_name(device: torch.device) -> str:
    """``torch`` on CPU, ``triton`` on accelerators (for both kinds)."""
    return _DEFAULT_BY_DEVICE_TYPE.get(torch.device(device).type, "triton")
