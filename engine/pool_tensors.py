"""The unified pool's device memory: one tensor ``[num_layers, num_pages, page_elems]``.

Page ids come from the control plane's accounting (``page_pool``); this module only holds the
storage they index, sizes it from a memory budget, and copies packed adapter weights into the
pages the scheduler assigned. KV pages are written by the kernels' KV-store op.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from manylora.engine.model_shape import PoolLayout


class PoolBudgetError(ValueError):
    """The memory budget does not hold even one page."""


@dataclass(frozen=True)
class PoolConfig:
    """How big the pool is: an explicit page count wins over a byte budget."""

    tokens_per_page: int = 1
    num_pages: int | None = None
    memory_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.tokens_per_page < 1:
            raise ValueError(f"PoolConfig.tokens_per_page must be >= 1, got "
                             f"{self.tokens_per_page}")
        if self.num_pages is None and self.memory_bytes is None:
            raise ValueError("PoolConfig needs num_pages or memory_bytes")
        if self.num_pages is not None and self.num_pages < 1:
            raise ValueError(f"PoolConfig.num_pages must be >= 1, got {self.num_pages}")
        if self.memory_bytes is not None and self.memory_bytes < 1:
            raise ValueError(f"PoolConfig.memory_bytes must be >= 1, got {self.memory_bytes}")

    def pages(self, layout: PoolLayout) -> int:
        """Number of pages for this layout (whole pages within the byte budget)."""
        if self.num_pages is not None:
            return self.num_pages
        pages = self.memory_bytes // layout.page_bytes
        if pages < 1:
            raise PoolBudgetError(f"a pool of {self.memory_bytes} bytes holds no page of "
                                  f"{layout.page_bytes} bytes")
        return pages


class PoolTensors:
    """Device storage for every page of the pool, in every layer."""

    def __init__(self, layout: PoolLayout, num_pages: int, dtype: torch.dtype,
                 device: torch.device) -> None:
        self.layout = layout
        self.num_pages = num_pages
        shape = layout.shape
        # zero-filled so padded page-table entries and unused adapter rows read as zeros
        self.data = torch.zeros(shape.num_layers, num_pages, layout.page_elems, dtype=dtype,
                                device=device)  # [L, num_pages, page_elems]

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()

    def layer(self, index: int) -> torch.Tensor:
        """[num_pages, page_elems] view of one layer."""
        return self.data[index]

    def write_adapter(self, pages: torch.Tensor, packed: torch.Tensor,
                      non_blocking: bool = False) -> None:
        """Copy packed adapter weights into their pages, every layer in one indexed copy.

        pages: [n] int64 on the pool's device; packed: [L, n, page_elems] (host, pinned on GPU).
        """
        if packed.shape != (self.data.shape[0], pages.numel(), self.data.shape[2]):
            raise ValueError(f"packed adapter has shape {tuple(packed.shape)}, expected "
                             f"[{self.data.shape[0]}, {pages.numel()}, {self.data.shape[2]}]")
        src = packed.to(self.data.device, dtype=self.data.dtype, non_blocking=non_blocking)
        self.data.index_copy_(1, pages, src)
