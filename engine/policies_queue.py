"""Admission order of waiting requests: queue policies by name (``QUEUE_POLICIES``).

A queue policy owns the waiting requests and says in which order the scheduler should try to
admit them (``candidates``), which ones to drop because they can no longer meet their
first-token SLO (``expire``), and when its own decisions next change with time alone
(``next_event_time``; the simulator never jumps over that instant). Preempted requests
(``requeue``) have already produced their first token; every policy serves them first, oldest
arrival first, and never drops them.

- ``fcfs``: oldest arrival first.
- ``lifo``: newest arrival first.
- ``early-abort``: S-LoRA's abort queue (slora/server/router/abort_req_queue.py): drop a
  queued request once ``waited + abort_margin_s >= slo_ttft_s``; estimate the arrival rate as
  new arrivals between admitted batches and the batch size, both smoothed 0.7 new / 0.3 old
  and truncated to ints; while arrivals keep up with the batch size (overload) serve newest
  first, else oldest first. S-LoRA looks for drops only when it tries to form a batch; here a
  drop happens at the first step at or after the moment the SLO is out of reach, so its
  recorded time does not depend on when a batch slot frees.
- ``edf``: earliest first-token deadline (``arrival + slo_ttft_s``) first among requests that
  can still make it; those that cannot (``deadline - abort_margin_s <= now``) are demoted
  behind every on-time request, in arrival order, but still served.
- ``adapter-affinity``: requests for adapters in the running batch first, then for adapters
  resident in the pool, then the rest; arrival order within each group.

Removal is lazy: the scheduler calls ``remove`` and the entry goes stale (its ``queue_seq``
no longer matches); stale entries are skipped and compacted away, so no operation scans the
queue except an admission round that walks it.
"""
from __future__ import annotations

import bisect
import heapq
import math
from abc import ABC, abstractmethod
from collections import deque
from types import MappingProxyType
from typing import Collection, ClassVar, Iterable, Iterator, Mapping, Protocol

from manylora.engine.request import Request

_Entry = tuple[int, Request]  # (queue sequence, request)


class QueueView(Protocol):
    """What a queue policy may ask the scheduler about the running batch."""

    def running_adapters(self) -> Collection[int]: ...

    def is_resident(self, adapter_id: int) -> bool: ...


def _live(entries: Iterable[_Entry]) -> Iterator[Request]:
    for seq, req in entries:
        if req.queue_seq == seq:
            yield req


def _compacted(entries: deque[_Entry]) -> deque[_Entry]:
    return deque(e for e in entries if e[1].queue_seq == e[0])


class QueuePolicy(ABC):
    """Waiting requests and their admission order."""

    name: ClassVar[str]

    def __init__(self, slo_ttft_s: float, abort_margin_s: float) -> None:
        self.slo_ttft_s = slo_ttft_s
        self.abort_margin_s = abort_margin_s
        self._resume: list[tuple[float, int, int, Request]] = []  # heap of preempted
        self._seq = 0
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def _enter(self, req: Request) -> int:
        self._seq += 1
        req.queue_seq = self._seq
        self._live += 1
        return self._seq

    def push(self, req: Request, now: float) -> None:
        """A new arrival."""
        self._push_fresh(self._enter(req), req)

    def requeue(self, req: Request) -> None:
        """A preempted request: served before new arrivals."""
        seq = self._enter(req)
        heapq.heappush(self._resume, (req.arrival_s, req.request_id, seq, req))

    def remove(self, req: Request) -> None:
        """``req`` was admitted or dropped: its entry goes stale."""
        req.queue_seq = -1
        self._live -= 1
        self._removed()

    def candidates(self, view: QueueView) -> Iterator[Request]:
        """Waiting requests in the order admission should try them."""
        while self._resume and self._resume[0][3].queue_seq != self._resume[0][2]:
            heapq.heappop(self._resume)
        if self._resume:
            for _, _, seq, req in sorted(self._resume):
                if req.queue_seq == seq:
                    yield req
        yield from self._fresh(view)

    def begin_round(self, now: float) -> None:
        """An admission round starts."""

    def end_round(self, admitted: int) -> None:
        """The admission round admitted ``admitted`` requests."""

    def expire(self, now: float) -> list[Request]:
        """Requests to drop now (already removed from the queue)."""
        return []

    def next_event_time(self) -> float:
        """Earliest time at which ``expire`` or the order changes by the clock alone."""
        return math.inf

    @abstractmethod
    def _push_fresh(self, seq: int, req: Request) -> None: ...

    @abstractmethod
    def _fresh(self, view: QueueView) -> Iterator[Request]: ...

    def _removed(self) -> None:
        """Hook: compact stale entries when they outnumber live ones."""


class _DequeQueue(QueuePolicy):
    """New arrivals in one deque, arrival order."""

    def __init__(self, slo_ttft_s: float, abort_margin_s: float) -> None:
        super().__init__(slo_ttft_s, abort_margin_s)
        self._fifo: deque[_Entry] = deque()

    def _push_fresh(self, seq: int, req: Request) -> None:
        self._fifo.append((seq, req))

    def _removed(self) -> None:
        if len(self._fifo) > 2 * self._live + 64:
            self._fifo = _compacted(self._fifo)

    def _oldest_first(self) -> Iterator[Request]:
        fifo = self._fifo
        while fifo and fifo[0][1].queue_seq != fifo[0][0]:
            fifo.popleft()
        return _live(fifo)

    def _newest_first(self) -> Iterator[Request]:
        fifo = self._fifo
        while fifo and fifo[-1][1].queue_seq != fifo[-1][0]:
            fifo.pop()
        return _live(reversed(fifo))


class FCFSQueue(_DequeQueue):
    name: ClassVar[str] = "fcfs"

    def _fresh(self, view: QueueView) -> Iterator[Request]:
        return self._oldest_first()


