"""Page accounting for the unified pool: which page id belongs to which request or adapter.

The data plane indexes its pool tensor ``[num_layers, num_pages, page_elems]`` with the page
ids handed out here: a request's KV pages in token order (its page table) and an adapter's
pages in the order its weights are packed. Every page has at most one owner: a request (KV)
or an adapter (weights). Sharing happens one level up, where many running requests hold a
reference to one resident adapter (``adapter_residency``).

Two pool kinds, by name (``POOL_KINDS``):

- ``unified``: KV and adapter pages come from one free list, so the split moves with the load
  (S-LoRA's unified paging);
- ``partitioned``: fixed regions, ``kv_pages`` for KV and the rest for adapters (S-LoRA's
  "no unified memory" ablation).

Free lists are np.intp stacks, so allocating or freeing n pages is a few numpy slice
operations, not n Python operations (intp ids index the owner map without a cast).

Adapters get one run of consecutive page ids when the top or the bottom of the free stack
holds one (O(n) to check), and scattered pages otherwise: the data plane can then read an
adapter's weights in place, as strided views of the pool, instead of copying its pages out
first. KV pages come from the top (the pages freed last); an evicted adapter's pages go to the
bottom, so KV takes them only when nothing else is free, and the next adapter finds the run
intact. A fresh pool hands out ascending ids from the top, so everything allocated before the
first free is one run. Which ids are handed out never changes how many are free, so no
scheduling decision depends on it (a best-fit search of the whole free list would find runs
more often under memory pressure, but costs O(pool) per load: twice the simulator's time).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from types import MappingProxyType
from typing import Mapping

import numpy as np

FREE = -1  # owner code of a free page


class PoolAccountingError(RuntimeError):
    """The pool was asked for more pages than it has free, or to free pages it does not own:
    a scheduler bug, never bad input."""


def adapter_owner(adapter_id: int) -> int:
    """Owner code of an adapter's pages (request ids are >= 0, adapter codes <= -2)."""
    return -adapter_id - 2


def _is_run(ids: np.ndarray) -> bool:
    """Whether ``ids`` [n >= 2] are consecutive, ascending or descending."""
    step = int(ids[1]) - int(ids[0])
    return abs(step) == 1 and int(ids[-1]) - int(ids[0]) == step * (len(ids) - 1) and \
        bool((np.diff(ids) == step).all())


class _Region:
    """The free ids of a contiguous range of page ids, as a double-ended stack: ``take`` and
    ``give`` work at the top, ``give_bottom`` puts ids under everything else."""

    __slots__ = ("start", "size", "buf", "bot", "top")

    def __init__(self, start: int, size: int) -> None:
        self.start = start
        self.size = size
        self.buf = np.empty(2 * size, dtype=np.intp)  # [2 size]: free ids in [bot, top)
        self.bot, self.top = size // 2, size // 2 + size
        # Reversed so that a fresh pool hands out ascending ids from ``start``.
        self.buf[self.bot:self.top] = np.arange(start + size - 1, start - 1, -1)

    @property
    def count(self) -> int:
        return self.top - self.bot

    def ids(self) -> np.ndarray:
        return self.buf[self.bot:self.top]

    def take(self, n: int) -> np.ndarray:
        if n > self.count:
            raise PoolAccountingError(f"asked for {n} pages, {self.count} free")
        top = self.top
        self.top = top - n
        return self.buf[top - n:top][::-1].copy()  # [n] intp

    def take_run(self, n: int) -> np.ndarray:
        """``n`` ids, one ascending run of consecutive ids when the top or the bottom of the
        stack holds one (the bottom: in a fresh pool the highest ids, later the pages of the
        adapters evicted last), else ``take(n)``. O(n)."""
        if 2 <= n <= self.count:
            if _is_run(self.buf[self.top - n:self.top]):
                return np.sort(self.take(n))
            if _is_run(self.buf[self.bot:self.bot + n]):
                self.bot += n
                return np.sort(self.buf[self.bot - n:self.bot])
        return self.take(n)

    def give(self, pages: np.ndarray) -> None:
        n = len(pages)
        if self.top + n > len(self.buf):
            self._recentre()
        self.buf[self.top:self.top + n] = pages
        self.top += n

    def give_bottom(self, pages: np.ndarray) -> None:
        """Free ``pages`` under every other free id: ``take`` reaches them last."""
        n = len(pages)
        if self.bot < n:
            self._recentre()
        self.buf[self.bot - n:self.bot] = pages
        self.bot -= n

    def _recentre(self) -> None:
        # free ids + ids being freed <= size, so centring leaves room at either end
        count = self.count
        bot = (len(self.buf) - count) // 2
        self.buf[bot:bot + count] = self.buf[self.bot:self.top].copy()
        self.bot, self.top = bot, bot + count


