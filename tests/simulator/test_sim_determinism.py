"""Same inputs give byte-identical run folders; jumping over quiet decode steps gives the same
requests.csv and steps.csv as stepping every step; every run accounts for every request once
and ends with every page free (``simulate`` checks the pool), under every policy family."""
from __future__ import annotations

import pytest

from sim_cases import run_sim, small_trace, write_sim
from manylora.engine.request import TERMINAL_STATES

CASES = {
    "fcfs": ({}, {}),
    "early-abort": ({"queue": "early-abort", "slo_ttft_s": 0.3, "abort_margin_s": 0.01,
                     "max_batch_size": 2}, {}),
    "edf": ({"queue": "edf", "slo_ttft_s": 0.3, "max_batch_size": 2}, {}),
    "lifo+cap": ({"queue": "lifo", "max_batch_adapters": 2, "max_batch_size": 6}, {}),
    "affinity+lfu+prefetch": ({"queue": "adapter-affinity", "eviction": "lfu",
                               "prefetch": True, "prefetch_window": 4}, {"pool_pages": 700}),
    "host-tier": ({"host_cache_bytes": 200_000, "prefetch": True}, {"pool_pages": 700}),
    "partitioned": ({"pool": "partitioned", "adapter_fraction": 0.3}, {"pool_pages": 900}),
    "incremental": ({"kv_reservation": "incremental", "tokens_per_page": 4},
                    {"pool_pages": 120}),
    "3 replicas least-outstanding": ({}, {"replicas": 3, "router": "least-outstanding"}),
    "2 replicas adapter-affinity": ({"prefetch": True}, {"replicas": 2,
                                                       "router": "adapter-affinity",
                                                       "pool_pages": 800}),
    "2 replicas round-robin": ({"max_batch_size": 4}, {"replicas": 2}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_jumps_equal_stepping_and_runs_repeat_byte_for_byte(name, tmp_path) -> None:
    options, kwargs = CASES[name]
    trace = small_trace(n=160, seed=len(name))
    jumped = write_sim(trace, tmp_path / "jumped", options, **kwargs)
    again = write_sim(trace, tmp_path / "again", options, **kwargs)
    stepped = write_sim(trace, tmp_path / "stepped", options, jumps=False, **kwargs)
    for file in ("requests.csv", "steps.csv", "meta.json"):
        assert (jumped / file).read_bytes() == (again / file).read_bytes(), file
    for file in ("requests.csv", "steps.csv"):
        assert (jumped / file).read_bytes() == (stepped / file).read_bytes(), file


@pytest.mark.parametrize("name", list(CASES))
def test_every_request_is_accounted_for_once(name) -> None:
    options, kwargs = CASES[name]
    trace = small_trace(n=160, seed=len(name))
    result, meta = run_sim(trace, options, **kwargs)
    ids = [r.request_id for r in result.requests]
    assert ids == trace.column("request_id").tolist()
    assert all(r.state in TERMINAL_STATES for r in result.requests)
    statuses = {r.state.value for r in result.requests}
    assert "finished" in statuses
    assert meta["simulator"]["steps"] == len(result.steps)
    replicas = kwargs.get("replicas", 1)
    assert {r.replica for r in result.requests} == set(range(replicas))


def test_cases_exercise_what_they_claim() -> None:
    """Guard against a vacuous equivalence test: jumps happen, and so do the events."""
    trace = small_trace(n=160, seed=len("fcfs"))
    result, _ = run_sim(trace)
    assert result.stats["jumped_steps"] > result.stats["steps"] // 2
    aborted, _ = run_sim(small_trace(n=160, seed=len("early-abort")),
                         CASES["early-abort"][0])
    assert any(r.state.value == "aborted" for r in aborted.requests)
    inc, _ = run_sim(small_trace(n=160, seed=len("incremental")), CASES["incremental"][0],
                     **CASES["incremental"][1])
    assert any(r.preemptions for r in inc.requests)
    host, _ = run_sim(small_trace(n=160, seed=len("host-tier")), CASES["host-tier"][0],
                      **CASES["host-tier"][1])
    ints, _ = host.steps.columns()
    assert ints[:, 13].sum() > 0  # blocking loads happened (adapter_loads column)
