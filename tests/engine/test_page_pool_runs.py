"""Page pool allocation strategy: adapters get one run of consecutive page ids when the free
stack's top or bottom holds one, evicted adapter pages go under the KV pages, and no sequence
of allocations and frees breaks the accounting (the owner map, the free stacks and the counters
always agree, and no page is handed out twice)."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from manylora.engine.page_pool import FREE, POOL_KINDS, PartitionedPool, UnifiedPool


def _is_run(pages: np.ndarray) -> bool:
    return len(pages) < 2 or bool((np.diff(pages) == 1).all())


def _consecutive(ids: np.ndarray) -> bool:
    """Consecutive in either direction."""
    return len(ids) < 2 or bool((np.diff(ids) == 1).all() or (np.diff(ids) == -1).all())


def test_a_fresh_pool_gives_adapters_and_kv_ascending_runs() -> None:
    pool = UnifiedPool(100)
    kv = pool.alloc_kv(10, request_id=0)
    adapter = pool.alloc_adapter(30, adapter_id=4)
    assert kv.tolist() == list(range(10)) and adapter.tolist() == list(range(10, 40))


def test_an_evicted_adapter_run_is_reused_whole_and_kv_takes_it_last() -> None:
    pool = UnifiedPool(100)
    first = pool.alloc_adapter(30, adapter_id=1)
    kv = pool.alloc_kv(20, request_id=0)
    pool.free_kv(kv, 0)
    pool.free_adapter(first, 1)
    # the top holds the KV run just freed (20 pages, too short), the bottom the adapter's 30
    again = pool.alloc_adapter(25, adapter_id=2)
    assert again.tolist() == list(range(0, 25))
    # KV goes on from the top: the KV pages freed last, then never-used ids, not 25..29
    assert set(pool.alloc_kv(30, request_id=1).tolist()) == set(range(30, 60))
    pool.check()


def test_kv_reaches_evicted_adapter_pages_only_when_nothing_else_is_free() -> None:
    pool = UnifiedPool(40)
    adapter = pool.alloc_adapter(10, adapter_id=0)    # pages 0..9
    pool.free_adapter(adapter, 0)
    taken = pool.alloc_kv(30, request_id=0)
    assert set(taken.tolist()) == set(range(10, 40))
    assert set(pool.alloc_kv(10, request_id=1).tolist()) == set(range(10))
    pool.check()


def test_scattered_pages_when_no_run_is_at_either_end() -> None:
    pool = UnifiedPool(12)
    kv = [pool.alloc_kv(1, request_id=i) for i in range(12)]
    for i in (0, 2, 4, 6, 8, 10):  # every other page free: no run of two anywhere
        pool.free_kv(kv[i], i)
    pages = pool.alloc_adapter(3, adapter_id=0)
    assert len(set(pages.tolist())) == 3 and not _is_run(pages)
    assert (pool.owner[pages] == -2).all()
    pool.check()


def test_partitioned_pool_runs_stay_in_the_adapter_region() -> None:
    pool = PartitionedPool.build(100, adapter_fraction=0.4)
    a = pool.alloc_adapter(15, adapter_id=0)
    b = pool.alloc_adapter(15, adapter_id=1)
    assert _is_run(a) and _is_run(b) and min(a.min(), b.min()) >= 60
    pool.free_adapter(a, 0)
    assert pool.alloc_adapter(15, adapter_id=2).tolist() == a.tolist()
    pool.check()


ops = st.lists(st.tuples(st.sampled_from(["kv", "adapter", "free_kv", "free_adapter"]),
                         st.integers(1, 40), st.integers(0, 1000)), max_size=80)


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(sorted(POOL_KINDS)), num_pages=st.integers(2, 160), ops=ops)
def test_any_sequence_of_allocations_and_frees_keeps_the_accounting(kind, num_pages, ops):
    pool = POOL_KINDS[kind].build(num_pages, 0.5)
    kv: dict[int, np.ndarray] = {}
    adapters: dict[int, np.ndarray] = {}
    next_id = 0
    for op, n, pick in ops:
        if op == "kv" and n <= pool.kv_free():
            kv[next_id] = pool.alloc_kv(n, next_id)
            next_id += 1
        elif op == "adapter" and n <= pool.adapter_free():
            free = pool._adapter.ids()  # bottom first
            ends_hold_a_run = _consecutive(free[-n:]) or _consecutive(free[:n])
            pages = pool.alloc_adapter(n, next_id)
            # a run is handed out whenever one sits at the top or the bottom of the stack
            assert _is_run(pages) or not ends_hold_a_run
            adapters[next_id] = pages
            next_id += 1
        elif op == "free_kv" and kv:
            rid = sorted(kv)[pick % len(kv)]
            pool.free_kv(kv.pop(rid), rid)
        elif op == "free_adapter" and adapters:
            aid = sorted(adapters)[pick % len(adapters)]
            pool.free_adapter(adapters.pop(aid), aid)
        pool.check()
        held = [p for pages in (*kv.values(), *adapters.values()) for p in pages.tolist()]
        assert len(held) == len(set(held)) == pool.kv_pages + pool.adapter_pages
    for rid, pages in kv.items():
        pool.free_kv(pages, rid)
    for aid, pages in adapters.items():
        pool.free_adapter(pages, aid)
    pool.check()
    assert pool.free_pages == num_pages and (pool.owner == FREE).all()
