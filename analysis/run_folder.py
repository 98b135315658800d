"""Reading and validating a run folder (engine replay or simulation; docs/internals.md).

A run folder holds ``requests.csv`` (one row per trace request with its outcome and
timestamps), ``steps.csv`` (one row per scheduler iteration) and ``meta.json``. Everything in
``analysis`` reads runs through :func:`read_run`, which checks every cell it relies on and
raises :class:`RunFolderError` naming the file, row (the header is row 1), column and value of
the first bad cell, so a broken writer is caught here rather than as a NaN in a plot.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

STATUSES = ("finished", "aborted", "rejected")
SOURCES = ("engine", "simulator")

TRACE_COLUMNS = ("request_id", "arrival_s", "adapter_id", "prompt_len", "output_len")
REQUEST_COLUMNS = TRACE_COLUMNS + (
    "status", "reason", "admitted_s", "first_token_s", "finish_s", "output_tokens")
# Listed by docs/internals.md but absent from the README's shorter description; a run without
# them is read as a single replica with no preemptions.
OPTIONAL_REQUEST_COLUMNS = {"preemptions": 0, "replica": 0}

STEP_COLUMNS = ("replica", "step", "start_s", "duration_s", "prefill_tokens", "prefill_requests",
                "prefill_sq_tokens", "decode_requests", "decode_context_tokens",
                "distinct_adapters", "sum_ranks", "lora_token_ranks", "kv_pages",
                "adapter_pages", "free_pages", "adapter_loads", "adapter_load_bytes",
                "preempted", "aborted")
_STEP_FLOAT_COLUMNS = ("start_s", "duration_s")


class RunFolderError(ValueError):
    """A run folder is missing a file or holds a value that breaks the run-folder format."""


@dataclass(frozen=True)
class Run:
    """One run folder, validated: the requests and steps tables and the metadata."""

    path: Path
    requests: pd.DataFrame   # one row per request, sorted by request_id
    steps: pd.DataFrame      # one row per scheduler iteration
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return str(self.meta.get("source", "unknown"))

    @property
    def label(self) -> str:
        """Short name for legends: the source, and the folder name when it says more."""
        name = self.path.name
        return self.source if name == self.source else f"{self.source} ({name})"


def _fail(path: Path, row: int | None, column: str, value: object, why: str) -> RunFolderError:
    where = f"{path}" if row is None else f"{path} row {row}"
    return RunFolderError(f"{where}, column {column}: {value!r} {why}")


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise RunFolderError(f"{path}: missing file")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"{path}: not a readable CSV file ({exc})") from exc
    except pd.errors.EmptyDataError as exc:
        raise RunFolderError(f"{path}: empty file, expected a header row") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise RunFolderError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def _numbers(frame: pd.DataFrame, path: Path, column: str, *, integer: bool,
             optional: bool = False, minimum: float | None = None) -> np.ndarray:
    """Column as float64 (NaN for empty cells when ``optional``), checked cell by cell."""
    text = frame[column].str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    empty = (text == "").to_numpy()
    bad = np.isnan(values) & ~(empty & optional) | np.isinf(values)
    if integer:
        bad |= ~np.isnan(values) & (values != np.round(values))
    if minimum is not None:
        bad |= values < minimum
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        kind = "an integer" if integer else "a number"
        bound = "" if minimum is None else f" >= {minimum:g}"
        why = f"is not {kind}{bound}" + (" (or empty)" if optional else "")
        raise _fail(path, i + 2, column, frame[column].iloc[i], why)
    return values


def _check(path: Path, bad: np.ndarray, frame: pd.DataFrame, column: str, why: str) -> None:
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _fail(path, i + 2, column, frame[column].iloc[i], why)


def read_requests(path: Path) -> pd.DataFrame:
    """A run's requests.csv as typed columns (times float64 with NaN for 'never')."""
    raw = _read_csv(path, REQUEST_COLUMNS)
    out = pd.DataFrame(index=raw.index)
    for column in ("request_id", "adapter_id", "prompt_len", "output_len", "output_tokens"):
        minimum = {"request_id": 0, "adapter_id": -1, "output_tokens": 0}.get(column, 1)
        out[column] = _numbers(raw, path, column, integer=True, minimum=minimum).astype(np.int64)
    out["arrival_s"] = _numbers(raw, path, "arrival_s", integer=False, minimum=0.0)
    for column in ("admitted_s", "first_token_s", "finish_s"):
        out[column] = _numbers(raw, path, column, integer=False, optional=True)
    for column, default in OPTIONAL_REQUEST_COLUMNS.items():
        out[column] = (_numbers(raw, path, column, integer=True, minimum=0).astype(np.int64)
                       if column in raw.columns else default)
    status = raw["status"].str.strip()
    _check(path, ~status.isin(STATUSES).to_numpy(), raw, "status",
           f"is not one of {', '.join(STATUSES)}")
    out["status"] = status
    out["reason"] = raw["reason"].str.strip()
    finished = (status == "finished").to_numpy()
    _check(path, finished & (out["reason"] != "").to_numpy(), raw, "reason",
           "must be empty for a finished request")

    ids = out["request_id"].to_numpy()
    _check(path, np.r_[False, ids[1:] <= ids[:-1]], raw, "request_id",
           "is not greater than the previous row's (rows must be sorted by unique request_id)")
    _check(path, out["output_tokens"].to_numpy() > out["output_len"].to_numpy(), raw,
           "output_tokens", "exceeds output_len")
    for column in ("first_token_s", "finish_s"):
        _check(path, finished & np.isnan(out[column].to_numpy()), raw, column,
               "must be set for a finished request")
    _check(path, finished & (out["output_tokens"].to_numpy() < 1), raw, "output_tokens",
           "must be >= 1 for a finished request")
    # Events happen in order: arrival <= admitted <= first token <= finish (when they happen).
    previous = out["arrival_s"].to_numpy()
    for column in ("admitted_s", "first_token_s", "finish_s"):
        values = out[column].to_numpy()
        _check(path, values < previous, raw, column, "is earlier than the request's previous "
               "event (arrival <= admitted <= first token <= finish)")
        previous = np.where(np.isnan(values), previous, values)
    return out[list(REQUEST_COLUMNS) + list(OPTIONAL_REQUEST_COLUMNS)]


def read_steps(path: Path) -> pd.DataFrame:
    """A run's steps.csv as typed columns; extra columns are kept as text."""
    raw = _read_csv(path, STEP_COLUMNS)
    out = pd.DataFrame(index=raw.index)
    for column in STEP_COLUMNS:
        integer = column not in _STEP_FLOAT_COLUMNS
        values = _numbers(raw, path, column, integer=integer, minimum=0)
        out[column] = values.astype(np.int64) if integer else values
    for column in raw.columns:
        if column not in out.columns:
            out[column] = raw[column]
    return out


def read_meta(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RunFolderError(f"{path}: missing file")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise RunFolderError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("source") not in SOURCES:
        raise RunFolderError(f"{path}, key source: {meta.get('source')!r} is not one of "
                             f"{', '.join(SOURCES)}")
    return meta


def read_run(folder: str | Path) -> Run:
    """Read and validate a run folder; :class:`RunFolderError` names the first bad value."""
    path = Path(folder)
    if not path.is_dir():
        raise RunFolderError(f"{path}: not a run folder (no such directory)")
    return Run(path=path, requests=read_requests(path / "requests.csv"),
               steps=read_steps(path / "steps.csv"), meta=read_meta(path / "meta.json"))
