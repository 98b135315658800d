"""One Llama-family decoder layer over a packed step of tokens and the unified pool.

Plain eager PyTorch (gpt-fast style). The q/k/v and gate/up projections are fused into one
matmul each; LoRA for the targets of each projection is added into the fused output through
the LoRA backend's plan for the step (which may multiply q, k and v together), and attention
reads and writes K/V in the pool through the attention backend's plan. Rows are the step's tokens: prefill tokens first, then one per decode request
(``kernels.batch_meta``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from manylora.engine.model_config import ModelConfig
from manylora.engine.rope import rotate
from manylora.kernels.backends import AttentionStep, LoraStep
from manylora.kernels.batch_meta import BatchMeta

# index of each LoRA target in BatchMeta's per-target tables (canonical order, model_shape)
Q, K, V, O, GATE, UP, DOWN = range(7)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """HF's LlamaRMSNorm: normalise in fp32, cast back, then scale. x: [T, h]."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(x.dtype)


@dataclass(frozen=True)
class StepInputs:
    """What every layer reads in one step, computed once per step."""

    meta: BatchMeta
    cos: torch.Tensor                  # [T, head_dim]
    sin: torch.Tensor                  # [T, head_dim]
    lora: LoraStep                     # the LoRA backend's plan for this step
    attention: AttentionStep           # the attention backend's plan for this step


class DecoderLayer(nn.Module):
    """Attention + SwiGLU MLP with pre-RMSNorm and residuals; weights fused at load."""

    def __init__(self, config: ModelConfig, weights: dict[str, torch.Tensor],
                 index: int) -> None:
        super().__init__()
        self.index = index                     # the layer's pool layer
        self.eps = config.rms_norm_eps
        self.num_heads, self.num_kv_heads = config.num_heads, config.num_kv_heads
        self.head_dim = config.head_dim
        self.q_width = config.num_heads * config.head_dim
        self.kv_width = config.num_kv_heads * config.head_dim
        self.inter = config.intermediate_size
        self.scale = config.head_dim ** -0.5
        w = weights
        self.input_norm = w["input_norm"]      # [h]
        self.post_norm = w["post_norm"]        # [h]
        self.wqkv = w["wqkv"]                  # [q_w + 2 kv_w, h]
        self.bqkv = w.get("bqkv")              # [q_w + 2 kv_w] or None
        self.wo, self.bo = w["wo"], w.get("bo")        # [h, q_w], [h]
        self.wgu, self.bgu = w["wgu"], w.get("bgu")    # [2 I, h], [2 I]
        self.wd, self.bd = w["wd"], w.get("bd")        # [h, I], [h]

    def forward(self, x: torch.Tensor, step: StepInputs, pool_layer: torch.Tensor) -> torch.Tensor:
        # x: [T, h]; pool_layer: [num_pages, page_elems]
        meta, lora, layer = step.meta, step.lora, self.index
        num_tokens, split = x.shape[0], meta.num_prefill_tokens
        h = rms_norm(x, self.input_norm, self.eps)
        qkv = F.linear(h, self.wqkv, self.bqkv)  # [T, q_w + 2 kv_w]
        lora.apply(qkv, h, layer, (Q, K, V))
        q, k, v = qkv.split([self.q_width, self.kv_width, self.kv_width], dim=1)
        q = rotate(q.view(num_tokens, self.num_heads, self.head_dim), step.cos, step.sin)
        k = rotate(k.view(num_tokens, self.num_kv_heads, self.head_dim), step.cos, step.sin)
        v = v.view(num_tokens, self.num_kv_heads, self.head_dim)
        step.attention.kv_store(k, v, pool_layer)
        attn = torch.empty_like(q)  # [T, H, head_dim]
        if split:
            attn[:split] = step.attention.prefill(q[:split], k[:split], v[:split], self.scale)
        if meta.num_decode_tokens:
            attn[split:] = step.attention.decode(q[split:], pool_layer, self.scale)
        attn = attn.view(num_tokens, self.q_width)
        o = F.linear(attn, self.wo, self.bo)  # [T, h]
        lora.apply(o, attn, layer, (O,))
        x = x + o
        h = rms_norm(x, self.post_norm, self.eps)
        gu = F.linear(h, self.wgu, self.bgu)  # [T, 2 I]
        lora.apply(gu, h, layer, (GATE, UP))
        gate, up = gu.split([self.inter, self.inter], dim=1)
        act = F.silu(gate) * up  # [T, I]
        down = F.linear(act, self.wd, self.bd)  # [T, h]
        lora.apply(down, act, layer, (DOWN,))
        return x + down
