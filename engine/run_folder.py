"""Writing a run folder (requests.csv, steps.csv, meta.json), torch-free.

Engine replay and the simulator both write runs through this module, so the two bodies'
outputs are the same format byte for byte (docs/internals.md, "Run folder"). ``StepLog``
collects steps.csv rows as a body executes plans (one row per step, or a block of rows for a
jump over identical decode steps); ``write_run_folder`` writes everything.

Output is reproducible: requests.csv times have 6 decimals (microseconds, as trace folders
write ``arrival_s``; one rounding for every time column keeps arrival <= admitted <= first
token <= finish true in the text), steps.csv times have 9, and meta.json has sorted keys.
Rows are formatted in vectorised chunks. The folder is staged beside the target and renamed
into place (traces/atomic_io.py).
"""
from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from manylora.engine.request import Request
from manylora.engine.step_plan import StepPlan
from manylora.traces.atomic_io import atomic_folder

RUN_FILES: tuple[str, ...] = ("requests.csv", "steps.csv", "meta.json")
REQUEST_COLUMNS: tuple[str, ...] = (
    "request_id", "arrival_s", "adapter_id", "prompt_len", "output_len", "status", "reason",
    "admitted_s", "first_token_s", "finish_s", "output_tokens", "preemptions", "replica")
STEP_COLUMNS: tuple[str, ...] = (
    "replica", "step", "start_s", "duration_s", "prefill_tokens", "prefill_requests",
    "prefill_sq_tokens", "decode_requests", "decode_context_tokens", "distinct_adapters",
    "sum_ranks", "lora_token_ranks", "kv_pages", "adapter_pages", "free_pages",
    "adapter_loads", "adapter_load_bytes", "preempted", "aborted")
_STEP_INTS = len(STEP_COLUMNS) - 2          # every column but start_s and duration_s
_CONTEXT_COLUMN = STEP_COLUMNS.index("decode_context_tokens") - 2  # among the int columns
_MICRO, _NANO = 10**6, 10**9
_STEP_ROW = "%d,%d,%d.%09d,%d.%09d," + ",".join(["%d"] * (_STEP_INTS - 2)) + "\n"
_CHUNK = 50_000


class RunWriteError(OSError):
    """The run folder cannot be written where asked."""


class StepLog:
    """steps.csv rows, collected as plans execute (columnar at the end)."""

    def __init__(self) -> None:
        self._rows: list[tuple[int, ...]] = []       # int columns of single rows
        self._times: list[tuple[float, float]] = []  # (start_s, duration_s) of single rows
        self._chunks: list[tuple[np.ndarray, np.ndarray]] = []  # flushed (ints, times)

    def __len__(self) -> int:
        return len(self._rows) + sum(len(c[0]) for c in self._chunks)

    @staticmethod
    def _row(replica: int, plan: StepPlan, aborted: int) -> tuple[int, ...]:
        sh = plan.shape
        return (replica, plan.step, sh.prefill_tokens, sh.prefill_requests,
                sh.prefill_sq_tokens, sh.decode_requests, sh.decode_context_tokens,
                sh.distinct_adapters, sh.sum_ranks, sh.lora_token_ranks, plan.kv_pages,
                plan.adapter_pages, plan.free_pages, sh.adapter_loads, sh.adapter_load_bytes,
                len(plan.preempted), aborted)

    def add(self, replica: int, plan: StepPlan, start_s: float, duration_s: float,
            aborted: int) -> None:
        """One executed step; ``aborted``: requests dropped since the previous row."""
        self._rows.append(self._row(replica, plan, aborted))
        self._times.append((start_s, duration_s))

    def add_block(self, replica: int, plan: StepPlan, starts: np.ndarray,
                  durations: np.ndarray, aborted: int) -> None:
        """``len(starts)`` identical decode steps from ``plan`` on (a jump): step and decode
        context grow by one step and ``decode_requests`` per row."""
        self._flush()
        n = len(starts)
        ints = np.repeat(np.array([self._row(replica, plan, aborted)], dtype=np.int64), n,
                         axis=0)  # [n, ints]
        offsets = np.arange(n, dtype=np.int64)
        ints[:, 1] += offsets
        ints[:, _CONTEXT_COLUMN] += offsets * plan.shape.decode_requests
        ints[1:, -1] = 0  # drops are counted once, on the block's first row
        self._chunks.append((ints, np.stack([starts, durations], axis=1)))

    def add_columns(self, ints: np.ndarray, times: np.ndarray) -> None:
        """Rows as ``columns`` gives them: ``ints [n, 17]``, ``times [n, 2]`` (start_s,
        duration_s)."""
        ints, times = np.asarray(ints, np.int64), np.asarray(times, np.float64)
        if ints.ndim != 2 or ints.shape[1] != _STEP_INTS or times.shape != (len(ints), 2):
            raise ValueError(f"StepLog.add_columns: expected [n, {_STEP_INTS}] and [n, 2], got "
                             f"{ints.shape} and {times.shape}")
        self._flush()
        self._chunks.append((ints, times))

    def _flush(self) -> None:
        if self._rows:
            self._chunks.append((np.array(self._rows, dtype=np.int64),
                                 np.array(self._times, dtype=np.float64)))
            self._rows, self._times = [], []

    def columns(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ints [n, 17], times [n, 2])`` sorted by (replica, step)."""
        self._flush()
        if not self._chunks:
            return np.zeros((0, _STEP_INTS), np.int64), np.zeros((0, 2), np.float64)
        ints = np.concatenate([c[0] for c in self._chunks])
        times = np.concatenate([c[1] for c in self._chunks])
        order = np.lexsort((ints[:, 1], ints[:, 0]))
        self._chunks = [(ints[order], times[order])]
        return self._chunks[0]


def _split(values: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Whole seconds and fraction digits of non-negative times at 1/scale resolution."""
    ticks = np.round(values * scale).astype(np.int64)
    return np.divmod(ticks, scale)


