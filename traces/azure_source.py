"""Azure LLM inference traces: the shipped copies and a loader for any file in their format.

The files in ``data/azure-llm-2023/`` are the Azure LLM inference traces 2023, licensed CC-BY
4.0 by Microsoft (Azure Public Dataset). Cite: Pratyush Patel, Esha Choukse, Chaojie Zhang,
Aashaka Shah, Inigo Goiri, Saeed Maleki, Ricardo Bianchini. "Splitwise: Efficient generative
LLM inference using phase splitting", ISCA 2024. ``azure-code`` and ``azure-conv`` name them.

A source file has columns ``TIMESTAMP`` (absolute date and time), ``ContextTokens`` and
``GeneratedTokens``; other columns are ignored. Loading sorts rows by time (stably, counting
rows that were out of order) and measures arrivals in seconds since the first request. Token
counts of 0 (the service logged none) are raised to 1, because a trace length must be >= 1,
and counted so that importers can say how many they changed.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd

from manylora.traces.errors import TraceError
from manylora.traces.tables import (check_columns, check_min, numeric_column, read_bytes,
                                    read_table, spreadsheet_row)

AZURE_DATA_DIR = Path(__file__).resolve().parent / "data" / "azure-llm-2023"
SHIPPED_SOURCES = MappingProxyType({
    "azure-code": "AzureLLMInferenceTrace_code.csv",
    "azure-conv": "AzureLLMInferenceTrace_conv.csv",
})
AZURE_COLUMNS: tuple[str, ...] = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def source_path(source: str) -> Path:
    """The file a source name stands for: a shipped shorthand or a path."""
    if source in SHIPPED_SOURCES:
        return AZURE_DATA_DIR / SHIPPED_SOURCES[source]
    return Path(source)


def source_label(source: str) -> str:
    """How meta.json names a source: the shorthand, or the file's name (never a full path,
    so the same file gives the same bytes wherever it lies)."""
    return source if source in SHIPPED_SOURCES else Path(source).name


@dataclass(frozen=True, eq=False)
class AzureTable:
    """One Azure-format file, loaded: requests in time order (arrays are read-only: they are
    shared through the cache)."""

    sha256: str
    arrival_s: np.ndarray   # [n] float64 seconds since the first request, non-decreasing
    prompt_len: np.ndarray  # [n] int64 >= 1 (ContextTokens, 0 raised to 1)
    output_len: np.ndarray  # [n] int64 >= 1 (GeneratedTokens, 0 raised to 1)
    prompt_was_zero: np.ndarray  # [n] bool: ContextTokens was 0 (raised to 1)
    output_was_zero: np.ndarray  # [n] bool: GeneratedTokens was 0 (raised to 1)
    reordered_rows: int     # rows that were not in time order in the file

    def __len__(self) -> int:
        return len(self.arrival_s)


def _timestamps(frame: pd.DataFrame, path: Path) -> np.ndarray:
    text = frame["TIMESTAMP"]
    parsed = pd.to_datetime(text, format="ISO8601", errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TraceError.at(path, spreadsheet_row(i), "TIMESTAMP",
                            "" if pd.isna(text.iloc[i]) else text.iloc[i], "not a date and time")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64)  # [n] ns since epoch


@functools.lru_cache(maxsize=8)
def _load(path: Path, mtime_ns: int, size: int) -> AzureTable:
    data = read_bytes(path)
    frame = read_table(path, data)
    check_columns(frame, path, AZURE_COLUMNS, allow_unknown=True)
    if len(frame) == 0:
        raise TraceError(f"{path}: no requests (only a header)")
    nanos = _timestamps(frame, path)
    lengths = {}
    for column in ("ContextTokens", "GeneratedTokens"):
        lengths[column] = numeric_column(frame, column, path, integer=True)
        check_min(lengths[column], 0, path, column)
    order = np.argsort(nanos, kind="stable")
    nanos = nanos[order]
    prompt = lengths["ContextTokens"][order]
    output = lengths["GeneratedTokens"][order]
    arrays = {"arrival_s": (nanos - nanos[0]) / 1e9, "prompt_len": np.maximum(prompt, 1),
              "output_len": np.maximum(output, 1), "prompt_was_zero": prompt == 0,
              "output_was_zero": output == 0}
    for array in arrays.values():
        array.flags.writeable = False
    return AzureTable(
        sha256=hashlib.sha256(data).hexdigest(), **arrays,
        reordered_rows=int((order != np.arange(len(order))).sum()))


def load_azure(source: str) -> AzureTable:
    """Load a shipped trace (``azure-code``, ``azure-conv``) or an Azure-format CSV file.

    Loaded tables are cached per file version (path, modification time, size)."""
    path = source_path(source)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return _load(path.resolve(), stat.st_mtime_ns, stat.st_size)
