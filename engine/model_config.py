"""Model configuration: a Hugging Face ``config.json`` read into the engine's ``ModelConfig``.

Owns the mapping from the Llama family's HF configs (``llama``, ``mistral``, ``qwen2``) to one
frozen dataclass, including the RoPE settings in both spellings HF has used: transformers-4
``rope_theta`` + ``rope_scaling`` and transformers-5 ``rope_parameters``. Imports no torch, so
the pool layout (``ModelShape``) can be derived from a checkpoint without loading it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from manylora.engine.model_shape import (DECODER_DIMS, HF_MODULE_NAMES, TARGETS, ModelShape,
                                         check_dims)

ROPE_TYPES = ("default", "linear", "dynamic", "llama3", "yarn")
_PARENT = {t: "self_attn" if t in ("q", "k", "v", "o") else "mlp" for t in TARGETS}


class CheckpointError(ValueError):
    """A model checkpoint folder that cannot be used; the message names the file."""


@dataclass(frozen=True)
class ArchSpec:
    """What differs between the supported architectures, and HF's defaults for them."""

    qkv_bias: bool               # Qwen2 always has q/k/v biases
    max_position_embeddings: int
    sliding_window: int | None   # HF default when the key is absent
    uses_sliding_flag: bool      # Qwen2: the window applies only with use_sliding_window


ARCHS: Mapping[str, ArchSpec] = MappingProxyType({
    "llama": ArchSpec(False, 2048, None, False),
    "mistral": ArchSpec(False, 4096 * 32, 4096, False),
    "qwen2": ArchSpec(True, 32768, 4096, True),
})


@dataclass(frozen=True)
class RopeScaling:
    """RoPE frequencies as HF computes them (transformers ``modeling_rope_utils``)."""

    rope_type: str = "default"
    theta: float = 10000.0
    factor: float = 1.0
    original_max_position_embeddings: int | None = None   # llama3, yarn
    low_freq_factor: float = 1.0                          # llama3
    high_freq_factor: float = 4.0                         # llama3
    beta_fast: float = 32.0                               # yarn
    beta_slow: float = 1.0                                # yarn
    mscale: float | None = None                           # yarn
    mscale_all_dim: float | None = None                   # yarn
    attention_factor: float | None = None                 # yarn; None = derived from factor
    truncate: bool = True                                 # yarn

    def __post_init__(self) -> None:
        if self.rope_type not in ROPE_TYPES:
            raise ValueError(f"RopeScaling.rope_type must be one of {', '.join(ROPE_TYPES)}, "
                             f"got {self.rope_type!r}")
        if not self.theta > 0:
            raise ValueError(f"RopeScaling.theta must be > 0, got {self.theta}")
        if not self.factor > 0:
            raise ValueError(f"RopeScaling.factor must be > 0, got {self.factor}")
        if self.rope_type == "llama3" and self.high_freq_factor <= self.low_freq_factor:
            raise ValueError("RopeScaling.high_freq_factor must exceed low_freq_factor")

    @property
    def yarn_attention_factor(self) -> float:
        """The cos/sin multiplier of yarn (1.0 for the other types)."""
        if self.rope_type != "yarn":
            return 1.0
        if self.attention_factor is not None:
            return float(self.attention_factor)

        def get_mscale(scale: float, m: float = 1.0) -> float:
            return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

        if self.mscale and self.mscale_all_dim:
            return get_mscale(self.factor, self.mscale) / get_mscale(self.factor,
                                                                     self.mscale_all_dim)
        return get_mscale(self.factor)


@dataclass(frozen=True)
class ModelConfig:
    """Everything the data plane needs to build a Llama-family decoder."""

    name: str
    arch: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    rms_norm_eps: float = 1e-6
    rope: RopeScaling = RopeScaling()
    max_position_embeddings: int = 2048
    sliding_window: int | None = None
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    eos_token_ids: tuple[int, ...] = ()
    bos_token_id: int | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"ModelConfig.arch must be one of {', '.join(ARCHS)}, "
                             f"got {self.arch!r}")
        check_dims("ModelConfig", {f: getattr(self, f)
                                   for f in (*DECODER_DIMS, "max_position_embeddings")})
        if self.head_dim % 2:
            raise ValueError(f"ModelConfig.head_dim must be even for RoPE, got {self.head_dim}")
        if not self.rms_norm_eps > 0:
            raise ValueError(f"ModelConfig.rms_norm_eps must be > 0, got {self.rms_norm_eps}")
        if self.sliding_window is not None and self.sliding_window < 1:
            raise ValueError(f"ModelConfig.sliding_window must be >= 1, got "
                             f"{self.sliding_window}")

    @property
    def max_context_len(self) -> int:
        """Longest sequence served exactly: attention is full-context, so a sliding window
        only agrees with HF while the sequence fits inside it."""
        if self.sliding_window is None:
            return self.max_position_embeddings
        return min(self.max_position_embeddings, self.sliding_window)

    def shape(self, dtype_bytes: int) -> ModelShape:
        return ModelShape(self.name, **{f: getattr(self, f) for f in DECODER_DIMS},
                          dtype_bytes=dtype_bytes)


