"""The engine's configuration: device, dtype, kernel backends, pool size, control plane.

One frozen dataclass validated on construction (names of dtypes and kernel backends are
checked against torch and the kernels' registries), plus the small derivations the engine
needs from it. The control plane's own settings (``ControlConfig``) ride along unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from manylora.engine.model_shape import PoolLayout
from manylora.engine.pool_tensors import PoolConfig
from manylora.engine.scheduler_config import ControlConfig
from manylora.kernels.backends import (ATTENTION_BACKENDS, LORA_BACKENDS, AttentionBackend,
                                       LoraBackend, attention_backend, default_backend_name,
                                       lora_backend)

DEFAULT_POOL_BYTES = 256 * 2**20


def _dtype(name: str) -> torch.dtype:
    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ValueError(f"EngineConfig.dtype: {name!r} is not a torch floating dtype name "
                         f"(e.g. float32, bfloat16)")
    return value


@dataclass(frozen=True)
class EngineConfig:
    """How the engine runs. Empty backend names pick the kernels' default for the device."""

    device: str = "cpu"
    dtype: str = "float32"
    lora_backend: str = ""           # triton | torch | padded (kernels.backends)
    attention_backend: str = ""      # triton | torch
    pool_bytes: int = DEFAULT_POOL_BYTES  # pool size when control.memory.pool_pages is unset
    control: ControlConfig = field(default_factory=ControlConfig)
    keep_logits: bool = False        # keep every sampled token's logits (tests, comparisons)
    threads: int = 0                 # torch intra-op CPU threads, process-wide; 0 = leave as is

    def __post_init__(self) -> None:
        _dtype(self.dtype)
        try:
            torch.device(self.device)
        except RuntimeError as exc:
            raise ValueError(f"EngineConfig.device: {exc}") from None
        for name, value, known in (("lora_backend", self.lora_backend, LORA_BACKENDS),
                                   ("attention_backend", self.attention_backend,
                                    ATTENTION_BACKENDS)):
            if value and value not in known:
                raise ValueError(f"EngineConfig.{name}: unknown {value!r}; choose one of "
                                 f"{', '.join(known)}")
        if self.threads < 0:
            raise ValueError(f"EngineConfig.threads must be >= 0, got {self.threads}")
        if self.pool_bytes < 1:
            raise ValueError(f"EngineConfig.pool_bytes must be >= 1, got {self.pool_bytes}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return _dtype(self.dtype)

    def lora(self, device: torch.device) -> LoraBackend:
        return lora_backend(self.lora_backend or default_backend_name(device))

    def attention(self, device: torch.device) -> AttentionBackend:
        return attention_backend(self.attention_backend or default_backend_name(device))

    def pool_pages(self, layout: PoolLayout) -> int:
        """Pages of the pool: the control plane's pool_pages if set, else ``pool_bytes``."""
        memory = self.control.memory
        return PoolConfig(memory.tokens_per_page, memory.pool_pages,
                          self.pool_bytes).pages(layout)
