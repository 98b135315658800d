"""A small simulated run, diffed byte for byte against tests/golden/sim_small.

The trace folder is stored beside the run, so the golden depends only on the trace reader,
the control plane and the simulator (with the test double cost model of sim_cases.py), not on
trace generation or a fitted profile. meta.json is compared without ``versions``.
To regenerate after an intended change: ``MANYLORA_UPDATE_GOLDEN=1 pytest
tests/simulator/test_sim_golden.py`` and review the diff.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from sim_cases import small_trace, write_sim
from manylora.traces import read_trace, write_trace

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "sim_small"
OPTIONS = {"queue": "early-abort", "slo_ttft_s": 0.3, "abort_margin_s": 0.02,
           "max_batch_size": 3, "prefetch": True, "prefetch_window": 3,
           "host_cache_bytes": 150_000}
SETTINGS = {"replicas": 2, "router": "least-outstanding", "pool_pages": 600}


def _simulate(run_dir: Path) -> Path:
    return write_sim(read_trace(GOLDEN / "trace"), run_dir, OPTIONS, **SETTINGS)


def _meta_without_versions(path: Path) -> dict:
    meta = json.loads(path.read_text())
    meta.pop("versions")
    return meta


def test_simulated_run_matches_golden(tmp_path) -> None:
    if os.environ.get("MANYLORA_UPDATE_GOLDEN"):
        write_trace(small_trace(n=60, num_adapters=6, rate=60.0, seed=42), GOLDEN / "trace")
        shutil.rmtree(GOLDEN / "run", ignore_errors=True)
        _simulate(GOLDEN / "run")
    run = _simulate(tmp_path / "run")
    for name in ("requests.csv", "steps.csv"):
        assert (run / name).read_text() == (GOLDEN / "run" / name).read_text(), name
    assert _meta_without_versions(run / "meta.json") == \
        _meta_without_versions(GOLDEN / "run" / "meta.json")


def test_golden_run_shows_what_it_is_for() -> None:
    """The golden exercises drops, adapter loads and both replicas."""
    text = (GOLDEN / "run" / "requests.csv").read_text()
    assert ",aborted,ttft-slo-unreachable," in text and ",finished,," in text
    rows = [line.split(",") for line in text.splitlines()[1:]]
    assert {row[-1] for row in rows} == {"0", "1"}
    steps = [line.split(",") for line in
             (GOLDEN / "run" / "steps.csv").read_text().splitlines()[1:]]
    assert len(steps) > 50 and sum(int(row[15]) for row in steps) > 0  # adapter_loads