def _time_cell(value: float | None) -> str:
    if value is None:
        return ""
    whole, frac = divmod(int(round(value * _MICRO)), _MICRO)
    return f"{whole}.{frac:06d}"


def _check_reason(req: Request) -> str:
    if any(c in req.reason for c in ',"\n\r'):
        raise ValueError(f"request {req.request_id}: reason {req.reason!r} holds a comma, "
                         "quote or newline")
    return req.reason


def requests_text(requests: Iterable[Request]) -> str:
    ordered = sorted(requests, key=lambda r: r.request_id)
    ids = [r.request_id for r in ordered]
    if len(set(ids)) != len(ids):
        raise ValueError("a request id appears twice in the run")
    lines = [",".join(REQUEST_COLUMNS)]
    for r in ordered:
        lines.append(f"{r.request_id},{_time_cell(r.arrival_s)},{r.adapter_id},{r.prompt_len},"
                     f"{r.output_len},{r.state.value},{_check_reason(r)},"
                     f"{_time_cell(r.admitted_s)},{_time_cell(r.first_token_s)},"
                     f"{_time_cell(r.finish_s)},{r.output_tokens},{r.preemptions},{r.replica}")
    return "\n".join(lines) + "\n"


def _write_steps(log: StepLog, out: Any) -> None:
    out.write(",".join(STEP_COLUMNS) + "\n")
    ints, times = log.columns()
    start_whole, start_frac = _split(times[:, 0], _NANO)
    dur_whole, dur_frac = _split(times[:, 1], _NANO)
    table = np.column_stack([ints[:, 0], ints[:, 1], start_whole, start_frac, dur_whole,
                             dur_frac, ints[:, 2:]])  # [n, ints + 4]
    for first in range(0, len(table), _CHUNK):
        chunk = table[first:first + _CHUNK]
        out.write((_STEP_ROW * len(chunk)) % tuple(chunk.ravel().tolist()))


def versions() -> dict[str, str]:
    """Versions of what shaped a run (for meta.json; no paths, no clock)."""
    found = {"python": platform.python_version()}
    for package in ("manylora", "numpy", "simpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def write_run_folder(folder: str | os.PathLike[str], requests: Iterable[Request],
                     steps: StepLog, meta: dict[str, Any]) -> Path:
    """Write a run folder (replacing an existing run folder there); returns its path."""
    target = Path(folder)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunWriteError(f"{target.parent}: cannot create folder ({exc.strerror})") from None
    with atomic_folder(target, RUN_FILES.__contains__, what="a run folder",
                       error=RunWriteError) as staged:
        with open(staged / "requests.csv", "w", encoding="utf-8", newline="\n") as out:
            out.write(requests_text(requests))
        with open(staged / "steps.csv", "w", encoding="utf-8", newline="\n") as out:
            _write_steps(steps, out)
        with open(staged / "meta.json", "w", encoding="utf-8", newline="\n") as out:
            out.write(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return target
