"""Rotary position embeddings with HF's scaling types (default, linear, dynamic, llama3, yarn).

The inverse frequencies follow transformers' ``modeling_rope_utils`` formula for formula, so a
checkpoint with any of these ``rope_type`` values gives the same cos/sin as HF. Static types
precompute one cos/sin table indexed by position. ``dynamic`` (NTK) depends on the sequence
length at the time a token is computed; HF recomputes it per forward from the longest position,
which for one request generating alone is that request's length in the step, so that is what
``cos_sin`` uses per token.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping

import torch

from manylora.engine.model_config import ModelConfig, RopeScaling


def _base_freqs(theta: float | torch.Tensor, dim: int, device: torch.device) -> torch.Tensor:
    exponents = torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim
    return 1.0 / (theta ** exponents)  # [dim / 2]


def _default(rope: RopeScaling, dim: int, max_pos: int, device: torch.device) -> torch.Tensor:
    return _base_freqs(rope.theta, dim, device)


def _linear(rope: RopeScaling, dim: int, max_pos: int, device: torch.device) -> torch.Tensor:
    return _base_freqs(rope.theta, dim, device) / rope.factor


def _llama3(rope: RopeScaling, dim: int, max_pos: int, device: torch.device) -> torch.Tensor:
    inv_freq = _base_freqs(rope.theta, dim, device)
    old_len = rope.original_max_position_embeddings
    low_wavelen = old_len / rope.low_freq_factor
    high_wavelen = old_len / rope.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / rope.factor, inv_freq)
    smooth = (old_len / wavelen - rope.low_freq_factor) / (rope.high_freq_factor
                                                          - rope.low_freq_factor)
    smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled
    is_medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(is_medium, smoothed, scaled)


def _yarn(rope: RopeScaling, dim: int, max_pos: int, device: torch.device) -> torch.Tensor:
    base, original = rope.theta, rope.original_max_position_embeddings

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(rope.beta_fast), correction_dim(rope.beta_slow)
    if rope.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # HF's guard against a zero-width ramp
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2).to(device=device, dtype=torch.float) / dim)
    extrapolation_factor = 1 - ramp.to(device)
    return (1.0 / (rope.factor * pos_freqs)) * (1 - extrapolation_factor) \
        + (1.0 / pos_freqs) * extrapolation_factor


# dynamic starts from the default frequencies; cos_sin rescales them per token
INV_FREQ: Mapping[str, Callable[[RopeScaling, int, int, torch.device], torch.Tensor]] = {
    "default": _default, "linear": _linear, "dynamic": _default, "llama3": _llama3,
    "yarn": _yarn,
}


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Apply RoPE as HF does (rotate_half convention).

    x: [T, heads, head_dim]; cos, sin: [T, head_dim] in x's dtype."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)  # [T, heads, head_dim]
    return x * cos[:, None, :] + rotated * sin[:, None, :]


class RotaryEmbedding:
    """cos/sin for a batch of token positions, in the model dtype."""

    def __init__(self, config: ModelConfig, device: torch.device, dtype: torch.dtype) -> None:
        self.rope = config.rope
        self.dim = config.head_dim
        self.max_pos = config.max_position_embeddings
        self.dtype = dtype
        self.dynamic = config.rope.rope_type == "dynamic"
        self.scaling = config.rope.yarn_attention_factor
        self.inv_freq = INV_FREQ[config.rope.rope_type](self.rope, self.dim, self.max_pos,
                                                        device)  # [dim / 2] fp32
        positions = torch.arange(config.max_context_len, device=device)
        self.cos_table, self.sin_table = self._cos_sin(positions, self.inv_freq[None, :])

    def _cos_sin(self, positions: torch.Tensor,
                 inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # positions: [T]; inv_freq: [T or 1, dim / 2] -> cos, sin: [T, dim]
        freqs = positions.float()[:, None] * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return ((emb.cos() * self.scaling).to(self.dtype),
                (emb.sin() * self.scaling).to(self.dtype))

    def cos_sin(self, positions: torch.Tensor,
                seq_lens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """positions: [T] int; seq_lens: [T] int, the token's request length in this step
        (only read by ``dynamic``). Returns cos, sin: [T, head_dim]."""
        if not self.dynamic:
            idx = positions.long()
            return self.cos_table[idx], self.sin_table[idx]
        seq = torch.clamp(seq_lens.float(), min=self.max_pos)  # [T]
        factor = self.rope.factor
        base = self.rope.theta * ((factor * seq / self.max_pos) - (factor - 1)) ** (
            self.dim / (self.dim - 2))  # [T]
        exponents = torch.arange(0, self.dim, 2, dtype=torch.int64,
                                 device=positions.device).float() / self.dim
        inv_freq = 1.0 / (base[:, None] ** exponents[None, :])  # [T, dim / 2]
        return self._cos_sin(positions, inv_freq)

    def needs_seq_lens(self) -> bool:
        return self.dynamic
