"""Where each adapter is (pool, loading into the pool, host memory, disk) and who uses it.

An adapter is *resident* when its weights are in pool pages, *loading* while a background
(prefetch) copy into its pages is in flight, else *host* or *disk* (``host_cache``). Running
requests hold references; an adapter with references, or still loading, is never evicted.
Idle resident adapters are handed to the eviction policy, and their pages are counted in
``evictable_pages`` so that admission can tell, without a scan, how much room eviction could
make.
"""
from __future__ import annotations

import enum
from typing import Container, Iterable

import numpy as np

from manylora.engine.catalog import AdapterCatalog
from manylora.engine.host_cache import HostCache
from manylora.engine.page_pool import PagePool, PoolAccountingError
from manylora.engine.policies_eviction import EvictionPolicy
from manylora.engine.step_plan import AdapterLoad


class AdapterState(enum.Enum):
    RESIDENT = "resident"
    LOADING = "loading"
    HOST = "host"
    DISK = "disk"


class AdapterResidency:
    """Pool residency, references and eviction of adapters."""

    def __init__(self, catalog: AdapterCatalog, pool: PagePool, eviction: EvictionPolicy,
                 host: HostCache) -> None:
        self.catalog = catalog
        self.pool = pool
        self.eviction = eviction
        self.host = host
        self.pages: dict[int, np.ndarray] = {}   # resident or loading -> [pages] intp
        self.loading: set[int] = set()
        self.refs: dict[int, int] = {}            # adapters used by running requests -> count
        self.evictable_pages = 0
        self.loads = 0
        self.evictions = 0

    def state(self, adapter_id: int) -> AdapterState:
        if adapter_id in self.loading:
            return AdapterState.LOADING
        if adapter_id in self.pages:
            return AdapterState.RESIDENT
        return AdapterState.HOST if adapter_id in self.host else AdapterState.DISK

    def is_resident(self, adapter_id: int) -> bool:
        return adapter_id in self.pages and adapter_id not in self.loading

    def is_idle(self, adapter_id: int) -> bool:
        """Resident, not loading, used by no running request: an eviction candidate."""
        return self.is_resident(adapter_id) and adapter_id not in self.refs

    def acquire(self, adapter_id: int) -> None:
        """A running request starts using resident ``adapter_id``."""
        count = self.refs.get(adapter_id, 0)
        if not count:
            self.eviction.busy(adapter_id)
            self.evictable_pages -= len(self.pages[adapter_id])
        self.refs[adapter_id] = count + 1
        self.eviction.used(adapter_id)

    def release(self, adapter_id: int) -> None:
        count = self.refs[adapter_id] - 1
        if count:
            self.refs[adapter_id] = count
            return
        del self.refs[adapter_id]
        self._make_idle(adapter_id)

    def _make_idle(self, adapter_id: int) -> None:
        self.eviction.idle(adapter_id)
        self.evictable_pages += len(self.pages[adapter_id])

    def idle_pages(self, adapter_ids: Iterable[int]) -> int:
        """Pages of those of ``adapter_ids`` that are idle (what protecting them withholds)."""
        return sum(len(self.pages[a]) for a in set(adapter_ids) if self.is_idle(a))

    def evict(self, num_pages: int, protect: Container[int] = frozenset()) -> list[int]:
        """Evict idle adapters in policy order, skipping ``protect``, until at least
        ``num_pages`` pages are freed; returns their ids. The caller has checked that the idle
        adapters outside ``protect`` hold that many pages."""
        victims: list[int] = []
        freed = 0
        while freed < num_pages:
            victim = self.eviction.pop_victim(protect)
            if victim is None:
                raise PoolAccountingError(f"asked to evict {num_pages} pages, idle adapters "
                                          f"hold only {freed}")
            pages = self.pages.pop(victim)
            self.pool.free_adapter(pages, victim)
            self.evictable_pages -= len(pages)
            freed += len(pages)
            victims.append(victim)
        self.evictions += len(victims)
        return victims

    def load(self, adapter_id: int, blocking: bool) -> AdapterLoad | None:
        """Allocate pool pages for ``adapter_id`` (the caller made room) and describe the copy.
        Returns None when the host tier has no room to stage it right now."""
        from_disk = self.host.fetch(adapter_id)
        if from_disk is None:
            return None
        pages = self.pool.alloc_adapter(self.catalog.pages[adapter_id], adapter_id)
        self.pages[adapter_id] = pages
        self.loads += 1
        if blocking:
            # Resident once this step's loads run; the caller acquires it right away.
            self._make_idle(adapter_id)
        else:
            self.loading.add(adapter_id)
            self.host.pin(adapter_id)
        return AdapterLoad(adapter_id, pages, self.catalog.num_bytes[adapter_id], from_disk,
                           blocking)

    def loaded(self, adapter_id: int) -> None:
        """A background copy finished: the adapter is resident (and idle until used)."""
        self.loading.remove(adapter_id)
        self.host.unpin(adapter_id)
        if adapter_id not in self.refs:
            self._make_idle(adapter_id)
