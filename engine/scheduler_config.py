"""The control plane's configuration: frozen dataclasses, validated on construction.

- ``SchedulerConfig``: batch limits and the KV reservation policy;
- ``QueueConfig``: admission order, SLO parameters, adapter clustering;
- ``MemoryConfig``: pool kind and size, eviction, prefetch, host tier.

``ControlConfig`` bundles the three; ``to_dict`` is what a run's meta.json records, and
``ControlConfig.from_flat`` builds one from the flat option names that ``policy_options``
puts on the command line (the same names for ``simulate``, ``replay`` and sweeps).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from manylora.engine.page_pool import POOL_KINDS
from manylora.engine.policies_eviction import EVICTION_POLICIES
from manylora.engine.policies_queue import QUEUE_POLICIES
from manylora.engine.policies_reservation import KV_RESERVATIONS


def _check_name(owner: str, field_name: str, value: str, known: Mapping[str, Any]) -> None:
    if value not in known:
        raise ValueError(f"{owner}.{field_name}: unknown {value!r}; choose one of "
                         f"{', '.join(known)}")


def _check_min(owner: str, field_name: str, value: float, low: float) -> None:
    if not value >= low:
        raise ValueError(f"{owner}.{field_name} must be >= {low}, got {value}")


@dataclass(frozen=True)
class SchedulerConfig:
    """Continuous batching limits."""

    max_batch_size: int = 256        # running requests (prefill + decode) per step
    token_budget: int = 8192         # prefill tokens + decode tokens per step
    kv_reservation: str = "lookahead"

    def __post_init__(self) -> None:
        _check_min("SchedulerConfig", "max_batch_size", self.max_batch_size, 1)
        _check_min("SchedulerConfig", "token_budget", self.token_budget, 1)
        _check_name("SchedulerConfig", "kv_reservation", self.kv_reservation, KV_RESERVATIONS)


@dataclass(frozen=True)
class QueueConfig:
    """Which waiting request goes next, and which are dropped."""

    queue: str = "fcfs"
    slo_ttft_s: float = 6.0          # first-token SLO (S-LoRA's default)
    abort_margin_s: float = 0.5      # S-LoRA's allowance for the prefill itself
    max_batch_adapters: int = 0      # S-LoRA batch-num-adapters; 0 = no cap

    def __post_init__(self) -> None:
        _check_name("QueueConfig", "queue", self.queue, QUEUE_POLICIES)
        if not self.slo_ttft_s > 0:
            raise ValueError(f"QueueConfig.slo_ttft_s must be > 0, got {self.slo_ttft_s}")
        _check_min("QueueConfig", "abort_margin_s", self.abort_margin_s, 0.0)
        _check_min("QueueConfig", "max_batch_adapters", self.max_batch_adapters, 0)


@dataclass(frozen=True)
class MemoryConfig:
    """Pool kind and size, adapter eviction, prefetch and the host tier."""

    pool: str = "unified"
    pool_pages: int | None = None    # None: the body sizes the pool (device memory, profile)
    tokens_per_page: int = 1         # S-LoRA: one token per page
    adapter_fraction: float = 0.25   # share of pages for adapters in a partitioned pool
    eviction: str = "lru"
    prefetch: bool = False
    prefetch_window: int = 16        # queued requests whose adapters prefetch looks at
    host_cache_bytes: int | None = None  # None: every adapter always in host memory

    def __post_init__(self) -> None:
        _check_name("MemoryConfig", "pool", self.pool, POOL_KINDS)
        if self.pool_pages is not None:
            _check_min("MemoryConfig", "pool_pages", self.pool_pages, 2)
        _check_min("MemoryConfig", "tokens_per_page", self.tokens_per_page, 1)
        if not 0.0 < self.adapter_fraction < 1.0:
            raise ValueError(f"MemoryConfig.adapter_fraction must be in (0, 1), got "
                             f"{self.adapter_fraction}")
        _check_name("MemoryConfig", "eviction", self.eviction, EVICTION_POLICIES)
        _check_min("MemoryConfig", "prefetch_window", self.prefetch_window, 1)
        if self.host_cache_bytes is not None:
            _check_min("MemoryConfig", "host_cache_bytes", self.host_cache_bytes, 1)


@dataclass(frozen=True)
class ControlConfig:
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {"scheduler": dataclasses.asdict(self.scheduler),
                "queue": dataclasses.asdict(self.queue),
                "memory": dataclasses.asdict(self.memory)}

    @classmethod
    def from_flat(cls, options: Mapping[str, Any]) -> "ControlConfig":
        """From ``{field_name: value}`` over all three configs; absent fields keep defaults,
        unknown names raise ValueError."""
        parts: dict[str, dict[str, Any]] = {}
        owners = {f.name: part for part, kind in (("scheduler", SchedulerConfig),
                                                  ("queue", QueueConfig),
                                                  ("memory", MemoryConfig))
                  for f in dataclasses.fields(kind)}
        for name, value in options.items():
            if name not in owners:
                raise ValueError(f"unknown control-plane option {name!r}; known: "
                                 f"{', '.join(sorted(owners))}")
            parts.setdefault(owners[name], {})[name] = value
        return cls(SchedulerConfig(**parts.get("scheduler", {})),
                   QueueConfig(**parts.get("queue", {})),
                   MemoryConfig(**parts.get("memory", {})))

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]]) -> "ControlConfig":
        """Inverse of ``to_dict``."""
        return cls(SchedulerConfig(**data.get("scheduler", {})),
                   QueueConfig(**data.get("queue", {})), MemoryConfig(**data.get("memory", {})))
