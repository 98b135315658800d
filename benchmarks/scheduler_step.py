"""Scheduler overhead: one ``schedule`` + ``complete`` with 1,000 waiting and 256 running
requests over 2,000 adapters (the simulator's speed rests on this).

    python benchmarks/scheduler_step.py [--steps 20000] [--repeats 3]

Setup: Llama-2-7B pool layout (one token per page, 512 KiB pages), 2,000 adapters of ranks
8/16/32/64 on q,k,v,o with Zipf(1.1)-like popularity, prompts and outputs uniform in
[8, 512] (S-LoRA's synthetic lengths), a pool of 200,000 pages (KV of the running batch plus
a few hundred resident adapters, so loads and LRU evictions keep happening), max batch 256.
Before each timed step the queue is topped up to 1,000 waiting requests (untimed: that is
the arrival path). Each step is timed on its own with ``perf_counter_ns``; the script prints
the median, mean and 90th percentile per policy set, the share of steps that admitted
requests and the mean batch size.
The target is a median under 200 us. The machine is shared: it repeats and quotes medians.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from manylora.engine.catalog import AdapterCatalog, AdapterSpec
from manylora.engine.model_shape import LLAMA2_7B, PoolLayout
from manylora.engine.policy_options import policies_from_options
from manylora.engine.request import Request
from manylora.engine.scheduler import build_scheduler

NUM_ADAPTERS = 2000
WAITING = 1000
RUNNING = 256
POOL_PAGES = 200_000

POLICY_SETS = {
    "fcfs (default)": {},
    "early-abort": {"queue": "early-abort", "slo_ttft_s": 1e9},
    "edf": {"queue": "edf", "slo_ttft_s": 1e9},
    "adapter-affinity": {"queue": "adapter-affinity"},
    "cap 32 adapters": {"max_batch_adapters": 32},
    "lfu + prefetch": {"eviction": "lfu", "prefetch": True},
    "incremental, 1 tok/page": {"kv_reservation": "incremental"},
    "incremental, 16/page": {"kv_reservation": "incremental", "tokens_per_page": 16},
}


def _catalog(layout: PoolLayout) -> AdapterCatalog:
    ranks = (8, 16, 32, 64)
    return AdapterCatalog(layout, [AdapterSpec(i, {t: ranks[i % 4] for t in "qkvo"},
                                               2.0 * ranks[i % 4])
                                   for i in range(NUM_ADAPTERS)])


def run(options: dict, steps: int, seed: int) -> tuple[list[int], int, float]:
    tokens_per_page = int(options.get("tokens_per_page", 1))
    layout = PoolLayout(LLAMA2_7B, tokens_per_page)
    config = policies_from_options({"max_batch_size": RUNNING, "token_budget": 1 << 20,
                                    "pool_pages": POOL_PAGES // tokens_per_page, **options})
    sched = build_scheduler(config, layout, _catalog(layout))
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, NUM_ADAPTERS + 1) ** 1.1
    weights /= weights.sum()
    next_id = 0
    now = 0.0

    def top_up() -> None:
        nonlocal next_id
        missing = WAITING - sched.num_waiting
        if missing <= 0:
            return
        adapters = rng.choice(NUM_ADAPTERS, size=missing, p=weights)
        lengths = rng.integers(8, 513, size=(missing, 2))
        for a, (p, o) in zip(adapters.tolist(), lengths.tolist()):
            sched.add_request(Request(next_id, now, a, p, o), now)
            next_id += 1

    warmup = 3000
    times: list[int] = []
    changed = 0
    batch = 0
    for i in range(warmup + steps):
        top_up()
        t0 = time.perf_counter_ns()
        plan = sched.schedule(now)
        sched.complete(plan, now + 0.02)
        elapsed = time.perf_counter_ns() - t0
        now += 0.02
        if i >= warmup:
            times.append(elapsed)
            changed += bool(plan.prefill)
            batch += len(plan.decode) + len(plan.prefill)
    return times, changed, batch / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{'policies':<24} {'median us':>10} {'mean us':>9} {'p90 us':>8} "
          f"{'admitting steps':>16} {'mean batch':>11}")
    for name, options in POLICY_SETS.items():
        medians, means, p90s, changes, batches = [], [], [], [], []
        for repeat in range(args.repeats):
            times, changed, batch = run(options, args.steps, seed=repeat)
            batches.append(batch)
            us = np.array(times) / 1e3
            medians.append(float(np.median(us)))
            means.append(float(us.mean()))
            p90s.append(float(np.percentile(us, 90)))
            changes.append(changed / len(times))
        print(f"{name:<24} {statistics.median(medians):>10.1f} {statistics.median(means):>9.1f}"
              f" {statistics.median(p90s):>8.1f} {statistics.median(changes):>15.0%}"
              f" {statistics.median(batches):>11.1f}")


if __name__ == "__main__":
    main()
