"""The scheduler: continuous batching over the pool, with no clock and no device.

A body (engine or simulator) drives it::

    scheduler.add_request(req, now)           # arrival
    plan = scheduler.schedule(now)            # StepPlan for the next step
    ...execute plan...                        # real forward pass, or a cost-model timeout
    scheduler.complete(plan, now, stopped)    # tokens produced: advance, finish, free pages
    scheduler.adapter_loaded(adapter_id, now) # a prefetch copy finished

Per-step work is proportional to what changed, not to the batch: decode progress follows
from one global step counter (``Request.context_len``), the decode shape is kept as running
sums, finishes are bucketed by the step that produces the last token, and admission (with
prefetch) runs only when something it depends on changed: an arrival, a finish, a
preemption, a load completion or a time event of the queue policy. Between such changes a
step costs O(1); ``quiet_steps``/``skip_steps`` let a simulator cover a run of identical
decode steps in one jump.
"""
from __future__ import annotations

import heapq
from itertools import count as counter, islice
from typing import Collection, Iterable

import numpy as np

from manylora.engine.adapter_residency import AdapterResidency
from manylora.engine.admission import Admission
from manylora.engine.catalog import AdapterCatalog
from manylora.engine.host_cache import HostCache
from manylora.engine.model_shape import PoolLayout
from manylora.engine.page_pool import POOL_KINDS, PagePool
from manylora.engine.policies_eviction import EVICTION_POLICIES
from manylora.engine.policies_queue import QUEUE_POLICIES
from manylora.engine.policies_reservation import KV_RESERVATIONS
from manylora.engine.request import Request, RequestState
from manylora.engine.scheduler_config import ControlConfig
from manylora.engine.step_plan import AdapterLoad, StepPlan
from manylora.engine.step_shape import StepShape

_RUNNING = RequestState.RUNNING


class SchedulerStateError(RuntimeError):
    """The body called the scheduler out of order (e.g. completed a stale plan)."""


