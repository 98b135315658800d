"""Page pool accounting, adapter residency and the host tier, unit by unit."""
from __future__ import annotations

import numpy as np
import pytest

from control_cases import tiny_catalog, tiny_layout
from manylora.engine.adapter_residency import AdapterResidency, AdapterState
from manylora.engine.host_cache import HostCache
from manylora.engine.page_pool import (FREE, PartitionedPool, PoolAccountingError, UnifiedPool,
                                       adapter_owner)
from manylora.engine.policies_eviction import LFUEviction, LRUEviction


def test_unified_pool_hands_out_owned_ids_and_takes_them_back() -> None:
    pool = UnifiedPool(10)
    a = pool.alloc_kv(4, request_id=7)
    b = pool.alloc_adapter(3, adapter_id=2)
    assert a.tolist() == [0, 1, 2, 3] and b.tolist() == [4, 5, 6]
    assert pool.owner[a].tolist() == [7] * 4
    assert pool.owner[b].tolist() == [adapter_owner(2)] * 3
    assert (pool.kv_pages, pool.adapter_pages, pool.free_pages) == (4, 3, 3)
    pool.check()
    pool.free_kv(a, 7)
    assert (pool.owner[a] == FREE).all() and pool.free_pages == 7
    again = pool.alloc_kv(5, request_id=8)
    assert len(set(again.tolist()) & set(b.tolist())) == 0
    pool.check()
    with pytest.raises(PoolAccountingError):
        pool.alloc_kv(3, request_id=9)  # 2 free
    with pytest.raises(PoolAccountingError):
        pool.free_kv(b, 2)  # adapter pages freed as a request's KV


def test_unified_fit_and_shortfall_count_evictable_pages() -> None:
    pool = UnifiedPool(10)
    pool.alloc_adapter(6, adapter_id=0)
    assert pool.fits(4, 0, evictable=0) and not pool.fits(5, 0, evictable=0)
    assert pool.fits(5, 3, evictable=6)
    assert pool.shortfall(5, 3) == 4
    assert pool.fits_alone(7, 3) and not pool.fits_alone(8, 3)


def test_partitioned_pool_keeps_regions_apart() -> None:
    pool = PartitionedPool.build(10, adapter_fraction=0.3)
    assert (pool.kv_capacity, pool.adapter_capacity) == (7, 3)
    kv = pool.alloc_kv(7, request_id=1)
    ad = pool.alloc_adapter(3, adapter_id=0)
    assert kv.max() < 7 <= ad.min()
    assert not pool.fits(1, 0, evictable=3)  # evicting adapters frees no KV pages
    assert pool.fits(0, 3, evictable=3) and pool.shortfall(0, 3) == 3
    assert not pool.fits_alone(8, 0) and not pool.fits_alone(1, 4)
    pool.check()
    with pytest.raises(ValueError, match="kv_pages"):
        PartitionedPool(10, 10)


def _residency(eviction, pool_pages=100, host=None):
    layout = tiny_layout()
    catalog = tiny_catalog(layout, (8, 8, 8, 4))
    pool = UnifiedPool(pool_pages)
    return AdapterResidency(catalog, pool, eviction, HostCache(host, catalog.num_bytes))


def test_residency_states_references_and_eviction_order() -> None:
    res = _residency(LRUEviction())
    assert res.state(0) is AdapterState.HOST
    load = res.load(0, blocking=True)
    assert load.blocking and not load.from_disk and len(load.pages) == 28
    assert res.state(0) is AdapterState.RESIDENT and res.evictable_pages == 28
    res.acquire(0)
    assert res.evictable_pages == 0
    res.load(1, blocking=False)
    assert res.state(1) is AdapterState.LOADING and res.evictable_pages == 0
    with pytest.raises(PoolAccountingError):
        res.evict(1)  # 0 is in use, 1 is loading: nothing may go
    res.loaded(1)
    res.release(0)  # 1 became idle before 0: LRU evicts 1 first
    assert res.evictable_pages == 56
    assert res.evict(20) == [1]
    assert res.state(1) is AdapterState.HOST
    with pytest.raises(PoolAccountingError):
        res.evict(1, protect={0})  # the only idle adapter is protected


def test_eviction_protects_what_it_is_told_to() -> None:
    res = _residency(LRUEviction())
    for aid in (0, 1, 2):
        res.load(aid, blocking=True)
    assert res.idle_pages([0, 2]) == 56
    assert res.evict(30, protect={0}) == [1, 2]
    assert res.state(0) is AdapterState.RESIDENT


def test_lfu_orders_by_use_count_then_recency() -> None:
    lfu = LFUEviction()
    for aid, uses in ((0, 3), (1, 1), (2, 1)):
        for _ in range(uses):
            lfu.used(aid)
    for aid in (2, 0, 1):
        lfu.idle(aid)
    lfu.busy(2)
    lfu.idle(2)  # 2 is now the most recently idle of the two single-use adapters
    assert [lfu.pop_victim(), lfu.pop_victim(), lfu.pop_victim()] == [1, 2, 0]
    assert lfu.pop_victim() is None and len(lfu) == 0


def test_host_cache_is_lru_within_its_budget_and_never_drops_pinned() -> None:
    cache = HostCache(300, {0: 100, 1: 100, 2: 100, 3: 250})
    assert [cache.fetch(a) for a in (0, 1, 2)] == [True, True, True]
    assert cache.fetch(0) is False  # hit: 0 becomes most recent, 1 is now the oldest
    cache.pin(1)
    assert cache.fetch(3) is None   # only 200 of unpinned bytes could go; 250 + 100 > 300
    cache.unpin(1)
    assert cache.fetch(3) is True and cache.used_bytes == 250
    assert 3 in cache and 0 not in cache and 1 not in cache
    assert not HostCache(200, {0: 250}).can_ever_hold(0)
    assert HostCache(None, {0: 10**12}).fetch(0) is False


def test_page_ids_stay_unique_under_random_churn() -> None:
    rng = np.random.default_rng(5)
    pool = UnifiedPool(64)
    held: list[tuple[str, int, np.ndarray]] = []
    for i in range(2000):
        if held and (rng.random() < 0.5 or pool.free_pages < 8):
            kind, owner, pages = held.pop(int(rng.integers(len(held))))
            (pool.free_kv if kind == "kv" else pool.free_adapter)(pages, owner)
        else:
            n = int(rng.integers(1, 8))
            if rng.random() < 0.5:
                held.append(("kv", i, pool.alloc_kv(n, i)))
            else:
                held.append(("ad", i, pool.alloc_adapter(n, i)))
        ids = np.concatenate([p for _, _, p in held]) if held else np.zeros(0, int)
        assert len(np.unique(ids)) == len(ids)
    pool.check()
