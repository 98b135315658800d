"""Scheduler lifecycle by hand: timestamps, shapes, rejection, early stop, incremental KV with
preemption, and the jump over quiet decode steps."""
from __future__ import annotations

import pytest

from control_cases import check_end, check_plan, drive, make_scheduler, req
from manylora.engine.request import RequestState
from manylora.engine.scheduler import SchedulerStateError


def test_one_request_lifecycle_and_shapes() -> None:
    sched = make_scheduler(ranks=(8,))
    r = req(0, 0.0, 0, 5, 3)
    sched.add_request(r, 0.0)
    p0 = sched.schedule(0.0)
    check_plan(sched, p0)
    assert p0.prefill == (r,) and p0.decode == ()
    assert [(ld.adapter_id, ld.blocking, ld.from_disk) for ld in p0.loads] == [(0, True, False)]
    assert len(p0.loads[0].pages) == 28
    assert p0.shape.prefill_tokens == 5 and p0.shape.prefill_sq_tokens == 25
    assert p0.shape.lora_token_ranks == 5 * 8 and p0.shape.sum_ranks == 8
    assert p0.shape.adapter_loads == 1
    assert len(r.kv_pages) == 5 + 3 - 1  # lookahead: the whole output at admission
    assert r.admitted_s == 0.0 and r.state is RequestState.RUNNING
    sched.complete(p0, 1.0)
    assert r.first_token_s == 1.0
    p1 = sched.schedule(1.0)
    assert p1.decode == (r,) and p1.prefill == () and p1.loads == ()
    assert p1.shape.decode_context_tokens == 6 and p1.shape.lora_token_ranks == 8
    sched.complete(p1, 2.0)
    p2 = sched.schedule(2.0)
    assert p2.shape.decode_context_tokens == 7
    sched.complete(p2, 3.0)
    assert r.state is RequestState.FINISHED and r.finish_s == 3.0 and r.output_tokens == 3
    assert sched.idle and sched.pool.kv_pages == 0
    assert sched.residency.is_idle(0)  # stays resident until evicted
    assert not sched.schedule(3.0).runs
    sched.unload_adapters()
    assert sched.pool.free_pages == sched.pool.num_pages


def test_single_token_output_finishes_in_its_prefill() -> None:
    sched = make_scheduler()
    r = req(0, 0.0, -1, 4, 1)
    sched.add_request(r, 0.0)
    plan = sched.schedule(0.0)
    assert plan.loads == () and plan.shape.sum_ranks == 0
    sched.complete(plan, 0.5)
    assert r.state is RequestState.FINISHED
    assert r.first_token_s == r.finish_s == 0.5 and r.output_tokens == 1
    assert sched.pool.free_pages == sched.pool.num_pages


@pytest.mark.parametrize("request_args, options, reason", [
    ((0, 0.0, 7, 4, 4), {}, "unknown-adapter"),
    ((0, 0.0, 0, 40, 4), {"token_budget": 32}, "prompt-exceeds-token-budget"),
    ((0, 0.0, 0, 300, 80), {}, "exceeds-pool"),        # 379 KV + 28 adapter pages > 400
    ((0, 0.0, -1, 300, 80), {"pool": "partitioned"}, "exceeds-pool"),  # KV region is 300
    ((0, 0.0, 0, 4, 4), {"host_cache_bytes": 1000}, "adapter-exceeds-host-cache"),
])
def test_requests_that_can_never_run_are_rejected(request_args, options, reason) -> None:
    sched = make_scheduler(ranks=(8,), **options)
    r = req(*request_args)
    sched.add_request(r, 0.0)
    assert r.state is RequestState.REJECTED and r.reason == reason
    plan = sched.schedule(0.0)
    assert plan.rejected == (r,) and not plan.runs
    assert sched.schedule(0.0).rejected == ()  # reported once


def test_fits_exactly_is_not_rejected() -> None:
    sched = make_scheduler(ranks=(8,), pool_pages=400)
    r = req(0, 0.0, 0, 300, 73)  # 372 KV + 28 adapter pages == 400
    sched.add_request(r, 0.0)
    out = drive(sched, [])
    assert r.state is RequestState.FINISHED
    check_end(sched, [r], out)


def test_end_of_sequence_stops_early_and_frees_pages() -> None:
    sched = make_scheduler(ranks=(8, 8))
    rs = [req(0, 0.0, 0, 6, 20), req(1, 0.0, 1, 6, 20)]
    out = drive(sched, rs, stop=lambda p: [0] if p.step == 4 else [])
    assert rs[0].state is RequestState.FINISHED and rs[0].output_tokens == 5
    assert rs[0].finish_s == 5.0
    assert rs[1].output_tokens == 20
    check_end(sched, rs, out)


