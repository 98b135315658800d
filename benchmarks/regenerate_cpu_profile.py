"""Regenerate the shipped default profile, simulator/profiles/cpu-tiny.json.

The default cost model of `manylora simulate` is fitted from this profile: the tiny model that
`manylora model make-tiny` writes with its defaults (8 adapters, ranks 8..64), run by the engine
on this machine's CPU with the engine's defaults and one torch thread. Re-run it whenever the
engine's data plane changes speed (kernels, model, runner), on a machine as quiet as you can
get: step times are means of interleaved repeats, but a busy machine still shows in the
fit's cross-validated error, which this prints.

One thread because on a small shared CPU extra OpenMP threads spin and contend: with two
threads on this 2-core machine under load, single repeats sat 167% from their point's median
on average (one thread: ~28%). `manylora demo` replays on the thread count the shipped profile
records, so the two stay comparable.

    .venv/bin/python benchmarks/regenerate_cpu_profile.py [--repeats 7] [--threads 1] [-o PATH]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "simulator" / "profiles" / "cpu-tiny.json"


def manylora(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "manylora.analysis.cli", *args], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", default=str(SHIPPED), help=f"default {SHIPPED}")
    parser.add_argument("--repeats", type=int, default=7, help="timed passes (default 7)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as scratch:
        tiny = Path(scratch) / "tiny"
        manylora("model", "make-tiny", "-o", str(tiny))
        manylora("profile", "--model", str(tiny), "--repeats", str(args.repeats),
                 "--threads", str(args.threads), "-o", args.output)
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
