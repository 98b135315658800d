"""Each queue policy's defining behaviour on a hand-built scenario (one token per step of 1 s;
the batch holds one request unless said otherwise)."""
from __future__ import annotations

from control_cases import check_end, drive, make_scheduler, req
from manylora.engine.request import RequestState


def _admission_order(out) -> list[int]:
    return [r.request_id for p in out.plans for r in p.prefill]


def _run(queue: str, requests, **options):
    sched = make_scheduler(ranks=(8, 8, 8), queue=queue, **options)
    out = drive(sched, requests)
    check_end(sched, requests, out)
    return out


def _busy_then_three():
    # request 0 holds the only batch slot for 5 steps; 1, 2, 3 queue up behind it
    return [req(0, 0.0, -1, 4, 5), req(1, 1.0, -1, 4, 1), req(2, 2.0, -1, 4, 1),
            req(3, 3.0, -1, 4, 1)]


def test_fcfs_serves_oldest_first() -> None:
    out = _run("fcfs", _busy_then_three(), max_batch_size=1)
    assert _admission_order(out) == [0, 1, 2, 3]


def test_lifo_serves_newest_first() -> None:
    out = _run("lifo", _busy_then_three(), max_batch_size=1)
    assert _admission_order(out) == [0, 3, 2, 1]


def test_early_abort_drops_the_request_that_can_no_longer_make_its_slo() -> None:
    # SLO 3 s, margin 0.5 s: request 1 (arrival 1.0) is hopeless from 3.5 s on, while the
    # server is busy until 5 s; request 3 (arrival 3.0) can still start by 5.5 s.
    requests = [req(0, 0.0, -1, 4, 5), req(1, 1.0, -1, 4, 1), req(3, 3.0, -1, 4, 1)]
    out = _run("early-abort", requests, max_batch_size=1, slo_ttft_s=3.0, abort_margin_s=0.5)
    assert requests[1].state is RequestState.ABORTED
    assert requests[1].reason == "ttft-slo-unreachable"
    assert requests[1].admitted_s is None
    assert requests[2].state is RequestState.FINISHED and requests[2].admitted_s == 5.0
    dropped_at = [t for p, t in zip(out.plans, out.times) if p.aborted]
    assert dropped_at == [4.0]  # the first step boundary at or after 3.5 s
    # without early abort the hopeless request is served (late) and delays the viable one
    fifo = [req(0, 0.0, -1, 4, 5), req(1, 1.0, -1, 4, 1), req(3, 3.0, -1, 4, 1)]
    _run("fcfs", fifo, max_batch_size=1)
    assert fifo[1].state is RequestState.FINISHED and fifo[2].admitted_s == 6.0


def test_early_abort_serves_newest_first_under_overload_and_oldest_otherwise() -> None:
    # Three arrivals per second against one 1-s service per second: S-LoRA's estimate of
    # arrivals between batches (>= 2) stays above its batch-size estimate (1).
    heavy = [req(i, i / 3, -1, 4, 1) for i in range(15)]
    out = _run("early-abort", heavy, max_batch_size=1, slo_ttft_s=1000.0)
    during = [(p, t) for p, t in zip(out.plans, out.times) if t <= heavy[-1].arrival_s]
    assert len(during) == 5
    for plan, now in during:
        waiting = [r.request_id for r in heavy
                   if r.arrival_s <= now and (r.admitted_s is None or r.admitted_s >= now)]
        assert plan.prefill[0].request_id == max(waiting)
    # once arrivals stop, the estimate decays and the backlog is served oldest first
    after = [p.prefill[0].request_id for p, t in zip(out.plans, out.times)
             if t > heavy[-1].arrival_s + 2]
    assert after == sorted(after) and len(after) >= 5
    # One arrival every 2 s: no overload, arrival order.
    light = [req(i, 2.0 * i, -1, 4, 1) for i in range(4)] + [req(9, 2.1, -1, 4, 1)]
    out = _run("early-abort", light, max_batch_size=1, slo_ttft_s=1000.0)
    assert _admission_order(out) == [0, 1, 9, 2, 3]


def test_edf_demotes_hopeless_requests_behind_on_time_ones() -> None:
    # SLO 2 s, no margin: request 1 (deadline 3) is past it when the slot frees at 5 s;
    # request 2 (arrival 4, deadline 6) is on time and goes first, then 1 is still served.
    requests = [req(0, 0.0, -1, 4, 5), req(1, 1.0, -1, 4, 1), req(2, 4.0, -1, 4, 1)]
    out = _run("edf", requests, max_batch_size=1, slo_ttft_s=2.0, abort_margin_s=0.0)
    assert _admission_order(out) == [0, 2, 1]
    assert all(r.state is RequestState.FINISHED for r in requests)
    fifo = [req(0, 0.0, -1, 4, 5), req(1, 1.0, -1, 4, 1), req(2, 4.0, -1, 4, 1)]
    assert _admission_order(_run("fcfs", fifo, max_batch_size=1)) == [0, 1, 2]


def test_edf_orders_on_time_requests_by_deadline() -> None:
    # all on time (SLO 100 s): deadlines follow arrivals, so edf agrees with fcfs here
    requests = _busy_then_three()
    out = _run("edf", requests, max_batch_size=1, slo_ttft_s=100.0)
    assert _admission_order(out) == [0, 1, 2, 3]


def test_adapter_affinity_prefers_adapters_already_running() -> None:
    # request 0 runs on adapter 0 in one of two slots; 1 (adapter 1) arrived before 2
    # (adapter 0): affinity fills the free slot with 2, fcfs with 1.
    def scenario():
        return [req(0, 0.0, 0, 4, 6), req(5, 0.0, 2, 4, 2), req(1, 0.5, 1, 4, 1),
                req(2, 0.6, 0, 4, 1)]
    affinity = _admission_order(_run("adapter-affinity", scenario(), max_batch_size=2))
    fcfs = _admission_order(_run("fcfs", scenario(), max_batch_size=2))
    assert affinity.index(2) < affinity.index(1)
    assert fcfs.index(1) < fcfs.index(2)


def test_adapter_affinity_prefers_resident_adapters_over_loads() -> None:
    # adapter 1 is resident (idle) after request 0; 3 (adapter 2) arrived before 4 (adapter 1)
    requests = [req(0, 0.0, 1, 4, 1), req(1, 1.0, 0, 4, 4), req(3, 1.5, 2, 4, 1),
                req(4, 1.6, 1, 4, 1)]
    order = _admission_order(_run("adapter-affinity", requests, max_batch_size=1))
    assert order == [0, 1, 4, 3]