class Scheduler:
    """Requests, the running batch and the queue of one engine replica."""

    def __init__(self, config: ControlConfig, layout: PoolLayout, pool: PagePool,
                 residency: AdapterResidency, catalog: AdapterCatalog) -> None:
        self.config = config
        self.layout = layout
        self.pool = pool
        self.residency = residency
        self.catalog = catalog
        q = config.queue
        self.queue = QUEUE_POLICIES[q.queue](q.slo_ttft_s, q.abort_margin_s)
        self.reservation = KV_RESERVATIONS[config.scheduler.kv_reservation]()
        self.step = 0                                 # index of the next step to schedule
        self.running: dict[int, Request] = {}         # request_id -> request, admission order
        self._admission = Admission(self)
        self._decode: tuple[Request, ...] | None = ()  # cached decode batch; None = stale
        self._finish_at: dict[int, list[Request]] = {}
        self._finish_steps: list[int] = []            # heap of _finish_at's keys
        self._admissions = counter()
        self._grow_at: dict[int, list[Request]] = {}
        self._rejected: list[Request] = []
        self._dirty = False                           # admission inputs changed
        # Running sums over decoding requests (prefilled before the current step).
        self.decode_count = 0
        self._decode_ctx_base = 0                     # sum of prefill_len - prefill_step
        self._decode_ranks = 0                        # sum of their adapters' ranks
        self.sum_ranks = 0                            # over distinct adapters of running requests

    # ----------------------------------------------------------------- queries
    def running_adapters(self) -> Collection[int]:
        """Adapters used by running requests (a live view)."""
        return self.residency.refs.keys()

    def is_resident(self, adapter_id: int) -> bool:
        return adapter_id < 0 or self.residency.is_resident(adapter_id)

    @property
    def num_waiting(self) -> int:
        return len(self.queue)

    @property
    def num_outstanding(self) -> int:
        """Waiting plus running requests (what a least-loaded router balances)."""
        return len(self.queue) + len(self.running)

    @property
    def idle(self) -> bool:
        """Nothing running and nothing waiting."""
        return not self.running and not len(self.queue)

    def next_event_time(self) -> float:
        """When the queue policy next acts by the clock alone (drops, reorders); inf if never."""
        return self.queue.next_event_time()

    # ----------------------------------------------------------------- arrivals
    def add_request(self, req: Request, now: float) -> None:
        """A new request; one that can never be served is rejected at once (listed in the
        next plan's ``rejected``)."""
        reason = self._reject_reason(req)
        if reason:
            req.state = RequestState.REJECTED
            req.reason = reason
            self._rejected.append(req)
            return
        req.state = RequestState.WAITING
        self.queue.push(req, now)
        self._dirty = True

    def _reject_reason(self, req: Request) -> str:
        aid = req.adapter_id
        if aid >= 0 and aid not in self.catalog:
            return "unknown-adapter"
        if req.prompt_len > self.config.scheduler.token_budget:
            return "prompt-exceeds-token-budget"
        kv = self.layout.kv_pages(req.kv_tokens_total)
        if not self.pool.fits_alone(kv, self.catalog.pages[aid] if aid >= 0 else 0):
            return "exceeds-pool"
        if aid >= 0 and not self.residency.host.can_ever_hold(aid):
            return "adapter-exceeds-host-cache"
        return ""

    def adapter_loaded(self, adapter_id: int, now: float) -> None:
        """A prefetch (background) copy of ``adapter_id`` into the pool finished."""
        self.residency.loaded(adapter_id)
        self._dirty = True

    # ----------------------------------------------------------------- one step
    def schedule(self, now: float) -> StepPlan:
        """Decide the next step. Call ``complete`` with the plan once it ran (if it runs)."""
        s = self.step
        preempted: tuple[Request, ...] = ()
        if s in self._grow_at:
            preempted = self._grow(s)
        aborted: tuple[Request, ...] = ()
        if now >= self.queue.next_event_time():
            aborted = self._expire(now)
        if self._decode is None:
            self._decode = tuple(self.running.values())
        decode = self._decode
        prefill: tuple[Request, ...] = ()
        loads: tuple[AdapterLoad, ...] = ()
        evictions: tuple[int, ...] = ()
        if self._dirty and not preempted:
            self._dirty = False
            if len(self.queue):
                prefill, loads, evictions = self._admission.round(now, s)
        rejected: tuple[Request, ...] = ()
        if self._rejected:
            rejected = tuple(self._rejected)
            self._rejected.clear()
        return StepPlan(s, prefill, decode, loads, evictions, preempted, aborted, rejected,
                        self._shape(s, prefill, loads), self.pool.kv_pages,
                        self.pool.adapter_pages, self.pool.free_pages)

    def _shape(self, s: int, prefill: tuple[Request, ...],
               loads: tuple[AdapterLoad, ...]) -> StepShape:
        d = self.decode_count
        lora_token_ranks = self._decode_ranks
        prefill_tokens = prefill_sq = 0
        if prefill:
            rank = self.catalog.rank
            for req in prefill:
                n = req.prefill_len
                prefill_tokens += n
                prefill_sq += n * n
                lora_token_ranks += n * rank[req.adapter_id]
        load_count = load_bytes = 0
        for load in loads:
            if load.blocking:
                load_count += 1
                load_bytes += load.num_bytes
        return StepShape(prefill_tokens, len(prefill), prefill_sq, d,
                         self._decode_ctx_base + d * s, len(self.residency.refs),
                         self.sum_ranks, lora_token_ranks, load_count, load_bytes)

    def complete(self, plan: StepPlan, now: float, stopped: Iterable[int] = ()) -> None:
        """The step of ``plan`` ran and finished at ``now``; ``stopped``: ids of requests that
        produced an end-of-sequence token in it (finished early)."""
        if not plan.runs:
            return
        s = plan.step
        if s != self.step:
            raise SchedulerStateError(f"complete() for step {s}, but step {self.step} is next")
        rank = self.catalog.rank
        for req in plan.prefill:
            if req.first_token_s is None:
                req.first_token_s = now
            if req.finish_step == s:
                self._finish(req, now, s, decoding=False)
                continue
            self.decode_count += 1
            self._decode_ctx_base += req.prefill_len - s
            self._decode_ranks += rank[req.adapter_id]
            if self.reservation.grows:
                self._plan_growth(req, s)
        for request_id in stopped:
            req = self.running.get(request_id)
            if req is not None:
                self._finish(req, now, s, decoding=True)
        finishing = self._finish_at.pop(s, None)
        if finishing:
            for req in finishing:
                if req.state is _RUNNING and req.finish_step == s:
                    self._finish(req, now, s, decoding=True)
            heap = self._finish_steps
            while heap and heap[0] <= s:
                heapq.heappop(heap)
        self.step = s + 1

    def _finish(self, req: Request, now: float, s: int, decoding: bool) -> None:
        req.state = RequestState.FINISHED
        req.finish_s = now
        req.output_tokens = req.tokens_after(s)
        self._release(req, decoding)

    # ----------------------------------------------------------------- bookkeeping
    def _release(self, req: Request, decoding: bool) -> None:
        """Take ``req`` out of the running batch and free what it holds."""
        del self.running[req.request_id]
        self._decode = None
        self._dirty = True
        if len(req.kv_pages):
            self.pool.free_kv(req.kv_pages, req.request_id)
            req.kv_pages = req.kv_pages[:0]
        aid = req.adapter_id
        if decoding:
            self.decode_count -= 1
            self._decode_ctx_base -= req.prefill_len - req.prefill_step
            self._decode_ranks -= self.catalog.rank[aid]
        if aid >= 0:
            self.residency.release(aid)
            if aid not in self.residency.refs:
                self.sum_ranks -= self.catalog.rank[aid]

    def acquire_adapter(self, adapter_id: int) -> None:
        """A request joining the batch pins resident ``adapter_id``."""
        if adapter_id not in self.residency.refs:
            self.sum_ranks += self.catalog.rank[adapter_id]
        self.residency.acquire(adapter_id)

    def start(self, req: Request, now: float, s: int, pages: np.ndarray) -> None:
        """Admission's last word: ``req`` (adapter acquired, ``pages`` allocated) runs its
        prefill in step ``s``."""
        self.queue.remove(req)
        req.state = _RUNNING
        if req.admitted_s is None:
            req.admitted_s = now
        req.kv_pages = pages
        req.prefill_step = s
        req.finish_step = s + req.output_len - req.base_tokens - 1
        req.admit_seq = next(self._admissions)
        self.running[req.request_id] = req
        self._decode = None
        if req.finish_step > s:
            bucket = self._finish_at.get(req.finish_step)
            if bucket is None:
                self._finish_at[req.finish_step] = [req]
                heapq.heappush(self._finish_steps, req.finish_step)
            else:
                bucket.append(req)

    def _expire(self, now: float) -> tuple[Request, ...]:
        dropped = self.queue.expire(now)
        self._dirty = True
        for req in dropped:
            req.state = RequestState.ABORTED
            req.reason = "ttft-slo-unreachable"
        return tuple(dropped)

    # ----------------------------------------------------------------- incremental KV
    def _plan_growth(self, req: Request, after: int) -> None:
        step = self.reservation.next_growth_step(self.layout, req, after)
        req.grow_step = -1 if step is None else step
        if step is not None:
            self._grow_at.setdefault(step, []).append(req)

    def _grow(self, s: int) -> tuple[Request, ...]:
        """Give each request crossing a page boundary in step ``s`` one more KV page, oldest
        admission first; when the pool is dry, evict idle adapters, then preempt the newest."""
        preempted: list[Request] = []
        growing = [r for r in self._grow_at.pop(s) if r.state is _RUNNING and r.grow_step == s]
        growing.sort(key=lambda r: r.admit_seq)
        if self.pool.fits(len(growing), 0, 0):
            # The common case, in one allocation: every request gets its page.
            pages = self.pool.alloc_kv_each(np.array([r.request_id for r in growing]))
            for req, page in zip(growing, pages[:, None]):
                req.kv_pages = np.concatenate((req.kv_pages, page))
                self._plan_growth(req, s)
            return ()
        for req in growing:
            while req.state is _RUNNING:
                if self.pool.fits(1, 0, 0):
                    page = self.pool.alloc_kv(1, req.request_id)
                    req.kv_pages = np.concatenate((req.kv_pages, page))
                    self._plan_growth(req, s)
                    break
                if self.pool.fits(1, 0, self.residency.evictable_pages):
                    self.residency.evict(self.pool.shortfall(1, 0))
                    continue
                preempted.append(self._preempt_newest(s))
        return tuple(preempted)

    def _preempt_newest(self, s: int) -> Request:
        victim = next(reversed(self.running.values()))
        tokens = victim.tokens_after(s - 1)
        self._release(victim, decoding=True)
        victim.state = RequestState.WAITING
        victim.base_tokens = tokens
        victim.output_tokens = tokens
        victim.preemptions += 1
        self.queue.requeue(victim)
        return victim

    # ----------------------------------------------------------------- jumps and shutdown
    def quiet_steps(self, plan: StepPlan) -> int:
        """How many steps from ``plan`` (just scheduled, not completed) on are decode steps
        over exactly this batch with nothing else happening, as long as no request arrives,
        no load completes and the clock stays below ``next_event_time()``. The last of them
        is the step before the next finish. 0 when ``plan`` itself is not such a step."""
        return 0 if self._dirty else self._decode_run(plan)

    def _decode_run(self, plan: StepPlan) -> int:
        """Steps from ``plan`` on with this batch and no finish, if nothing external happens
        before their start (0 if ``plan`` is not a pure decode step of a static batch)."""
        if (plan.step != self.step or not plan.is_pure_decode or self.reservation.grows
                or plan.preempted):
            return 0
        return self._next_finish_step() - plan.step

    def _next_finish_step(self) -> int:
        """The nearest step in which a running request produces its last token."""
        heap, buckets = self._finish_steps, self._finish_at
        while heap:
            step = heap[0]
            bucket = buckets.get(step)
            if bucket is not None and any(r.state is _RUNNING and r.finish_step == step
                                          for r in bucket):
                return step
            heapq.heappop(heap)  # completed already, or every request in it left early
            buckets.pop(step, None)
        return self.step

    def skip_steps(self, plan: StepPlan, count: int) -> None:
        """Complete ``plan`` and the ``count - 1`` identical steps after it at once
        (``1 <= count <= quiet_steps(plan)`` as it was when ``plan`` was scheduled; events
        since then belong after the last of them). Only the step counter changes."""
        if not 1 <= count <= self._decode_run(plan):
            raise SchedulerStateError(f"cannot skip {count} steps from step {plan.step}")
        self.step += count

    def unload_adapters(self) -> list[int]:
        """Evict every idle resident adapter (end of a run, so the pool ends empty)."""
        return self.residency.evict(self.residency.evictable_pages)

    def window(self, count: int) -> list[Request]:
        """The first ``count`` waiting requests in admission order (what prefetch looks at)."""
        return list(islice(self.queue.candidates(self), count))


def build_scheduler(config: ControlConfig, layout: PoolLayout, catalog: AdapterCatalog,
                    num_pages: int | None = None) -> Scheduler:
    """A scheduler with its pool, residency, eviction policy and host tier, as ``config``
    says. The pool has ``config.memory.pool_pages`` pages if set, else ``num_pages`` (what
    the body derived from device memory or a profile)."""
    memory = config.memory
    if layout.tokens_per_page != memory.tokens_per_page:
        raise ValueError(f"MemoryConfig.tokens_per_page ({memory.tokens_per_page}) differs "
                         f"from the pool layout's ({layout.tokens_per_page})")
    pages = memory.pool_pages if memory.pool_pages is not None else num_pages
    if pages is None:
        raise ValueError("MemoryConfig.pool_pages is not set and no num_pages was given")
    pool = POOL_KINDS[memory.pool].build(pages, memory.adapter_fraction)
    residency = AdapterResidency(catalog, pool, EVICTION_POLICIES[memory.eviction](),
                                 HostCache(memory.host_cache_bytes, catalog.num_bytes))
    return Scheduler(config, layout, pool, residency, catalog)
