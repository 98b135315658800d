"""``TinyModelSpec``: the sizes of a random Llama-family checkpoint that make-tiny writes.

Kept apart from the writer (make_tiny.py, which needs torch and safetensors) so that the
command line and the validation's configs can name model sizes without importing them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_HF_CLASSES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
               "qwen2": "Qwen2ForCausalLM"}
TINY_DTYPES = ("float32", "float16", "bfloat16")
"""Dtypes the weights can be stored in (torch dtype names, as config.json's torch_dtype)."""


@dataclass(frozen=True)
class TinyModelSpec:
    """Sizes of a small random decoder (defaults run fast on a laptop CPU)."""

    arch: str = "llama"
    layers: int = 4
    hidden: int = 256
    intermediate: int = 512
    heads: int = 8
    kv_heads: int = 2
    vocab: int = 1024
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    dtype: str = "float32"          # of the stored weights, one of TINY_DTYPES

    def __post_init__(self) -> None:
        if self.dtype not in TINY_DTYPES:
            raise ValueError(f"TinyModelSpec.dtype must be one of {', '.join(TINY_DTYPES)}, "
                             f"got {self.dtype!r}")
        if self.arch not in _HF_CLASSES:
            raise ValueError(f"TinyModelSpec.arch must be one of {', '.join(_HF_CLASSES)}, "
                             f"got {self.arch!r}")
        for field in ("layers", "hidden", "intermediate", "heads", "kv_heads", "vocab",
                      "max_position_embeddings"):
            if getattr(self, field) < 1:
                raise ValueError(f"TinyModelSpec.{field} must be >= 1, got "
                                 f"{getattr(self, field)}")
        if self.hidden % self.heads or (self.hidden // self.heads) % 2:
            raise ValueError(f"TinyModelSpec.heads ({self.heads}) must divide hidden "
                             f"({self.hidden}) into an even head size")
        if self.heads % self.kv_heads:
            raise ValueError(f"TinyModelSpec.kv_heads ({self.kv_heads}) must divide heads "
                             f"({self.heads})")

    def config_json(self) -> dict[str, Any]:
        """config.json as transformers writes it (rope_theta at the top level, which both
        transformers 4 and 5 read)."""
        cfg = {
            "architectures": [_HF_CLASSES[self.arch]], "model_type": self.arch,
            "hidden_size": self.hidden, "intermediate_size": self.intermediate,
            "num_hidden_layers": self.layers, "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads, "head_dim": self.hidden // self.heads,
            "vocab_size": self.vocab, "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": 1e-5, "rope_theta": self.rope_theta, "rope_scaling": None,
            "hidden_act": "silu", "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": self.dtype,
        }
        if self.arch == "mistral":
            cfg["sliding_window"] = self.max_position_embeddings
        if self.arch == "qwen2":
            cfg.update(use_sliding_window=False, sliding_window=None, max_window_layers=0)
        return cfg
