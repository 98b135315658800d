"""How long generating, writing and reading a big trace takes (target: generate + write
1,000,000 requests over 5,000 adapters in under 10 s).

Run: ``python benchmarks/trace_generation.py [--requests N] [--adapters N] [--repeats K]``. Prints each
phase's median over the repeats (and all the runs), so a noisy shared machine shows as spread.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from manylora.traces import (GammaArrivals, SLoRAPopularity, TraceConfig, generate_trace,
                             read_trace, write_trace)


def one_run(config: TraceConfig, folder: Path) -> dict[str, float]:
    start = time.perf_counter()
    trace = generate_trace(config)
    generated = time.perf_counter()
    write_trace(trace, folder)
    written = time.perf_counter()
    back = read_trace(folder)
    read = time.perf_counter()
    if back.num_requests != trace.num_requests:
        raise RuntimeError("read back a different number of requests")
    return {"generate_s": generated - start, "write_s": written - generated,
            "generate+write_s": written - start, "read+validate_s": read - written}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--adapters", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = TraceConfig(num_adapters=args.adapters, arrivals=GammaArrivals(rate=100.0, cv=2.0),
                         popularity=SLoRAPopularity(0.3), num_requests=args.requests,
                         duration_s=None, seed=0)
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for k in range(args.repeats):
            folder = Path(scratch) / f"trace{k}"
            runs.append(one_run(config, folder))
            size_mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
            shutil.rmtree(folder)
    print(f"{args.requests:,} requests over {args.adapters:,} adapters, {size_mb:.1f} MB on "
          f"disk, median of {args.repeats}:")
    for phase in runs[0]:
        values = [run[phase] for run in runs]
        print(f"  {phase:<17} {statistics.median(values):6.2f} s   "
              f"(runs: {', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
