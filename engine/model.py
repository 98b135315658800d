"""The Llama-family causal LM (Llama, Mistral, Qwen2) over the unified pool.

``LlamaModel.forward(tokens, meta, pool)`` runs one scheduler step: the packed tokens of every
prefilling and decoding request, each with its own adapter, in one pass, and returns logits only
for each request's last token. Weights arrive under HF key names (``hf_loader``) and are fused
here (q|k|v, gate|up); tied embeddings share one tensor. The kernels (LoRA and attention) come
from ``kernels.backends`` by name, so Triton, the torch references and the padded baseline are
interchangeable.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from manylora.engine.layers import DecoderLayer, StepInputs, rms_norm
from manylora.engine.model_config import CheckpointError, ModelConfig, hf_weight_shapes
from manylora.engine.model_shape import TARGETS
from manylora.engine.pool_tensors import PoolTensors
from manylora.engine.rope import RotaryEmbedding
from manylora.kernels.backends import AttentionBackend, LoraBackend
from manylora.kernels.batch_meta import BatchMeta


def checked_weights(config: ModelConfig, weights: Mapping[str, torch.Tensor],
                    dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    """Weights already in memory, by HF name, checked against the shapes ``config`` implies
    (CheckpointError names the first bad one) and put in ``dtype`` on ``device``: a tensor
    already there is returned as it is (shared, not copied)."""
    out = {}
    for name, shape in hf_weight_shapes(config).items():
        tensor = weights.get(name)
        if tensor is None:
            raise CheckpointError(f"weights in memory: tensor {name!r} is missing")
        if tuple(tensor.shape) != shape:
            raise CheckpointError(f"weights in memory: tensor {name!r} has shape "
                                  f"{list(tensor.shape)}, expected {list(shape)}")
        out[name] = tensor.to(device=device, dtype=dtype)
    return out


def fuse_layer_weights(weights: Mapping[str, torch.Tensor], layer: int,
                       config: ModelConfig) -> dict[str, torch.Tensor]:
    """One layer's HF tensors as the fused tensors ``DecoderLayer`` takes."""
    p = f"model.layers.{layer}"
    attn, mlp = f"{p}.self_attn", f"{p}.mlp"
    out = {
        "input_norm": weights[f"{p}.input_layernorm.weight"],
        "post_norm": weights[f"{p}.post_attention_layernorm.weight"],
        "wqkv": torch.cat([weights[f"{attn}.{n}_proj.weight"] for n in "qkv"]),
        "wo": weights[f"{attn}.o_proj.weight"],
        "wgu": torch.cat([weights[f"{mlp}.gate_proj.weight"], weights[f"{mlp}.up_proj.weight"]]),
        "wd": weights[f"{mlp}.down_proj.weight"],
    }
    if config.qkv_bias:
        out["bqkv"] = torch.cat([weights[f"{attn}.{n}_proj.bias"] for n in "qkv"])
    if config.o_bias:
        out["bo"] = weights[f"{attn}.o_proj.bias"]
    if config.mlp_bias:
        out["bgu"] = torch.cat([weights[f"{mlp}.gate_proj.bias"], weights[f"{mlp}.up_proj.bias"]])
        out["bd"] = weights[f"{mlp}.down_proj.bias"]
    return out


class LlamaModel(nn.Module):
    """Embedding, decoder layers, final norm and LM head; one step per ``forward``."""

    def __init__(self, config: ModelConfig, weights: Mapping[str, torch.Tensor],
                 lora: LoraBackend, attention: AttentionBackend) -> None:
        super().__init__()
        self.config = config
        self.lora_backend, self.attention_backend = lora, attention
        self.embed = weights["model.embed_tokens.weight"]  # [V, h]
        self.norm = weights["model.norm.weight"]           # [h]
        self.lm_head = self.embed if config.tie_word_embeddings else weights["lm_head.weight"]
        self.layers = nn.ModuleList(
            DecoderLayer(config, fuse_layer_weights(weights, i, config), i)
            for i in range(config.num_layers))
        shape = config.shape(dtype_bytes=self.embed.element_size())
        self.target_dims = tuple(shape.target_dims(t) for t in TARGETS)  # (d_in, d_out) each
        self.rope = RotaryEmbedding(config, self.embed.device, self.embed.dtype)

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.dtype

    @property
    def device(self) -> torch.device:
        return self.embed.device

    def step_inputs(self, meta: BatchMeta, pool: PoolTensors) -> StepInputs:
        """What all layers share in a step: RoPE cos/sin and the backends' plans."""
        seq_lens = None
        if self.rope.needs_seq_lens():
            prefill_lens = torch.diff(meta.cu_seqlens)  # [P_req]
            seq_lens = torch.cat([torch.repeat_interleave(prefill_lens, prefill_lens),
                                  meta.context_lens])  # [T]
        cos, sin = self.rope.cos_sin(meta.positions, seq_lens)
        return StepInputs(meta, cos, sin,
                          self.lora_backend.begin_step(meta, pool.data, self.target_dims),
                          self.attention_backend.begin_step(meta))

    def forward(self, tokens: torch.Tensor, meta: BatchMeta, pool: PoolTensors) -> torch.Tensor:
        """tokens: [T] int64 in step order. Returns fp32 logits [R, V], R = requests."""
        step = self.step_inputs(meta, pool)
        x = F.embedding(tokens, self.embed)  # [T, h]
        for i, layer in enumerate(self.layers):
            x = layer(x, step, pool.layer(i))
        last = x.index_select(0, meta.logit_indices.long())  # [R, h]
        return F.linear(rms_norm(last, self.norm, self.config.rms_norm_eps),
                        self.lm_head).float()  # [R, V]