def test_incremental_kv_grows_per_page_and_preempts_newest() -> None:
    # 2 tokens per page; 40 pages; base-model requests: each needs (16 + 40 - 1) / 2 = 28
    # pages in the end, so the two cannot both finish without a preemption.
    sched = make_scheduler(pool_pages=40, tokens_per_page=2, kv_reservation="incremental")
    rs = [req(0, 0.0, -1, 16, 40), req(1, 0.0, -1, 16, 40)]
    out = drive(sched, rs)
    check_end(sched, rs, out)
    assert [r.state for r in rs] == [RequestState.FINISHED] * 2
    assert rs[0].preemptions == 0 and rs[1].preemptions >= 1
    assert rs[1].output_tokens == 40
    victims = [p for p in out.plans if p.preempted]
    assert victims and all(p.preempted == (rs[1],) for p in victims)
    # the preempted request recomputes prompt + what it had generated, in one prefill
    resumed = [p for p in out.plans if rs[1] in p.prefill][1]
    assert resumed.shape.prefill_tokens == rs[1].prompt_len + rs[1].base_tokens
    assert rs[1].base_tokens > 0
    # growth happens at page boundaries only: page count of request 0 is ceil(context / 2)
    first = out.plans[0]
    assert len(rs[0].kv_pages) == 0 and first.kv_pages == 16  # 8 pages each at admission


def test_lookahead_never_preempts_under_pressure() -> None:
    sched = make_scheduler(pool_pages=60)
    rs = [req(i, 0.0, -1, 10, 30) for i in range(6)]  # 39 pages each: one at a time
    out = drive(sched, rs)
    check_end(sched, rs, out)
    assert all(p.preempted == () for p in out.plans)
    assert max(len(p.prefill) + len(p.decode) for p in out.plans) == 1


def test_oversized_resumed_prefill_runs_alone() -> None:
    # budget 24: prompts of 16 fit, but a preempted request resumes with 16 + generated > 24
    sched = make_scheduler(pool_pages=30, token_budget=24, kv_reservation="incremental")
    rs = [req(0, 0.0, -1, 16, 12), req(1, 0.0, -1, 8, 12)]
    out = drive(sched, rs)
    check_end(sched, rs, out)
    assert all(r.state is RequestState.FINISHED for r in rs)
    oversized = [p for p in out.plans if p.shape.prefill_tokens > 24]
    assert all(p.shape.prefill_requests == 1 for p in oversized)


def _steady_scheduler():
    sched = make_scheduler(ranks=(8, 16), pool_pages=2000)
    rs = [req(i, 0.0, i % 2, 5 + i, 30 + 7 * i) for i in range(6)]
    return sched, rs


def test_skip_steps_matches_stepping() -> None:
    stepped, a = _steady_scheduler()
    jumped, b = _steady_scheduler()
    shapes_a, shapes_b = [], []
    for sched, rs, shapes, jump in ((stepped, a, shapes_a, False), (jumped, b, shapes_b, True)):
        for r in rs:
            sched.add_request(r, 0.0)
        now = 0.0
        while not sched.idle:
            plan = sched.schedule(now)
            quiet = sched.quiet_steps(plan) if jump else 0
            if quiet > 1:
                for k in range(quiet):  # the shapes a jump must reproduce, by arithmetic
                    shapes.append(plan.shape._replace(
                        decode_context_tokens=plan.shape.decode_context_tokens
                        + k * plan.shape.decode_requests))
                now += quiet
                sched.skip_steps(plan, quiet)
            else:
                shapes.append(plan.shape)
                now += 1.0
                sched.complete(plan, now)
    assert shapes_a == shapes_b
    assert [(r.first_token_s, r.finish_s, r.output_tokens) for r in a] == \
        [(r.first_token_s, r.finish_s, r.output_tokens) for r in b]
    assert stepped.step == jumped.step


def test_quiet_steps_is_zero_while_anything_can_change() -> None:
    sched = make_scheduler(ranks=(8,), pool_pages=2000)
    sched.add_request(req(0, 0.0, 0, 5, 10), 0.0)
    plan = sched.schedule(0.0)
    assert sched.quiet_steps(plan) == 0          # a prefill step
    sched.complete(plan, 1.0)
    plan = sched.schedule(1.0)
    assert sched.quiet_steps(plan) == 8          # steps 1..8; step 9 produces the last token
    sched.add_request(req(1, 1.0, 0, 5, 10), 1.0)  # an arrival after schedule: not quiet
    assert sched.quiet_steps(plan) == 0
    with pytest.raises(SchedulerStateError):
        sched.skip_steps(plan, 9)   # would skip over the finishing step
    sched.skip_steps(plan, 8)       # the arrival belongs after the jump: allowed
    plan = sched.schedule(9.0)
    assert [r.request_id for r in plan.prefill] == [1] and plan.step == 9


def test_completing_a_stale_plan_is_an_error() -> None:
    sched = make_scheduler()
    sched.add_request(req(0, 0.0, -1, 4, 4), 0.0)
    plan = sched.schedule(0.0)
    sched.complete(plan, 1.0)
    with pytest.raises(SchedulerStateError):
        sched.complete(plan, 2.0)
