"""Kernel backends by name, so the engine picks implementations without branching on strings.

``LORA_BACKENDS``: ``triton`` (the heterogeneous pool kernels), ``torch`` (plain torch, what
the engine runs on CPU: per call the references, per step ``lora_torch``'s plan) and
``padded`` (the S-LoRA ablation: per-token weights padded to the largest rank, bmm).
``ATTENTION_BACKENDS``: ``triton`` and ``torch``. Every backend of a kind has the same call
signatures (see ``lora_ops`` and ``attention_ops``).

The engine works a step at a time: ``begin_step`` turns the step's ``BatchMeta`` into a
``LoraStep`` / ``AttentionStep`` that every layer of the step calls. A backend may plan there
once per step (the torch backends do: ``lora_torch``, ``attention_torch``); the others are
wrapped to call their per-call ops (``apply``, ``decode`` ...) with the step's metadata.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping, Protocol, Sequence

import torch

from manylora.kernels import attention_ops, lora_ops, lora_padded
from manylora.kernels.attention_torch import TorchAttentionStep
from manylora.kernels.batch_meta import BatchMeta
from manylora.kernels.lora_torch import TorchLoraStep

LoraOp = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, BatchMeta, int], None]


class LoraStep(Protocol):
    """One step's LoRA, called by every layer."""

    def apply(self, y: torch.Tensor, x: torch.Tensor, layer: int,
              targets: tuple[int, ...]) -> None:
        """y [T, sum of the targets' d_out] (their outputs side by side, in ``targets``
        order) += LoRA of each target over x [T, d_in], in layer ``layer`` of the pool."""


class AttentionStep(Protocol):
    """One step's attention and KV store, called by every layer."""

    def decode(self, q: torch.Tensor, pool_layer: torch.Tensor, scale: float
               ) -> torch.Tensor: ...

    def prefill(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float
                ) -> torch.Tensor: ...

    def kv_store(self, k: torch.Tensor, v: torch.Tensor, pool_layer: torch.Tensor) -> None: ...


LoraPlanner = Callable[[BatchMeta, torch.Tensor, Sequence[tuple[int, int]]], LoraStep]
AttentionPlanner = Callable[[BatchMeta], AttentionStep]


class UnknownBackendError(ValueError):
    """A backend name that no registry holds."""


@dataclass(frozen=True)
class LoraBackend:
    """``y += scale * (x @ A^T) @ B`` for one layer and target, over a step's rows."""

    name: str
    decode: LoraOp   # (y [D, d_out], x [D, d_in], pool_layer, meta, target)
    prefill: LoraOp  # (y [P, d_out], x [P, d_in], pool_layer, meta, target)
    planner: LoraPlanner | None = None  # a per-step plan instead of per-call ops

    def apply(self, y: torch.Tensor, x: torch.Tensor, pool_layer: torch.Tensor,
              meta: BatchMeta, target: int) -> None:
        """All T = P + D rows of the step: y [T, d_out] += LoRA(x [T, d_in]) in place."""
        split = meta.num_prefill_tokens
        if split:
            self.prefill(y[:split], x[:split], pool_layer, meta, target)
        if meta.num_decode_tokens:
            self.decode(y[split:], x[split:], pool_layer, meta, target)

    def begin_step(self, meta: BatchMeta, pool: torch.Tensor,
                   target_dims: Sequence[tuple[int, int]]) -> LoraStep:
        """The step's LoRA over pool [L, num_pages, page_elems]; ``target_dims`` gives
        (d_in, d_out) of every target, in the order of the metadata's targets."""
        if self.planner is not None:
            return self.planner(meta, pool, target_dims)
        return _PerCallLora(self, meta, pool, tuple(target_dims))


@dataclass(frozen=True)
class AttentionBackend:
    """Attention and KV store for one layer over a step's rows."""

    name: str
    decode: Callable[[torch.Tensor, torch.Tensor, BatchMeta, float], torch.Tensor]
    prefill: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, BatchMeta, float],
                      torch.Tensor]
    kv_store: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, BatchMeta], None]
    planner: AttentionPlanner | None = None  # a per-step plan instead of per-call ops

    def begin_step(self, meta: BatchMeta) -> AttentionStep:
        if self.planner is not None:
            return self.planner(meta)
        return _PerCallAttention(self, meta)


@dataclass(frozen=True)
class _PerCallLora:
    """A step of a backend without a planner: its ops, one call per layer and target."""

    backend: LoraBackend
    meta: BatchMeta
    pool: torch.Tensor                    # [L, num_pages, page_elems]
    dims: tuple[tuple[int, int], ...]     # (d_in, d_out) per target

    def apply(self, y: torch.Tensor, x: torch.Tensor, layer: int,
              targets: tuple[int, ...]) -> None:
        col = 0
        for t in targets:
            width = self.dims[t][1]
            if self.meta.lora_max_ranks[t]:
                self.backend.apply(y[:, col:col + width], x, self.pool[layer], self.meta, t)
            col += width


@dataclass(frozen=True)
class _PerCallAttention:
    """A step of an attention backend without a planner: its per-call ops."""

    backend: AttentionBackend
    meta: BatchMeta

    def decode(self, q: torch.Tensor, pool_layer: torch.Tensor, scale: float) -> torch.Tensor:
        return self.backend.decode(q, pool_layer, self.meta, scale)

    def prefill(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                scale: float) -> torch.Tensor:
        return self.backend.prefill(q, k, v, self.meta, scale)

    def kv_store(self, k: torch.Tensor, v: torch.Tensor, pool_layer: torch.Tensor) -> None:
        self.backend.kv_store(k, v, pool_layer, self.meta)


LORA_BACKENDS: Mapping[str, LoraBackend] = MappingProxyType({b.name: b for b in (
    LoraBackend("triton", lora_ops.lora_decode_triton, lora_ops.lora_prefill_triton),
    LoraBackend("torch", lora_ops.lora_decode_torch, lora_ops.lora_prefill_torch,
                TorchLoraStep),
    LoraBackend("padded", lora_padded.lora_decode_padded, lora_padded.lora_prefill_padded),
)})

ATTENTION_BACKENDS: Mapping[str, AttentionBackend] = MappingProxyType({b.name: b for b in (
    AttentionBackend("triton", attention_ops.decode_attention_triton,
                     attention_ops.prefill_attention_triton, attention_ops.kv_store_triton),
    AttentionBackend("torch", attention_ops.decode_attention_torch,
                     attention_ops.prefill_attention_torch, attention_ops.kv_store_torch,
                     TorchAttentionStep),
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
