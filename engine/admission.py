"""One admission round: which waiting requests join the running batch, and what to prefetch.

Waiting requests are tried in the queue policy's order. For each, the round checks, in turn:

- batch size and token budget (prefill tokens + decode tokens): stop the round (head-of-line,
  as S-LoRA and vLLM do, so a large request is not starved by small ones behind it); a
  preempted request whose recomputed prefill alone exceeds the budget may still run as the
  only prefill of a step, else it could never resume;
- adapter clustering (at most ``max_batch_adapters`` distinct adapters in the batch) and an
  adapter still loading: skip this request, try the next;
- memory: the KV pages the reservation policy wants now plus, if the adapter is not resident,
  its pages, must fit in free pages plus pages of idle adapters that may be evicted; else
  stop the round.

An admitted request's adapter is pinned before anything is evicted, evictions follow the
eviction policy, and a missing adapter is loaded as a blocking load of this step. With
prefetch on, the round then starts background loads for adapters of the next waiting
requests, using free pages and idle adapters that those requests do not need.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from manylora.engine.adapter_residency import AdapterResidency
from manylora.engine.catalog import AdapterCatalog
from manylora.engine.model_shape import PoolLayout
from manylora.engine.page_pool import PagePool, PoolAccountingError
from manylora.engine.policies_queue import QueuePolicy
from manylora.engine.policies_reservation import KVReservation
from manylora.engine.request import Request
from manylora.engine.scheduler_config import ControlConfig
from manylora.engine.step_plan import AdapterLoad


class AdmissionHost(Protocol):
    """The scheduler state an admission round reads and the two calls it makes."""

    config: ControlConfig
    layout: PoolLayout
    pool: PagePool
    residency: AdapterResidency
    catalog: AdapterCatalog
    queue: QueuePolicy
    reservation: KVReservation
    running: dict[int, Request]
    decode_count: int

    def acquire_adapter(self, adapter_id: int) -> None: ...

    def start(self, req: Request, now: float, s: int, pages: np.ndarray) -> None: ...

    def window(self, count: int) -> list[Request]: ...


def _staged(load: AdapterLoad | None, adapter_id: int) -> AdapterLoad:
    if load is None:
        raise PoolAccountingError(f"host tier refused adapter {adapter_id} after can_stage()")
    return load


class Admission:
    """The admission round and prefetch of one scheduler."""

    def __init__(self, scheduler: AdmissionHost) -> None:
        self.s = scheduler
        config = scheduler.config
        self.max_batch = config.scheduler.max_batch_size
        self.token_budget = config.scheduler.token_budget
        self.max_adapters = config.queue.max_batch_adapters
        self.prefetch_window = config.memory.prefetch_window if config.memory.prefetch else 0

    def round(self, now: float, step: int
              ) -> tuple[tuple[Request, ...], tuple[AdapterLoad, ...], tuple[int, ...]]:
        sched = self.s
        pool, residency, catalog = sched.pool, sched.residency, sched.catalog
        refs, resident = residency.refs, residency.pages
        reservation, layout = sched.reservation, sched.layout
        prefill: list[Request] = []
        loads: list[AdapterLoad] = []
        evictions: list[int] = []
        slots = self.max_batch - len(sched.running)
        budget = self.token_budget - sched.decode_count
        cap = self.max_adapters
        queue = sched.queue
        if slots <= 0:
            # A full batch admits nothing; like S-LoRA, the policy does not even look.
            if self.prefetch_window:
                self._prefetch(loads, evictions)
            return (), tuple(loads), tuple(evictions)
        queue.begin_round(now)
        for req in queue.candidates(sched):
            n = req.prefill_len
            if n > budget and not (n > self.token_budget and not prefill):
                break
            aid = req.adapter_id
            if aid >= 0:
                if cap and aid not in refs and len(refs) >= cap:
                    continue
                if aid in residency.loading:
                    continue
                adapter_pages = 0 if aid in resident else catalog.pages[aid]
                if adapter_pages and not residency.host.can_stage(aid):
                    continue
                withheld = len(resident[aid]) if aid in resident and aid not in refs else 0
            else:
                adapter_pages = withheld = 0
            kv = reservation.admit_pages(layout, req)
            if not pool.fits(kv, adapter_pages, residency.evictable_pages - withheld):
                break
            if aid >= 0 and not adapter_pages:
                sched.acquire_adapter(aid)  # pin before evicting, so it cannot be the victim
            short = pool.shortfall(kv, adapter_pages)
            if short:
                evictions.extend(residency.evict(short))
            if adapter_pages:
                loads.append(_staged(residency.load(aid, blocking=True), aid))
                sched.acquire_adapter(aid)
            sched.start(req, now, step, pool.alloc_kv(kv, req.request_id))
            prefill.append(req)
            budget -= n
            slots -= 1
            if slots == 0:
                break
        queue.end_round(len(prefill))
        if self.prefetch_window:
            self._prefetch(loads, evictions)
        return tuple(prefill), tuple(loads), tuple(evictions)

    def _prefetch(self, loads: list[AdapterLoad], evictions: list[int]) -> None:
        """Background loads for adapters of the next waiting requests."""
        sched = self.s
        pool, residency, catalog = sched.pool, sched.residency, sched.catalog
        window = sched.window(self.prefetch_window)
        wanted = {r.adapter_id for r in window if r.adapter_id >= 0}
        if not wanted:
            return
        protected = residency.idle_pages(wanted)
        for aid in dict.fromkeys(r.adapter_id for r in window):  # window order, no repeats
            if aid < 0 or aid in residency.pages or not residency.host.can_stage(aid):
                continue
            need = catalog.pages[aid]
            if not pool.fits(0, need, residency.evictable_pages - protected):
                continue
            short = pool.shortfall(0, need)
            if short:
                evictions.extend(residency.evict(short, protect=wanted))
            loads.append(_staged(residency.load(aid, blocking=False), aid))