class PagePool(ABC):
    """Owner-tracked page ids over one or two regions; see the module docstring."""

    kind = ""

    def __init__(self, num_pages: int, kv_region: _Region, adapter_region: _Region) -> None:
        if num_pages < 1:
            raise ValueError(f"PagePool.num_pages must be >= 1, got {num_pages}")
        self.num_pages = num_pages
        self._kv = kv_region
        self._adapter = adapter_region
        self.owner = np.full(num_pages, FREE, dtype=np.int64)  # [num_pages] owner code
        self.kv_pages = 0
        self.adapter_pages = 0

    # Capacities and free space.
    @property
    def free_pages(self) -> int:
        return self.num_pages - self.kv_pages - self.adapter_pages

    @property
    def kv_capacity(self) -> int:
        """Most KV pages the pool could ever give (one request alone, nothing else held)."""
        return self._kv.size

    @property
    def adapter_capacity(self) -> int:
        return self._adapter.size

    def kv_free(self) -> int:
        return self._kv.count

    def adapter_free(self) -> int:
        return self._adapter.count

    @classmethod
    @abstractmethod
    def build(cls, num_pages: int, adapter_fraction: float) -> "PagePool":
        """A pool of ``num_pages``; ``adapter_fraction`` sizes a fixed adapter region."""

    @abstractmethod
    def fits_alone(self, kv: int, adapter: int) -> bool:
        """Whether ``kv`` KV pages and ``adapter`` adapter pages fit in an otherwise empty pool."""

    @abstractmethod
    def fits(self, kv: int, adapter: int, evictable: int) -> bool:
        """Whether ``kv`` + ``adapter`` new pages fit now if ``evictable`` idle adapter pages
        may be evicted first."""

    @abstractmethod
    def shortfall(self, kv: int, adapter: int) -> int:
        """Adapter pages that must be evicted before ``kv`` + ``adapter`` pages fit (0 if they
        fit now). Only adapter pages are evictable."""

    # Allocation.
    def alloc_kv(self, n: int, request_id: int) -> np.ndarray:
        pages = self._kv.take(n)  # [n]
        self.owner[pages] = request_id
        self.kv_pages += n
        return pages

    def alloc_kv_each(self, request_ids: np.ndarray) -> np.ndarray:
        """One KV page for each of ``request_ids`` [n] (a decode step crossing page
        boundaries); page i belongs to request_ids[i]."""
        pages = self._kv.take(len(request_ids))  # [n]
        self.owner[pages] = request_ids
        self.kv_pages += len(request_ids)
        return pages

    def alloc_adapter(self, n: int, adapter_id: int) -> np.ndarray:
        """``n`` pages in packing order: one ascending run when the free list has one."""
        pages = self._adapter.take_run(n)  # [n]
        self.owner[pages] = adapter_owner(adapter_id)
        self.adapter_pages += n
        return pages

    def free_kv(self, pages: np.ndarray, request_id: int) -> None:
        self._release(pages, request_id)
        self._kv.give(pages)
        self.kv_pages -= len(pages)

    def free_adapter(self, pages: np.ndarray, adapter_id: int) -> None:
        self._release(pages, adapter_owner(adapter_id))
        self._adapter.give_bottom(pages)
        self.adapter_pages -= len(pages)

    def _release(self, pages: np.ndarray, code: int) -> None:
        # An O(1) ownership spot check on the hot path; check() verifies every page.
        if len(pages) and (self.owner[pages[0]] != code or self.owner[pages[-1]] != code):
            raise PoolAccountingError(f"freeing pages not owned by owner code {code}")
        self.owner[pages] = FREE

    def check(self) -> None:
        """Verify the free stacks against the owner map (tests and debugging)."""
        free_ids = np.concatenate([r.ids() for r in self._regions()])
        if len(np.unique(free_ids)) != len(free_ids):
            raise PoolAccountingError("a page is on a free list twice")
        if not (self.owner[free_ids] == FREE).all():
            raise PoolAccountingError("a page on a free list has an owner")
        held = self.num_pages - len(free_ids)
        if int((self.owner != FREE).sum()) != held or held != self.kv_pages + self.adapter_pages:
            raise PoolAccountingError("owner map, free lists and page counters disagree")
        if int((self.owner <= -2).sum()) != self.adapter_pages:
            raise PoolAccountingError("adapter page counter disagrees with the owner map")

    def _regions(self) -> tuple[_Region, ...]:
        return (self._kv,) if self._kv is self._adapter else (self._kv, self._adapter)


