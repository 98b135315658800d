"""Which replica serves an arriving request: routing policies by name (``ROUTERS``).

- ``round-robin``: replicas in turn;
- ``least-outstanding``: the replica with the fewest waiting plus running requests;
- ``adapter-affinity``: among replicas that hold the request's adapter in their pool (resident
  or loading), the least outstanding; if none holds it, the least outstanding overall.

Ties go to the lowest replica index, so routing is deterministic.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from types import MappingProxyType
from typing import ClassVar, Mapping, Sequence

from manylora.engine.request import Request
from manylora.engine.scheduler import Scheduler


class Router(ABC):
    name: ClassVar[str]

    @abstractmethod
    def choose(self, req: Request, replicas: Sequence[Scheduler]) -> int:
        """Index of the replica (its scheduler in ``replicas``) that gets ``req``."""


def _least_outstanding(replicas: Sequence[Scheduler], among: Sequence[int]) -> int:
    return min(among, key=lambda i: (replicas[i].num_outstanding, i))


class RoundRobinRouter(Router):
    name: ClassVar[str] = "round-robin"

    def __init__(self) -> None:
        self._next = 0

    def choose(self, req: Request, replicas: Sequence[Scheduler]) -> int:
        index = self._next % len(replicas)
        self._next = index + 1
        return index


class LeastOutstandingRouter(Router):
    name: ClassVar[str] = "least-outstanding"

    def choose(self, req: Request, replicas: Sequence[Scheduler]) -> int:
        return _least_outstanding(replicas, range(len(replicas)))


class AdapterAffinityRouter(Router):
    name: ClassVar[str] = "adapter-affinity"

    def choose(self, req: Request, replicas: Sequence[Scheduler]) -> int:
        holding = [i for i, s in enumerate(replicas) if req.adapter_id in s.residency.pages]
        return _least_outstanding(replicas, holding or range(len(replicas)))


ROUTERS: Mapping[str, type[Router]] = MappingProxyType({
    cls.name: cls for cls in (RoundRobinRouter, LeastOutstandingRouter, AdapterAffinityRouter)
})
