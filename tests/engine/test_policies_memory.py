"""Adapter clustering, eviction, prefetch, pool kind and host tier: each one's defining
behaviour on a hand-built scenario. Rank-8 adapters take 28 pages at one token per page."""
from __future__ import annotations

from control_cases import check_end, drive, make_scheduler, req
from manylora.engine.adapter_residency import AdapterState
from manylora.engine.request import RequestState


def _run(requests, **options):
    sched = make_scheduler(**options)
    out = drive(sched, requests)
    check_end(sched, requests, out)
    return sched, out


def _spread(n: int = 12):
    """n requests over adapters 0..3, all at t=0, long enough to overlap."""
    return [req(i, 0.0, i % 4, 4, 6 + i % 3) for i in range(n)]


def test_clustering_never_runs_more_than_k_adapters() -> None:
    _, capped = _run(_spread(), ranks=(8, 8, 8, 8), pool_pages=2000, max_batch_size=8,
                     max_batch_adapters=2)
    _, free = _run(_spread(), ranks=(8, 8, 8, 8), pool_pages=2000, max_batch_size=8)
    assert max(p.shape.distinct_adapters for p in capped.plans) == 2
    assert max(p.shape.distinct_adapters for p in free.plans) == 4
    # the cap made requests wait while batch slots were free
    assert any(len(p.prefill) + len(p.decode) < 8 for p in capped.plans[:3])


def _hot_then_cold():
    # adapter 0 serves five requests, then 1 and 2 one each, then 0 again; one at a time
    times = [0, 1, 2, 3, 4, 10, 12, 14]
    adapters = [0, 0, 0, 0, 0, 1, 2, 0]
    return [req(i, float(t), a, 4, 2) for i, (t, a) in enumerate(zip(times, adapters))]


def test_lfu_keeps_the_hot_adapter_that_lru_evicts() -> None:
    # 62 pages hold two adapters (56) and one request's KV (5): loading a third evicts one
    options = dict(ranks=(8, 8, 8), pool_pages=62, max_batch_size=1)
    _, lru_out = _run(_hot_then_cold(), eviction="lru", **options)
    _, lfu_out = _run(_hot_then_cold(), eviction="lfu", **options)
    lru_evicted = [a for p in lru_out.plans for a in p.evictions]
    lfu_evicted = [a for p in lfu_out.plans for a in p.evictions]
    assert lru_evicted[0] == 0 and lfu_evicted[0] == 1
    loads = lambda out: [ld.adapter_id for p in out.plans for ld in p.loads]  # noqa: E731
    assert loads(lru_out) == [0, 1, 2, 0]  # the hot adapter had to come back
    assert loads(lfu_out) == [0, 1, 2]
    assert len(lru_evicted) == 2 and len(lfu_evicted) == 1


def test_prefetch_makes_the_adapter_resident_before_its_request_is_admitted() -> None:
    def scenario():
        return [req(0, 0.0, 0, 4, 10), req(1, 1.0, 1, 4, 2)]

    second = scenario()
    sched = make_scheduler(ranks=(8, 8), max_batch_size=1, prefetch=True)
    out = drive(sched, second)
    check_end(sched, second, out)
    prefetches = [(t, ld) for p, t in zip(out.plans, out.times) for ld in p.loads
                  if not ld.blocking]
    assert [(t, ld.adapter_id) for t, ld in prefetches] == [(1.0, 1)]
    admitted = next(p for p in out.plans if second[1] in p.prefill)
    assert admitted.loads == () and admitted.shape.adapter_loads == 0
    assert out.loaded_at[1] == [1.5] and second[1].admitted_s == 10.0
    # without prefetch the same request pays a blocking load in its admission step
    sched = make_scheduler(ranks=(8, 8), max_batch_size=1)
    third = scenario()
    out = drive(sched, third)
    admitted = next(p for p in out.plans if third[1] in p.prefill)
    assert [(ld.adapter_id, ld.blocking) for ld in admitted.loads] == [(1, True)]


def test_a_request_waits_for_its_adapter_while_it_is_loading() -> None:
    sched = make_scheduler(ranks=(8, 8), max_batch_size=2, prefetch=True)
    running = req(0, 0.0, 0, 4, 10)
    sched.add_request(running, 0.0)
    sched.complete(sched.schedule(0.0), 1.0)
    sched.add_request(req(9, 1.0, -1, 4, 10), 1.0)  # fills the batch: 1 must wait
    sched.add_request(late := req(1, 1.0, 1, 4, 2), 1.0)
    plan = sched.schedule(1.0)
    assert [ld.adapter_id for ld in plan.prefetch_loads()] == [1]
    assert sched.residency.state(1) is AdapterState.LOADING
    sched.complete(plan, 2.0)
    for now in range(2, 10):  # request 0 ends at 10 s; the load lands at 3 s
        if now == 3:
            sched.adapter_loaded(1, 3.0)
        plan = sched.schedule(float(now))
        assert late not in plan.prefill
        sched.complete(plan, now + 1.0)
    assert sched.residency.state(1) is AdapterState.RESIDENT
    plan = sched.schedule(10.0)
    assert plan.prefill == (late,) and plan.loads == ()


def test_partitioned_pool_defers_what_unified_admits() -> None:
    # two requests of 30 KV pages on one rank-8 adapter (28 pages), pool of 100 pages:
    # unified holds both at once (88); a partitioned pool with 50 KV pages holds one.
    def scenario():
        return [req(0, 0.0, 0, 16, 15), req(1, 0.0, 0, 16, 15)]
    _, unified = _run(scenario(), ranks=(8,), pool_pages=100)
    _, parted = _run(scenario(), ranks=(8,), pool_pages=100, pool="partitioned",
                     adapter_fraction=0.5)
    assert unified.plans[0].shape.prefill_requests == 2
    assert parted.plans[0].shape.prefill_requests == 1
    assert max(p.kv_pages for p in parted.plans) <= 50


def test_partitioned_pool_rejects_kv_beyond_its_region() -> None:
    big = req(0, 0.0, 0, 40, 21)  # 60 KV pages
    make_scheduler(ranks=(8,), pool_pages=100, pool="partitioned",
                   adapter_fraction=0.5).add_request(big, 0.0)
    assert big.state is RequestState.REJECTED and big.reason == "exceeds-pool"
    ok = req(0, 0.0, 0, 40, 21)
    _run([ok], ranks=(8,), pool_pages=100)
    assert ok.state is RequestState.FINISHED


def test_host_tier_reads_from_disk_only_what_it_cannot_hold() -> None:
    # rank-8 adapter weights: 1792 elements x 2 layers x 2 bytes = 7168 bytes
    def scenario():
        return [req(i, float(2 * i), a, 4, 1) for i, a in enumerate([0, 1, 0, 1])]
    # the pool holds one adapter at a time, so every request loads into the pool
    common = dict(ranks=(8, 8), pool_pages=40, max_batch_size=1)
    _, small = _run(scenario(), host_cache_bytes=7168, **common)
    _, large = _run(scenario(), host_cache_bytes=2 * 7168, **common)
    _, unbounded = _run(scenario(), **common)
    from_disk = lambda out: [ld.from_disk for p in out.plans for ld in p.loads]  # noqa: E731
    assert from_disk(small) == [True, True, True, True]
    assert from_disk(large) == [True, True, False, False]
    assert from_disk(unbounded) == [False, False, False, False]
