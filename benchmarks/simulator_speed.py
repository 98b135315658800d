"""Simulator speed: a 100,000-request trace over 2,000 adapters in under 60 s.

    python benchmarks/simulator_speed.py [--requests 100000] [--repeats 3] [--no-stepping]

Workload (S-LoRA's synthetic setting): Gamma arrivals with cv 2, 2,000 adapters of ranks
8/16/32/64 on q,k,v,o, S-LoRA popularity, prompt and output lengths uniform in [8, 512].
Model: Llama-2-7B on the A100-80GB roofline preset with a pool of 100,000 pages (one token
per page). The rate is set near the modelled capacity: a first run with every request
arriving within a second measures the saturated throughput, and the timed runs use 95% of it.

Each timed run is ``simulate`` (trace in memory, run folder written to a temporary folder
afterwards and timed separately). It prints wall seconds (median over repeats; the machine is
shared), steps, the share of steps covered by jumps, and the same run with every step
stepped, whose output must be byte-identical.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from manylora.engine.model_shape import LLAMA2_7B
from manylora.engine.policy_options import policies_from_options
from manylora.engine.run_folder import write_run_folder
from manylora.simulator.cost_model import roofline_cost_model
from manylora.simulator.simulation import SimulationConfig, simulate, simulation_meta
from manylora.traces import GammaArrivals, Trace, TraceConfig, generate_trace

NUM_ADAPTERS = 2000
POOL_PAGES = 100_000


def workload(rate: float, num_requests: int, seed: int = 1) -> Trace:
    return generate_trace(TraceConfig(num_adapters=NUM_ADAPTERS,
                                      arrivals=GammaArrivals(rate=rate, cv=2.0),
                                      num_requests=num_requests, duration_s=None, seed=seed))


def run(trace: Trace, jumps: bool, out: Path | None) -> tuple[float, float, dict]:
    cost = roofline_cost_model("a100-80gb", "llama-2-7b")
    control = policies_from_options({"pool_pages": POOL_PAGES})
    config = SimulationConfig(jumps=jumps)
    start = time.perf_counter()
    result = simulate(trace, cost, control, LLAMA2_7B, config=config)
    elapsed = time.perf_counter() - start
    write_s = 0.0
    if out is not None:
        start = time.perf_counter()
        write_run_folder(out, result.requests, result.steps,
                         simulation_meta(trace, cost, control, result, config))
        write_s = time.perf_counter() - start
    finished = [r for r in result.requests if r.finish_s is not None]
    span = max(r.finish_s for r in finished) - min(r.arrival_s for r in result.requests)
    return elapsed, write_s, {**result.stats, "throughput": len(finished) / span}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-stepping", action="store_true",
                        help="skip the comparison run without jumps")
    args = parser.parse_args()
    _, _, saturated = run(workload(1000.0, 10_000), True, None)
    capacity = saturated["throughput"]
    rate = 0.95 * capacity
    print(f"saturated throughput {capacity:.2f} req/s; timed runs at {rate:.2f} req/s")
    trace = workload(rate, args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        times, writes = [], []
        for k in range(args.repeats):
            elapsed, write_s, stats = run(trace, True, Path(tmp) / f"run{k}")
            times.append(elapsed)
            writes.append(write_s)
            print(f"  run {k}: simulate {elapsed:.1f} s, write run folder {write_s:.1f} s, "
                  f"{stats['steps']} steps ({stats['jumped_steps'] / stats['steps']:.0%} in "
                  f"jumps), {stats['throughput']:.2f} req/s served")
        print(f"{args.requests} requests over {NUM_ADAPTERS} adapters: median simulate "
              f"{statistics.median(times):.1f} s + write {statistics.median(writes):.1f} s "
              f"(target < 60 s)")
        if not args.no_stepping:
            elapsed, _, _ = run(trace, False, Path(tmp) / "stepped")
            same = all((Path(tmp) / "run0" / f).read_bytes()
                       == (Path(tmp) / "stepped" / f).read_bytes()
                       for f in ("requests.csv", "steps.csv"))
            print(f"without jumps: simulate {elapsed:.1f} s; output identical: {same}")


if __name__ == "__main__":
    main()
