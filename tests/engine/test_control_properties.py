"""Property tests: random workloads, tiny pools and every policy combination.

On every plan (control_cases.check_plan): no page has two owners, KV + adapter pages never
exceed the pool, owner map / free lists / counters agree, adapter reference counts match the
batch, every request in the batch has its adapter resident, batch limits and the step shape
are right. At the end (check_end): every request is in exactly one terminal state, reported
once; every page is free; every reference count is zero.
"""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_cases import check_end, drive, make_scheduler, req
from manylora.engine.page_pool import POOL_KINDS
from manylora.engine.policies_eviction import EVICTION_POLICIES
from manylora.engine.policies_queue import QUEUE_POLICIES
from manylora.engine.policies_reservation import KV_RESERVATIONS

# Adapter i has rank RANKS[i]: 28, 14 and 56 pages at one token per page.
RANKS = (8, 4, 16, 8, 4)

options = st.fixed_dictionaries({
    "queue": st.sampled_from(sorted(QUEUE_POLICIES)),
    "eviction": st.sampled_from(sorted(EVICTION_POLICIES)),
    "pool": st.sampled_from(sorted(POOL_KINDS)),
    "kv_reservation": st.sampled_from(sorted(KV_RESERVATIONS)),
    "prefetch": st.booleans(),
    "prefetch_window": st.integers(1, 4),
    "max_batch_adapters": st.integers(0, 3),
    "max_batch_size": st.integers(1, 6),
    "token_budget": st.integers(24, 120),
    "slo_ttft_s": st.sampled_from([2.0, 6.0, 30.0]),
    "abort_margin_s": st.sampled_from([0.0, 0.5]),
    "host_cache_bytes": st.sampled_from([None, 60_000, 200_000]),
    "pool_pages": st.integers(24, 260),
    "tokens_per_page": st.integers(1, 3),
})

workload = st.lists(
    st.tuples(st.floats(0.0, 12.0, allow_nan=False), st.integers(-1, len(RANKS) - 1),
              st.integers(1, 48), st.integers(1, 40)),
    min_size=1, max_size=24)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(options=options, rows=workload, step_time=st.sampled_from([0.25, 1.0]),
       load_time=st.sampled_from([0.1, 2.0]), eos=st.integers(0, 7))
def test_invariants_hold_for_any_workload_and_policy(options, rows, step_time, load_time,
                                                     eos) -> None:
    sched = make_scheduler(ranks=RANKS, **options)
    requests = [req(i, t, a, p, o) for i, (t, a, p, o) in enumerate(sorted(rows))]

    def stop(plan):
        # Engine-style early EOS for some requests: id % 8 == eos stops at its 3rd token.
        return [r.request_id for r in plan.decode
                if r.request_id % 8 == eos and r.tokens_after(plan.step) == 3]

    out = drive(sched, requests, step_time=step_time, load_time=load_time, stop=stop)
    check_end(sched, requests, out)
