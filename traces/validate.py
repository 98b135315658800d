"""The rules of a trace folder (docs/internals.md, "Trace folder"), checked column by column.

Each ``validate_*`` takes a freshly parsed (or user-built) frame, checks it with vectorised
operations and returns it normalised: canonical column order, int64/float64 columns,
canonical target lists. The first violation raises `TraceError` naming file, row, column and
value.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from manylora.traces.catalog import DEFAULT_TARGETS, parse_targets
from manylora.traces.errors import TraceConfigError, TraceError
from manylora.traces.tables import (check_columns, check_min, numeric_column, spreadsheet_row,
                                    text_column)

REQUEST_COLUMNS: tuple[str, ...] = ("request_id", "arrival_s", "adapter_id", "prompt_len",
                                    "output_len")
ADAPTER_COLUMNS: tuple[str, ...] = ("adapter_id", "rank", "alpha", "targets")
ADAPTER_OPTIONAL_COLUMNS: tuple[str, ...] = ("alpha", "targets", "path")
BASE_MODEL = -1  # adapter_id of a request served by the base model alone


def _first_duplicate(values: np.ndarray) -> int | None:
    duplicated = pd.Series(values).duplicated(keep="first").to_numpy()
    return int(np.flatnonzero(duplicated)[0]) if duplicated.any() else None


def _check_unique(values: np.ndarray, path: object, column: str) -> None:
    i = _first_duplicate(values)
    if i is not None:
        earlier = int(np.flatnonzero(values[:i] == values[i])[0])
        raise TraceError.at(path, spreadsheet_row(i), column, values[i].item(),
                            f"duplicate of row {spreadsheet_row(earlier)}")


def validate_requests(frame: pd.DataFrame, path: object) -> pd.DataFrame:
    """requests.csv: unique ids >= 0, arrival times >= 0 and non-decreasing, adapter ids >= -1,
    lengths >= 1."""
    check_columns(frame, path, REQUEST_COLUMNS)
    request_id = numeric_column(frame, "request_id", path, integer=True)
    check_min(request_id, 0, path, "request_id")
    arrival_s = numeric_column(frame, "arrival_s", path, integer=False)
    check_min(arrival_s, 0, path, "arrival_s")
    decreasing = np.diff(arrival_s) < 0
    if decreasing.any():
        i = int(np.flatnonzero(decreasing)[0]) + 1
        raise TraceError.at(path, spreadsheet_row(i), "arrival_s", arrival_s[i].item(),
                            f"arrival times must not decrease (row {spreadsheet_row(i - 1)} "
                            f"has {arrival_s[i - 1].item()!r})")
    adapter_id = numeric_column(frame, "adapter_id", path, integer=True)
    check_min(adapter_id, BASE_MODEL, path, "adapter_id")
    columns: dict[str, np.ndarray] = {"request_id": request_id, "arrival_s": arrival_s,
                                      "adapter_id": adapter_id}
    for column in ("prompt_len", "output_len"):
        columns[column] = numeric_column(frame, column, path, integer=True)
        check_min(columns[column], 1, path, column)
    _check_unique(request_id, path, "request_id")
    return pd.DataFrame(columns)


def _targets_column(frame: pd.DataFrame, path: object) -> np.ndarray:
    if "targets" not in frame.columns:
        return np.full(len(frame), ";".join(DEFAULT_TARGETS), dtype=object)
    texts = text_column(frame, "targets")
    # Parse each distinct text once: catalogs repeat a handful of target lists.
    uniques, inverse = np.unique(texts.astype(str), return_inverse=True)
    canonical = []
    for k, text in enumerate(uniques):
        try:
            canonical.append(";".join(parse_targets(text)))
        except TraceConfigError as exc:
            i = int(np.flatnonzero(inverse == k)[0])
            raise TraceError.at(path, spreadsheet_row(i), "targets", text, str(exc)) from None
    return np.asarray(canonical, dtype=object)[inverse]


def validate_adapters(frame: pd.DataFrame, path: object) -> pd.DataFrame:
    """adapters.csv: unique ids >= 0, ranks >= 1, alpha > 0 (default: the rank, scale 1),
    targets known (default ``q;k;v;o``), optional path."""
    check_columns(frame, path, ("adapter_id", "rank"), ADAPTER_OPTIONAL_COLUMNS)
    adapter_id = numeric_column(frame, "adapter_id", path, integer=True)
    check_min(adapter_id, 0, path, "adapter_id")
    rank = numeric_column(frame, "rank", path, integer=True)
    check_min(rank, 1, path, "rank")
    if "alpha" in frame.columns:
        alpha = numeric_column(frame, "alpha", path, integer=False)
        nonpositive = alpha <= 0
        if nonpositive.any():
            i = int(np.flatnonzero(nonpositive)[0])
            raise TraceError.at(path, spreadsheet_row(i), "alpha", alpha[i].item(), "must be > 0")
    else:
        alpha = rank.astype(np.float64)
    _check_unique(adapter_id, path, "adapter_id")
    columns: dict[str, Any] = {"adapter_id": adapter_id, "rank": rank, "alpha": alpha,
                               "targets": _targets_column(frame, path)}
    if "path" in frame.columns:
        columns["path"] = text_column(frame, "path")
    return pd.DataFrame(columns)


def validate_links(requests: pd.DataFrame, adapters: pd.DataFrame, requests_path: object,
                   adapters_path: object) -> None:
    """Every adapter id a request uses (other than -1, the base model) is in adapters.csv."""
    used = requests["adapter_id"].to_numpy()
    missing = (used != BASE_MODEL) & ~np.isin(used, adapters["adapter_id"].to_numpy())
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise TraceError.at(requests_path, spreadsheet_row(i), "adapter_id", used[i].item(),
                            f"no such adapter in {adapters_path}")


def validate_meta(meta: Any, path: object) -> dict:
    """meta.json: an object naming its ``generator``."""
    if not isinstance(meta, dict):
        raise TraceError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    generator = meta.get("generator")
    if not isinstance(generator, str) or not generator:
        raise TraceError(f"{path}: key 'generator' must be a non-empty string, got {generator!r}")
    return meta