def load_model_config(model_dir: str | Path) -> ModelConfig:
    """Read ``model_dir/config.json``; CheckpointError names the file and the bad key."""
    path = Path(model_dir) / "config.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file (a model folder needs config.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    try:
        return parse_model_config(raw, name=Path(model_dir).resolve().name)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _arch(raw: Mapping[str, Any]) -> str:
    model_type = raw.get("model_type")
    if model_type in ARCHS:
        return model_type
    for arch_name in raw.get("architectures") or ():
        for arch in ARCHS:
            if arch_name.lower().startswith(arch):
                return arch
    raise ValueError(f"model_type {model_type!r} is not supported; expected one of "
                     f"{', '.join(ARCHS)}")


def _rope(raw: Mapping[str, Any], max_pos: int) -> RopeScaling:
    # transformers 5 writes rope_parameters (theta inside); transformers 4 wrote rope_theta at
    # the top level and rope_scaling (with "type" or "rope_type") or null.
    params = dict(raw.get("rope_parameters") or raw.get("rope_scaling") or {})
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type == "dynamic" and "factor" not in params:
        raise ValueError("rope scaling 'dynamic' needs a 'factor'")
    if params.get("partial_rotary_factor", 1.0) != 1.0 or raw.get("partial_rotary_factor",
                                                                    1.0) != 1.0:
        raise ValueError("partial_rotary_factor other than 1.0 is not supported")
    original = params.get("original_max_position_embeddings")
    if rope_type in ("llama3", "yarn") and original is None:
        original = max_pos
    if rope_type in ("linear", "llama3", "yarn") and params.get("factor") is None:
        if rope_type != "yarn":
            raise ValueError(f"rope scaling {rope_type!r} needs a 'factor'")
        params["factor"] = max_pos / original
    optional = {k: params[k] for k in ("low_freq_factor", "high_freq_factor", "mscale",
                                       "mscale_all_dim", "attention_factor", "truncate")
                if params.get(k) is not None}
    optional.update({k: float(params[k]) for k in ("beta_fast", "beta_slow") if params.get(k)})
    return RopeScaling(
        rope_type=rope_type,
        theta=float(params.get("rope_theta", raw.get("rope_theta", 10000.0))),
        factor=float(params.get("factor", 1.0)),
        original_max_position_embeddings=original, **optional)


def _token_ids(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, int):
        return (value,)
    return tuple(int(v) for v in value)


def parse_model_config(raw: Mapping[str, Any], name: str) -> ModelConfig:
    """Build a ModelConfig from a config.json dict (HF key names and defaults)."""
    arch = _arch(raw)
    spec = ARCHS[arch]
    act = raw.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"hidden_act {act!r} is not supported (only 'silu')")
    hidden = int(raw["hidden_size"])
    heads = int(raw["num_attention_heads"])
    max_pos = int(raw.get("max_position_embeddings", spec.max_position_embeddings))
    window = raw.get("sliding_window", spec.sliding_window)
    if spec.uses_sliding_flag and not raw.get("use_sliding_window", False):
        window = None
    attention_bias = bool(raw.get("attention_bias", False))
    return ModelConfig(
        name=name, arch=arch,
        num_layers=int(raw["num_hidden_layers"]),
        hidden_size=hidden,
        intermediate_size=int(raw["intermediate_size"]),
        num_heads=heads,
        num_kv_heads=int(raw.get("num_key_value_heads") or heads),
        head_dim=int(raw.get("head_dim") or hidden // heads),
        vocab_size=int(raw["vocab_size"]),
        rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
        rope=_rope(raw, max_pos),
        max_position_embeddings=max_pos,
        sliding_window=None if window is None else int(window),
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        qkv_bias=spec.qkv_bias or (attention_bias and arch == "llama"),
        o_bias=attention_bias and arch == "llama",
        mlp_bias=bool(raw.get("mlp_bias", False)) and arch == "llama",
        eos_token_ids=_token_ids(raw.get("eos_token_id")),
        bos_token_id=raw.get("bos_token_id"),
    )


def _has_bias(config: ModelConfig, target: str) -> bool:
    if target in ("q", "k", "v"):
        return config.qkv_bias
    return config.o_bias if target == "o" else config.mlp_bias


def hf_weight_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of the HF checkpoint (``LlamaForCausalLM`` key names) and its shape, in
    checkpoint order; a linear layer's weight is ``[d_out, d_in]`` of ModelShape.target_dims."""
    h = config.hidden_size
    dims = config.shape(dtype_bytes=1)
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (config.vocab_size, h)}
    for layer in range(config.num_layers):
        p = f"model.layers.{layer}"
        for target in TARGETS:
            d_in, d_out = dims.target_dims(target)
            module = f"{p}.{_PARENT[target]}.{HF_MODULE_NAMES[target]}"
            shapes[f"{module}.weight"] = (d_out, d_in)
            if _has_bias(config, target):
                shapes[f"{module}.bias"] = (d_out,)
        shapes[f"{p}.input_layernorm.weight"] = (h,)
        shapes[f"{p}.post_attention_layernorm.weight"] = (h,)
    shapes["model.norm.weight"] = (h,)
    if not config.tie_word_embeddings:
        shapes["lm_head.weight"] = (config.vocab_size, h)
    return shapes
