"""A tiny run of benchmarks/engine_scaling.py: every variant serves the same trace and gives the
same greedy tokens as manylora (a baseline that computes something else is not a baseline),
the outputs are written, PEFT is skipped with its projection when loading would take too long,
a time budget gives a partial result, a cell runs in its own process, and bad arguments are
one line with exit status 2.
"""
from __future__ import annotations

import csv
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.append(str(BENCHMARKS))  # last: benchmarks/kernels.py is not HF's kernels

import engine_scaling  # noqa: E402
from scaling.cell import run_cell  # noqa: E402
from scaling.context import CellSpec  # noqa: E402
from scaling.peft_baseline import projected_load_s  # noqa: E402
from scaling.presets import preset  # noqa: E402
from scaling.report import add_agreement  # noqa: E402
from scaling.workload import (make_trace, write_adapters, write_checkpoint,  # noqa: E402
                              write_traces)

TINY = preset("tiny")


@pytest.fixture(autouse=True, scope="module")
def keep_torch_threads():
    """Cells set torch's thread count process-wide; give the rest of the suite its own back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("scaling-work")


@pytest.fixture(scope="module")
def full_run(work: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scaling-out")
    code = engine_scaling.main(["--model-shape", "tiny", "--adapters", "1,12", "--in-process",
                                "--work-dir", str(work), "-o", str(out)])
    assert code == 0
    return out


def _cells(out: Path) -> dict[tuple[str, int], dict]:
    cells = {}
    for path in (out / "cells").glob("*-r0.json"):
        cell = json.loads(path.read_text())
        cells[cell["variant"], cell["num_adapters"]] = cell
    return cells


def test_every_variant_serves_every_request_with_manylora_tokens(full_run: Path):
    cells = _cells(full_run)
    assert set(cells) == {(v, n) for v in ("manylora", "partitioned", "padded", "peft",
                                          "merged") for n in (1, 12)}
    for key, cell in cells.items():
        assert cell["status"] == "ok", (key, cell["reason"])
        assert cell["done"] == cell["requests"] == TINY.num_requests
        assert cell["agreement"] == cell["prefix_agreement"] == 1.0, key
        assert cell["throughput_rps"] > 0 and cell["latency_mean_s"] > 0
        assert cell["cpu_throughput_rps"] >= cell["throughput_rps"] * 0.5
        trace_lens = make_trace(TINY, key[1], TINY.num_requests).column("output_len")
        assert [len(cell["tokens"][str(i)]) for i in range(len(trace_lens))] == \
            trace_lens.tolist()
    assert cells["padded", 12]["notes"]["lora_backend"] == "padded"
    assert cells["peft", 12]["notes"]["adapters_loaded"] == 12


def test_merged_copies_are_re_merged_when_adapters_outnumber_them(full_run: Path):
    merged = _cells(full_run)["merged", 12]
    distinct = len(set(make_trace(TINY, 12, TINY.num_requests).column("adapter_id")))
    assert merged["notes"]["copies"] < distinct
    assert merged["notes"]["merges"] >= distinct


def test_outputs_hold_every_cell_the_table_and_the_plot(full_run: Path):
    with open(full_run / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 and {r["status"] for r in rows} == {"ok"}
    table = (full_run / "table.md").read_text()
    assert "manylora throughput (wall) with 12 adapters / with 1" in table
    assert "manylora throughput (CPU time) with 12 adapters / with 1" in table
    assert table.count("| 12 |") == 5
    assert (full_run / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((full_run / "meta.json").read_text())
    assert meta["preset"]["name"] == "tiny" and meta["adapters"] == [1, 12]


def test_projected_peft_load_time_follows_the_fitted_line():
    times = [1.0 + 0.5 * i for i in range(4)]
    assert projected_load_s(times, 10) == pytest.approx(sum(1.0 + 0.5 * i for i in range(10)))
    assert projected_load_s([2.0], 5) == 10.0
    assert projected_load_s(times, 4) == sum(times)


def _spec(work: Path, variant: str, count: int, **changes) -> CellSpec:
    traces = write_traces(work / "traces-extra", TINY, [count], TINY.num_requests)
    spec = CellSpec(variant, count, 0, "tiny", "cpu", 1,
                    str(write_checkpoint(work / "model", TINY)),
                    str(write_adapters(work / "adapters", TINY, count)), str(traces[count]),
                    budget_s=60.0, peft_load_limit_s=60.0)
    return replace(spec, **changes)


def test_peft_is_not_run_when_loading_is_projected_past_the_limit(work: Path):
    result = run_cell(_spec(work, "peft", 3, peft_load_limit_s=1e-6))
    assert result["status"] == "skipped"
    assert "projected" in result["reason"] and "3 adapters" in result["reason"]
    assert result["throughput_rps"] is None


def test_serving_stops_at_the_budget_with_a_partial_result(work: Path):
    result = run_cell(_spec(work, "manylora", 2, budget_s=1e-6))
    assert result["status"] == "partial"
    assert result["done"] < result["requests"] and result["latency_mean_s"] is None
    assert "budget" in result["reason"]


def test_a_cell_runs_in_a_process_of_its_own(work: Path, tmp_path: Path):
    for sub in ("cells", "logs"):
        (tmp_path / sub).mkdir()
    result = engine_scaling.run_one(_spec(work, "manylora", 2), tmp_path, in_process=False)
    assert result["status"] == "ok" and result["done"] == TINY.num_requests
    assert result["peak_rss_mib"] > 0


def test_cells_past_the_time_limit_are_recorded_as_not_run(work: Path, tmp_path: Path):
    code = engine_scaling.main(["--model-shape", "tiny", "--adapters", "1,2", "--in-process",
                                "--variants", "manylora,merged", "--time-limit", "0",
                                "--work-dir", str(work), "-o", str(tmp_path)])
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert code == 0 and len(rows) == 4
    assert {r["status"] for r in rows} == {"not run"}
    assert "past --time-limit" in (tmp_path / "table.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--adapters", "0"], "--adapters"),
    (["--adapters", "1,x"], "--adapters"),
    (["--variants", "manylora,vllm"], "vllm"),
    (["--model-shape", "llama-70b"], "llama-70b"),
    (["--requests", "0"], "--requests"),
    (["--memory", "1.1"], "--memory"),
    (["--device", "cuda:x"], "--device"),
])
def test_bad_arguments_are_one_line_and_exit_2(argv, message, capsys, tmp_path: Path):
    code = engine_scaling.main([*argv, "--work-dir", str(tmp_path), "-o", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("engine_scaling: error:") and message in err[0]


def test_agreement_counts_requests_whose_tokens_differ_from_manylora():
    def cell(variant: str, tokens: dict) -> dict:
        return {"variant": variant, "num_adapters": 5, "tokens": tokens}
    results = [cell("manylora", {"0": [1, 2, 3, 4], "1": [5, 6]}),
               cell("peft", {"0": [1, 2, 9, 4], "1": [5, 6]}),
               cell("merged", {"0": [1, 2, 3, 4]})]
    add_agreement(results)
    assert results[1]["agreement"] == 0.5 and results[1]["prefix_agreement"] == 0.75
    assert results[2]["agreement"] == results[2]["prefix_agreement"] == 1.0
