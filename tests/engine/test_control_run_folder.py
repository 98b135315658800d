"""The run-folder writer: byte-identical output, the format analysis reads, blocks of rows
equal to the rows they stand for, safe replacement."""
from __future__ import annotations

import numpy as np
import pytest

from control_cases import drive, make_scheduler, req
from manylora.analysis.run_folder import read_run
from manylora.engine.run_folder import (STEP_COLUMNS, RunWriteError, StepLog, requests_text,
                                        versions, write_run_folder)


def _run():
    sched = make_scheduler(ranks=(8, 16), pool_pages=80, max_batch_size=2, queue="early-abort",
                           slo_ttft_s=4.0)
    requests = [req(i, 0.37 * i, i % 3 - 1, 3 + i, 2 + i % 4) for i in range(10)]
    requests.append(req(10, 1.0, 5, 3, 3))  # unknown adapter: rejected
    out = drive(sched, requests, step_time=0.7)
    log = StepLog()
    for plan, start in zip(out.plans, out.times):
        log.add(0, plan, start, 0.7, len(plan.aborted))
    return requests, log


def test_run_folder_reads_back_and_is_byte_identical(tmp_path) -> None:
    requests, log = _run()
    meta = {"source": "simulator", "seed": 3, "versions": versions()}
    a = write_run_folder(tmp_path / "a", requests, log, meta)
    b = write_run_folder(tmp_path / "b", requests, log, meta)
    for name in ("requests.csv", "steps.csv", "meta.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    run = read_run(a)  # analysis's validating reader accepts it
    assert run.requests["request_id"].tolist() == list(range(11))
    assert run.requests["status"].value_counts().to_dict().keys() >= {"finished", "rejected"}
    assert (run.requests.loc[10, "reason"]) == "unknown-adapter"
    assert len(run.steps) == len(log)
    assert list(run.steps.columns[:len(STEP_COLUMNS)]) == list(STEP_COLUMNS)
    assert np.allclose(run.steps["duration_s"], 0.7)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staging left


def test_times_use_one_rounding_so_event_order_survives() -> None:
    r = req(0, 0.1234567, -1, 1, 1)
    r.admitted_s = r.first_token_s = r.finish_s = 0.1234567
    line = requests_text([r]).splitlines()[1]
    assert line.split(",")[1] == line.split(",")[7] == "0.123457"


def test_block_rows_equal_the_single_rows_they_replace() -> None:
    sched = make_scheduler(ranks=(8,), pool_pages=500)
    for i in range(3):
        sched.add_request(req(i, 0.0, 0, 5 + i, 40), 0.0)
    sched.complete(sched.schedule(0.0), 1.0)
    plan = sched.schedule(1.0)
    n = sched.quiet_steps(plan)
    starts = 1.0 + np.arange(n) * 0.5
    block, single = StepLog(), StepLog()
    block.add_block(1, plan, starts, np.full(n, 0.5), aborted=2)
    for k in range(n):
        single.add(1, plan, float(starts[k]), 0.5, 2 if k == 0 else 0)
        if k < n - 1:
            sched.complete(plan, float(starts[k]) + 0.5)
            plan = sched.schedule(float(starts[k]) + 0.5)
    assert n > 10
    for (bi, bt), (si, st) in zip([block.columns()], [single.columns()]):
        assert np.array_equal(bi, si) and np.array_equal(bt, st)


def test_replaces_a_run_folder_but_not_anything_else(tmp_path) -> None:
    requests, log = _run()
    meta = {"source": "engine"}
    target = write_run_folder(tmp_path / "run", requests, log, meta)
    write_run_folder(target, requests, log, {"source": "simulator"})
    assert '"simulator"' in (target / "meta.json").read_text()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(RunWriteError, match="notes.txt"):
        write_run_folder(target, requests, log, meta)
    assert (target / "notes.txt").read_text() == "mine"


def test_duplicate_request_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        requests_text([req(1, 0.0, -1, 1, 1), req(1, 0.0, -1, 1, 1)])