class LIFOQueue(_DequeQueue):
    name: ClassVar[str] = "lifo"

    def _fresh(self, view: QueueView) -> Iterator[Request]:
        return self._newest_first()


class EarlyAbortQueue(_DequeQueue):
    """S-LoRA's abort queue; see the module docstring."""

    name: ClassVar[str] = "early-abort"

    def __init__(self, slo_ttft_s: float, abort_margin_s: float) -> None:
        super().__init__(slo_ttft_s, abort_margin_s)
        self.rate_estimate = 1
        self.batch_estimate = 1
        self._last_len = 0

    def _fresh_len(self) -> int:
        return self._live - len(self._resume)

    def _deadline(self, req: Request) -> float:
        return req.arrival_s + self.slo_ttft_s - self.abort_margin_s

    def expire(self, now: float) -> list[Request]:
        dropped = []
        fifo = self._fifo
        while fifo:
            seq, req = fifo[0]
            if req.queue_seq != seq:
                fifo.popleft()
            elif self._deadline(req) <= now:
                fifo.popleft()
                self.remove(req)
                dropped.append(req)
            else:
                break
        return dropped

    def next_event_time(self) -> float:
        fifo = self._fifo
        while fifo and fifo[0][1].queue_seq != fifo[0][0]:
            fifo.popleft()
        return self._deadline(fifo[0][1]) if fifo else math.inf

    @property
    def overloaded(self) -> bool:
        return self.rate_estimate >= self.batch_estimate

    def begin_round(self, now: float) -> None:
        self.rate_estimate = int(0.7 * (self._fresh_len() - self._last_len)
                                 + 0.3 * self.rate_estimate)

    def end_round(self, admitted: int) -> None:
        if admitted:
            self._last_len = self._fresh_len()
            self.batch_estimate = max(int(0.7 * admitted + 0.3 * self.batch_estimate), 1)

    def _fresh(self, view: QueueView) -> Iterator[Request]:
        return self._newest_first() if self.overloaded else self._oldest_first()


class EDFQueue(QueuePolicy):
    """Earliest deadline first with demotion of hopeless requests; see the module docstring."""

    name: ClassVar[str] = "edf"

    def __init__(self, slo_ttft_s: float, abort_margin_s: float) -> None:
        super().__init__(slo_ttft_s, abort_margin_s)
        self._on_time: list[tuple[float, int, Request]] = []  # sorted by (deadline, seq)
        self._late: deque[_Entry] = deque()

    def _push_fresh(self, seq: int, req: Request) -> None:
        # (deadline, seq) is unique, so tuples never compare the requests themselves.
        entry = (req.arrival_s + self.slo_ttft_s, seq, req)
        if not self._on_time or entry[:2] >= self._on_time[-1][:2]:
            self._on_time.append(entry)
        else:
            bisect.insort(self._on_time, entry)

    def _removed(self) -> None:
        if len(self._on_time) + len(self._late) > 2 * self._live + 64:
            self._on_time = [e for e in self._on_time if e[2].queue_seq == e[1]]
            self._late = _compacted(self._late)

    def expire(self, now: float) -> list[Request]:
        cut = 0
        for deadline, seq, req in self._on_time:
            if deadline - self.abort_margin_s > now:
                break
            if req.queue_seq == seq:
                self._late.append((seq, req))
            cut += 1
        del self._on_time[:cut]
        return []

    def next_event_time(self) -> float:
        stale = 0
        for deadline, seq, req in self._on_time:
            if req.queue_seq == seq:
                break
            stale += 1
        del self._on_time[:stale]
        return self._on_time[0][0] - self.abort_margin_s if self._on_time else math.inf

    def _fresh(self, view: QueueView) -> Iterator[Request]:
        for _, seq, req in self._on_time:
            if req.queue_seq == seq:
                yield req
        yield from _live(self._late)


class AffinityQueue(_DequeQueue):
    """Adapter-affinity order; see the module docstring."""

    name: ClassVar[str] = "adapter-affinity"

    def __init__(self, slo_ttft_s: float, abort_margin_s: float) -> None:
        super().__init__(slo_ttft_s, abort_margin_s)
        self._by_adapter: dict[int, deque[_Entry]] = {}

    def _push_fresh(self, seq: int, req: Request) -> None:
        super()._push_fresh(seq, req)
        self._by_adapter.setdefault(req.adapter_id, deque()).append((seq, req))

    def _removed(self) -> None:
        super()._removed()
        if sum(map(len, self._by_adapter.values())) > 2 * self._live + 64:
            self._by_adapter = {a: q for a, q in ((a, _compacted(q))
                                                  for a, q in self._by_adapter.items()) if q}

    def _group(self, adapter_id: int) -> Iterator[Request]:
        group = self._by_adapter.get(adapter_id)
        if group is None:
            return iter(())
        while group and group[0][1].queue_seq != group[0][0]:
            group.popleft()
        if not group:
            del self._by_adapter[adapter_id]
            return iter(())
        return _live(group)

    def _fresh(self, view: QueueView) -> Iterator[Request]:
        running = list(view.running_adapters())
        seen: set[int] = set(running)
        for adapter_id in running:
            yield from self._group(adapter_id)
        resident = [a for a in self._by_adapter if a not in seen and view.is_resident(a)]
        seen.update(resident)
        for adapter_id in resident:
            yield from self._group(adapter_id)
        for req in self._oldest_first():
            if req.adapter_id not in seen:
                yield req


QUEUE_POLICIES: Mapping[str, type[QueuePolicy]] = MappingProxyType({
    cls.name: cls for cls in (FCFSQueue, LIFOQueue, EarlyAbortQueue, EDFQueue, AffinityQueue)
})
