"""Shared helpers for the control-plane tests: tiny layouts and catalogs, a minimal body that
drives a scheduler with a fixed step time, and an invariant check run on every plan."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from manylora.engine.catalog import AdapterCatalog, AdapterSpec
from manylora.engine.model_shape import ModelShape, PoolLayout
from manylora.engine.page_pool import FREE, adapter_owner
from manylora.engine.request import TERMINAL_STATES, Request, RequestState
from manylora.engine.scheduler import Scheduler, build_scheduler
from manylora.engine.scheduler_config import ControlConfig
from manylora.engine.step_plan import StepPlan

# 2 layers, hidden 64, GQA 4 heads / 2 KV heads of 16: page_elems = 2*tpp*32. A rank-r adapter
# on q,v takes r*(64+64) + r*(64+32) = 224r elements: 3.5r pages rounded up at tpp=1 (28 at r=8).
TINY_SHAPE = ModelShape("tiny-test", 2, 64, 128, 4, 2, 16, 100)


def tiny_layout(tokens_per_page: int = 1) -> PoolLayout:
    return PoolLayout(TINY_SHAPE, tokens_per_page)


def tiny_catalog(layout: PoolLayout, ranks: Sequence[int]) -> AdapterCatalog:
    """Adapter i has rank ranks[i] on q and v."""
    return AdapterCatalog(layout, [AdapterSpec(i, {"q": r, "v": r}, 2.0 * r)
                                   for i, r in enumerate(ranks)])


def make_scheduler(ranks: Sequence[int] = (8, 8, 8), pool_pages: int = 400,
                   tokens_per_page: int = 1, **options: object) -> Scheduler:
    layout = tiny_layout(tokens_per_page)
    config = ControlConfig.from_flat({"pool_pages": pool_pages,
                                      "tokens_per_page": tokens_per_page, **options})
    return build_scheduler(config, layout, tiny_catalog(layout, ranks))


def req(rid: int, arrival: float, adapter: int, prompt: int, output: int) -> Request:
    return Request(rid, arrival, adapter, prompt, output)


@dataclass
class Trace:
    """What a driven run saw, for assertions."""

    plans: list[StepPlan] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    aborted: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    loaded_at: dict[int, list[float]] = field(default_factory=dict)


def drive(sched: Scheduler, requests: Iterable[Request], step_time: float = 1.0,
          load_time: float = 0.5, stop: Callable[[StepPlan], Iterable[int]] | None = None,
          check: bool = True, max_steps: int = 20_000) -> Trace:
    """Run ``requests`` (arrival order) to the end with a fixed step time; prefetch loads land
    ``load_time`` after they start. Checks invariants on every plan when ``check``."""
    pending = sorted(requests, key=lambda r: (r.arrival_s, r.request_id))
    loads: list[tuple[float, int]] = []
    out = Trace()
    now = 0.0
    i = 0
    for _ in range(max_steps):
        while i < len(pending) and pending[i].arrival_s <= now:
            sched.add_request(pending[i], now)
            i += 1
        for t, aid in sorted(loads):
            if t <= now:
                sched.adapter_loaded(aid, now)
                out.loaded_at.setdefault(aid, []).append(t)
        loads = [x for x in loads if x[0] > now]
        plan = sched.schedule(now)
        if check:
            check_plan(sched, plan)
        out.aborted.update(r.request_id for r in plan.aborted)
        out.rejected.update(r.request_id for r in plan.rejected)
        loads.extend((now + load_time, ld.adapter_id) for ld in plan.loads if not ld.blocking)
        if plan.runs:
            out.plans.append(plan)
            out.times.append(now)
            now += step_time
            sched.complete(plan, now, stop(plan) if stop else ())
            continue
        upcoming = [t for t, _ in loads]
        if i < len(pending):
            upcoming.append(pending[i].arrival_s)
        if sched.next_event_time() < math.inf and len(sched.queue):
            upcoming.append(sched.next_event_time())
        if not upcoming:
            assert sched.idle, f"stuck with {sched.num_waiting} waiting and nothing to wait for"
            break
        now = max(now, min(upcoming))
    else:
        raise AssertionError("run did not end")
    sched.unload_adapters()
    return out


def check_plan(sched: Scheduler, plan: StepPlan) -> None:
    """Every invariant of the pool, residency and plan that must hold at each step."""
    pool, res, cat, layout = sched.pool, sched.residency, sched.catalog, sched.layout
    pool.check()
    assert pool.kv_pages + pool.adapter_pages + pool.free_pages == pool.num_pages
    held = 0
    for r in sched.running.values():
        assert r.state is RequestState.RUNNING
        assert (pool.owner[r.kv_pages] == r.request_id).all(), "a KV page has another owner"
        held += len(r.kv_pages)
    assert held == pool.kv_pages, "KV pages held by requests != pool's KV page count"
    adapter_held = 0
    for aid, pages in res.pages.items():
        assert (pool.owner[pages] == adapter_owner(aid)).all(), "adapter page has another owner"
        assert len(pages) == cat.pages[aid]
        adapter_held += len(pages)
    assert adapter_held == pool.adapter_pages
    assert int((pool.owner == FREE).sum()) == pool.free_pages
    if pool.kind == "partitioned":
        kv_ids = [p for r in sched.running.values() for p in r.kv_pages]
        assert all(p < pool.kv_capacity for p in kv_ids), "KV page outside the KV region"
    refs = Counter(r.adapter_id for r in sched.running.values() if r.adapter_id >= 0)
    assert dict(refs) == res.refs, "adapter reference counts disagree with the batch"
    assert res.evictable_pages == sum(len(res.pages[a]) for a in res.pages
                                      if a not in res.refs and a not in res.loading)
    batch = plan.prefill + plan.decode
    assert set(r.request_id for r in batch) <= set(sched.running)
    for r in batch:
        assert r.adapter_id < 0 or res.is_resident(r.adapter_id), "batch adapter not resident"
    config = sched.config
    assert len(batch) <= config.scheduler.max_batch_size
    adapters = {r.adapter_id for r in batch if r.adapter_id >= 0}
    if config.queue.max_batch_adapters:
        assert len(adapters) <= config.queue.max_batch_adapters
    tokens = sum(r.prefill_len for r in plan.prefill) + len(plan.decode)
    oversize_alone = (len(plan.prefill) == 1
                      and plan.prefill[0].prefill_len > config.scheduler.token_budget)
    assert tokens <= config.scheduler.token_budget or oversize_alone
    s = plan.step
    shape = plan.shape
    assert shape.prefill_tokens == sum(r.prefill_len for r in plan.prefill)
    assert shape.prefill_requests == len(plan.prefill)
    assert shape.prefill_sq_tokens == sum(r.prefill_len ** 2 for r in plan.prefill)
    assert shape.decode_requests == len(plan.decode)
    assert shape.decode_context_tokens == sum(r.context_len(s) for r in plan.decode)
    assert shape.distinct_adapters == len(adapters)
    assert shape.sum_ranks == sum(cat.rank[a] for a in adapters)
    assert shape.lora_token_ranks == (sum(r.prefill_len * cat.rank[r.adapter_id]
                                          for r in plan.prefill)
                                      + sum(cat.rank[r.adapter_id] for r in plan.decode))
    blocking = [ld for ld in plan.loads if ld.blocking]
    assert shape.adapter_loads == len(blocking)
    assert shape.adapter_load_bytes == sum(ld.num_bytes for ld in blocking)
    assert (plan.kv_pages, plan.adapter_pages, plan.free_pages) == (
        pool.kv_pages, pool.adapter_pages, pool.free_pages)
    for r in plan.decode:
        # KV for every position written so far, including this step's new token
        assert len(r.kv_pages) >= layout.kv_pages(r.context_len(s))
    for r in plan.prefill:
        assert len(r.kv_pages) >= layout.kv_pages(r.prefill_len)


def check_end(sched: Scheduler, requests: Sequence[Request], out: Trace) -> None:
    """After a run: every request terminal exactly once, pool empty, no references."""
    for r in requests:
        assert r.state in TERMINAL_STATES, f"{r} did not end"
        assert out.aborted[r.request_id] == (r.state is RequestState.ABORTED)
        assert out.rejected[r.request_id] == (r.state is RequestState.REJECTED)
        if r.state is RequestState.FINISHED:
            assert r.finish_s is not None and r.first_token_s is not None
            assert r.arrival_s <= r.admitted_s <= r.first_token_s <= r.finish_s
            assert 1 <= r.output_tokens <= r.output_len
            assert r.reason == ""
        else:
            assert r.reason and r.finish_s is None
    assert not sched.running and not len(sched.queue)
    assert sched.pool.free_pages == sched.pool.num_pages
    sched.pool.check()
    assert not sched.residency.refs and not sched.residency.loading
    assert sched.decode_count == 0 and sched.sum_ranks == 0