class UnifiedPool(PagePool):
    """KV and adapters share one free list."""

    kind = "unified"

    def __init__(self, num_pages: int) -> None:
        region = _Region(0, max(num_pages, 0))
        super().__init__(num_pages, region, region)

    @classmethod
    def build(cls, num_pages: int, adapter_fraction: float) -> "UnifiedPool":
        return cls(num_pages)

    def fits_alone(self, kv: int, adapter: int) -> bool:
        return kv + adapter <= self.num_pages

    def fits(self, kv: int, adapter: int, evictable: int) -> bool:
        return kv + adapter <= self._kv.count + evictable

    def shortfall(self, kv: int, adapter: int) -> int:
        return max(0, kv + adapter - self._kv.count)


class PartitionedPool(PagePool):
    """Fixed regions: page ids ``[0, kv_pages)`` for KV, the rest for adapters."""

    kind = "partitioned"

    def __init__(self, num_pages: int, kv_pages: int) -> None:
        if not 1 <= kv_pages < num_pages:
            raise ValueError(f"PartitionedPool.kv_pages must be in [1, num_pages - 1] = "
                             f"[1, {num_pages - 1}], got {kv_pages}")
        super().__init__(num_pages, _Region(0, kv_pages), _Region(kv_pages, num_pages - kv_pages))

    @classmethod
    def build(cls, num_pages: int, adapter_fraction: float) -> "PartitionedPool":
        if not 0.0 < adapter_fraction < 1.0:
            raise ValueError(f"adapter_fraction must be in (0, 1) for a partitioned pool, got "
                             f"{adapter_fraction}")
        adapter_pages = min(num_pages - 1, max(1, round(num_pages * adapter_fraction)))
        return cls(num_pages, num_pages - adapter_pages)

    def fits_alone(self, kv: int, adapter: int) -> bool:
        return kv <= self._kv.size and adapter <= self._adapter.size

    def fits(self, kv: int, adapter: int, evictable: int) -> bool:
        return kv <= self._kv.count and adapter <= self._adapter.count + evictable

    def shortfall(self, kv: int, adapter: int) -> int:
        if kv > self._kv.count:
            # Evicting adapters frees no KV pages here; callers check kv_free() first.
            raise PoolAccountingError(f"{kv} KV pages wanted, {self._kv.count} free in the KV "
                                      f"region")
        return max(0, adapter - self._adapter.count)


POOL_KINDS: Mapping[str, type[PagePool]] = MappingProxyType({
    "unified": UnifiedPool,
    "partitioned": PartitionedPool,
})
