"""Which idle adapter leaves the pool first: eviction policies by name (``EVICTION_POLICIES``).

A policy sees only adapters that may be evicted: resident in the pool and used by no running
request (``adapter_residency`` tells it when one becomes idle or busy again), so an adapter in
the running batch or still loading can never be chosen. ``lru`` evicts the adapter idle the
longest; ``lfu`` the one admitted with the fewest requests so far (ties: idle the longest).
Every operation is O(1) or O(log n) in the number of idle adapters, never a scan per step.
"""
from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from collections import OrderedDict
from types import MappingProxyType
from typing import ClassVar, Container, Mapping


class EvictionPolicy(ABC):
    """Orders idle resident adapters for eviction."""

    name: ClassVar[str]

    def used(self, adapter_id: int) -> None:
        """A request using ``adapter_id`` was admitted."""

    @abstractmethod
    def idle(self, adapter_id: int) -> None:
        """``adapter_id`` is resident and no running request uses it: it may be evicted."""

    @abstractmethod
    def busy(self, adapter_id: int) -> None:
        """``adapter_id`` may no longer be evicted (in use again)."""

    @abstractmethod
    def pop_victim(self, protect: Container[int] = ()) -> int | None:
        """Remove and return the next adapter to evict, skipping ``protect``; None if none."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of idle adapters."""


class LRUEviction(EvictionPolicy):
    """Least recently used: the adapter that became idle the longest ago goes first."""

    name: ClassVar[str] = "lru"

    def __init__(self) -> None:
        self._idle: OrderedDict[int, None] = OrderedDict()

    def idle(self, adapter_id: int) -> None:
        self._idle[adapter_id] = None

    def busy(self, adapter_id: int) -> None:
        del self._idle[adapter_id]

    def pop_victim(self, protect: Container[int] = ()) -> int | None:
        for adapter_id in self._idle:
            if adapter_id not in protect:
                del self._idle[adapter_id]
                return adapter_id
        return None

    def __len__(self) -> int:
        return len(self._idle)


class LFUEviction(EvictionPolicy):
    """Least frequently used: fewest admitted requests over the whole run; ties go LRU."""

    name: ClassVar[str] = "lfu"

    def __init__(self) -> None:
        self._uses: dict[int, int] = {}
        self._entry: dict[int, int] = {}              # idle adapter -> its live heap sequence
        self._heap: list[tuple[int, int, int]] = []   # (uses, sequence, adapter_id)
        self._seq = 0

    def used(self, adapter_id: int) -> None:
        self._uses[adapter_id] = self._uses.get(adapter_id, 0) + 1

    def idle(self, adapter_id: int) -> None:
        self._seq += 1
        self._entry[adapter_id] = self._seq
        heapq.heappush(self._heap, (self._uses.get(adapter_id, 0), self._seq, adapter_id))
        if len(self._heap) > 2 * len(self._entry) + 64:
            # Drop stale entries so a long run's heap stays proportional to the idle set.
            self._heap = [e for e in self._heap if self._entry.get(e[2]) == e[1]]
            heapq.heapify(self._heap)

    def busy(self, adapter_id: int) -> None:
        del self._entry[adapter_id]  # its heap entry goes stale and is dropped when reached

    def pop_victim(self, protect: Container[int] = ()) -> int | None:
        kept = []
        victim = None
        while self._heap:
            entry = heapq.heappop(self._heap)
            if self._entry.get(entry[2]) != entry[1]:
                continue
            if entry[2] in protect:
                kept.append(entry)
                continue
            victim = entry[2]
            del self._entry[victim]
            break
        for entry in kept:
            heapq.heappush(self._heap, entry)
        return victim

    def __len__(self) -> int:
        return len(self._entry)


EVICTION_POLICIES: Mapping[str, type[EvictionPolicy]] = MappingProxyType({
    cls.name: cls for cls in (LRUEviction, LFUEviction)
})
