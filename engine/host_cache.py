"""The host-memory tier: which adapters sit in host memory, within a byte budget.

Adapters live on disk; loading one into the pool goes disk -> host -> pool, and the host copy
is kept for later loads until the budget forces it out (least recently fetched first). An
adapter being copied to the pool in the background is pinned and never dropped mid-copy.
With no budget (``capacity_bytes=None``) every adapter is in host memory from the start, as in
S-LoRA, and no load ever touches disk.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Mapping


class HostCache:
    """LRU set of host-resident adapters bounded in bytes."""

    def __init__(self, capacity_bytes: int | None, adapter_bytes: Mapping[int, int]) -> None:
        if capacity_bytes is not None and capacity_bytes < 1:
            raise ValueError(f"HostCache.capacity_bytes must be >= 1 or None, got "
                             f"{capacity_bytes}")
        self.capacity_bytes = capacity_bytes
        self._bytes = adapter_bytes
        self._held: OrderedDict[int, None] = OrderedDict()
        self._pinned: dict[int, int] = {}
        self._pinned_bytes = 0
        self.used_bytes = 0
        self.disk_reads = 0

    @property
    def bounded(self) -> bool:
        return self.capacity_bytes is not None

    def __contains__(self, adapter_id: int) -> bool:
        return self.capacity_bytes is None or adapter_id in self._held

    def can_ever_hold(self, adapter_id: int) -> bool:
        return self.capacity_bytes is None or self._bytes[adapter_id] <= self.capacity_bytes

    def can_stage(self, adapter_id: int) -> bool:
        """Whether ``fetch`` would succeed now (pinned adapters may leave no room)."""
        return (self.capacity_bytes is None or adapter_id in self._held
                or self._pinned_bytes + self._bytes[adapter_id] <= self.capacity_bytes)

    def fetch(self, adapter_id: int) -> bool | None:
        """Make ``adapter_id`` host-resident for a copy to the pool. Returns whether it had to
        be read from disk, or None if pinned adapters leave no room for it right now."""
        if self.capacity_bytes is None:
            return False
        if adapter_id in self._held:
            self._held.move_to_end(adapter_id)
            return False
        size = self._bytes[adapter_id]
        if not self._make_room(size):
            return None
        self._held[adapter_id] = None
        self.used_bytes += size
        self.disk_reads += 1
        return True

    def _make_room(self, size: int) -> bool:
        assert self.capacity_bytes is not None
        if self._pinned_bytes + size > self.capacity_bytes:
            return False
        excess = self.used_bytes + size - self.capacity_bytes
        victims = []
        for adapter_id in self._held:  # least recently fetched first
            if excess <= 0:
                break
            if adapter_id not in self._pinned:
                victims.append(adapter_id)
                excess -= self._bytes[adapter_id]
        for adapter_id in victims:
            del self._held[adapter_id]
            self.used_bytes -= self._bytes[adapter_id]
        return True

    def pin(self, adapter_id: int) -> None:
        """Keep ``adapter_id`` (host-resident) in host memory until ``unpin``."""
        if self.capacity_bytes is None:
            return
        count = self._pinned.get(adapter_id, 0)
        if not count:
            self._pinned_bytes += self._bytes[adapter_id]
        self._pinned[adapter_id] = count + 1

    def unpin(self, adapter_id: int) -> None:
        if self.capacity_bytes is None:
            return
        left = self._pinned[adapter_id] - 1
        if left:
            self._pinned[adapter_id] = left
        else:
            del self._pinned[adapter_id]
            self._pinned_bytes -= self._bytes[adapter_id]
