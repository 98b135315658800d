"""Model shape and unified-pool layout: how many pages a KV token or an adapter takes.

This module is the contract between the control plane (which counts pages), the data plane
(which fills them) and the kernels (which read them). It imports no torch.

Layout (see docs/internals.md):

- The pool is ``num_pages`` pages; a page id names the same slot in every layer, so one page
  holds ``page_elems`` elements in each of ``num_layers`` layers.
- A KV page holds ``tokens_per_page`` tokens of one request: per layer, laid out as
  ``[2 (K then V), tokens_per_page, num_kv_heads, head_dim]``. So
  ``page_elems = 2 * tokens_per_page * kv_width``.
- An adapter's weights for one layer are packed flat over the adapter's page list, target by
  target in canonical order; each target contributes ``A`` as ``[rank, d_in]`` (PEFT's
  ``lora_A.weight``) then ``B`` transposed, ``[rank, d_out]`` (PEFT's ``lora_B.weight.T``).
  Element ``e`` of that flat space lives at ``pages[e // page_elems]``, offset
  ``e % page_elems``. Only the adapter's last page is partly empty.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

# The target names live with the adapter catalog, below the engine; re-exported here.
from manylora.traces.catalog import HF_MODULE_NAMES, TARGETS, canonical_target

__all__ = ["HF_MODULE_NAMES", "TARGETS", "canonical_target", "ModelShape", "TargetSlice",
           "AdapterLayout", "PoolLayout", "pages_for_bytes", "bytes_per_token", "MODEL_SHAPES",
           "LLAMA2_7B", "LLAMA2_13B", "DECODER_DIMS", "check_dims"]


DECODER_DIMS = ("num_layers", "hidden_size", "intermediate_size", "num_heads", "num_kv_heads",
                "head_dim", "vocab_size")
"""The dimensions ModelShape and the engine's ModelConfig both hold (same names)."""


def check_dims(owner: str, dims: Mapping[str, int]) -> None:
    """The checks every description of a decoder shares: each of ``dims`` (which include
    ``num_heads`` and ``num_kv_heads``) >= 1, and KV heads dividing the query heads. Errors
    name ``owner.field``."""
    for field, value in dims.items():
        if value < 1:
            raise ValueError(f"{owner}.{field} must be >= 1, got {value}")
    if dims["num_heads"] % dims["num_kv_heads"]:
        raise ValueError(f"{owner}.num_kv_heads ({dims['num_kv_heads']}) must divide "
                         f"num_heads ({dims['num_heads']})")


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a Llama-family decoder that decide memory and compute."""

    name: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    dtype_bytes: int = 2

    def __post_init__(self) -> None:
        check_dims("ModelShape", {f: getattr(self, f) for f in (*DECODER_DIMS, "dtype_bytes")})

    @property
    def q_width(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def weight_bytes(self) -> int:
        """Bytes of the base weights held on the device: the decoder layers (linear layers and
        their two norms), input embeddings, final norm and an untied LM head."""
        h, q, kv, i = self.hidden_size, self.q_width, self.kv_width, self.intermediate_size
        per_layer = h * q + 2 * h * kv + q * h + 3 * h * i + 2 * h
        params = self.num_layers * per_layer + 2 * self.vocab_size * h + h
        return params * self.dtype_bytes

    def target_dims(self, target: str) -> tuple[int, int]:
        """(d_in, d_out) of the linear layer a LoRA target adapts."""
        t = canonical_target(target)
        h, i = self.hidden_size, self.intermediate_size
        return {
            "q": (h, self.q_width), "k": (h, self.kv_width), "v": (h, self.kv_width),
            "o": (self.q_width, h), "gate": (h, i), "up": (h, i), "down": (i, h),
        }[t]


@dataclass(frozen=True)
class TargetSlice:
    """Where one target's A and B start in an adapter's flat per-layer element space."""

    target: str
    rank: int
    d_in: int
    d_out: int
    a_offset: int
    b_offset: int


@dataclass(frozen=True)
class AdapterLayout:
    """An adapter's per-layer footprint: target slices, total elements and pages."""

    slices: tuple[TargetSlice, ...]
    num_elems: int
    num_pages: int


@dataclass(frozen=True)
class PoolLayout:
    """Page geometry shared by every body: the page size follows from the KV block."""

    shape: ModelShape
    tokens_per_page: int = 1

    def __post_init__(self) -> None:
        if self.tokens_per_page < 1:
            raise ValueError(f"PoolLayout.tokens_per_page must be >= 1, got {self.tokens_per_page}")

    @property
    def page_elems(self) -> int:
        return 2 * self.tokens_per_page * self.shape.kv_width

    @property
    def page_bytes(self) -> int:
        """Bytes one page id takes over all layers."""
        return self.page_elems * self.shape.num_layers * self.shape.dtype_bytes

    def kv_pages(self, num_tokens: int) -> int:
        """Pages holding the KV cache of ``num_tokens`` tokens of one request."""
        return -(-num_tokens // self.tokens_per_page)

    def adapter_layout(self, ranks: Mapping[str, int]) -> AdapterLayout:
        """Layout of an adapter with ``ranks[target]`` for each adapted target."""
        slices = []
        offset = 0
        ranks = {canonical_target(t): r for t, r in ranks.items()}
        for t in TARGETS:
            r = ranks.get(t, 0)
            if r < 0:
                raise ValueError(f"rank for target {t!r} must be >= 0, got {r}")
            if r == 0:
                continue
            d_in, d_out = self.shape.target_dims(t)
            slices.append(TargetSlice(t, r, d_in, d_out, offset, offset + r * d_in))
            offset += r * (d_in + d_out)
        return AdapterLayout(tuple(slices), offset, -(-offset // self.page_elems))

    def adapter_pages(self, rank: int, targets: tuple[str, ...]) -> int:
        """Pages for an adapter of one rank on the given targets."""
        return self.adapter_layout({t: rank for t in targets}).num_pages


def pages_for_bytes(layout: PoolLayout, num_bytes: int) -> int:
    """How many pages fit in ``num_bytes`` of device memory."""
    return num_bytes // layout.page_bytes


def bytes_per_token(shape: ModelShape) -> int:
    """KV-cache bytes of one token over all layers."""
    return 2 * shape.kv_width * shape.num_layers * shape.dtype_bytes


LLAMA2_7B = ModelShape("llama-2-7b", 32, 4096, 11008, 32, 32, 128, 32000)
LLAMA2_13B = ModelShape("llama-2-13b", 40, 5120, 13824, 40, 40, 128, 32000)
MODEL_SHAPES: Mapping[str, ModelShape] = MappingProxyType({
    s.name: s for s in (LLAMA2_7B, LLAMA2_13B)
})
