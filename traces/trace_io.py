"""Reading and writing trace folders (requests.csv, adapters.csv, meta.json).

Writing is byte-for-byte reproducible: ``arrival_s`` always has 6 decimals (microseconds),
``alpha`` is written as Python's shortest round-trip float, and meta.json has sorted keys. The
folder is staged beside the target and renamed into place (atomic_io.py), so an interrupted
write leaves the old folder or the new one, never half of one. requests.csv is
formatted in vectorised chunks (one ``%`` format over a chunk of rows), about 1 s per million
requests.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import IO

import numpy as np
from tqdm import tqdm

from manylora.traces.atomic_io import atomic_folder
from manylora.traces.errors import TraceError
from manylora.traces.tables import read_bytes, read_table
from manylora.traces.trace import Trace
from manylora.traces.validate import ADAPTER_COLUMNS, REQUEST_COLUMNS

TRACE_FILES: tuple[str, ...] = ("requests.csv", "adapters.csv", "meta.json")
MICROS = 1_000_000
_CHUNK_ROWS = 100_000
_ROW_FORMAT = "%d,%d.%06d,%d,%d,%d\n"


def read_trace(folder: str | os.PathLike) -> Trace:
    """Read and validate a trace folder; any problem raises `TraceError` naming the file,
    row, column and value."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TraceError(f"{folder}: no such trace folder" if not folder.exists()
                         else f"{folder}: not a folder")
    requests = read_table(folder / "requests.csv")
    adapters = read_table(folder / "adapters.csv")
    meta_path = folder / "meta.json"
    try:
        meta = json.loads(read_bytes(meta_path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TraceError(f"{meta_path}: not valid JSON: {exc}") from None
    return Trace(requests, adapters, meta, source=str(folder))


def _write_requests(trace: Trace, out: IO[str], progress: bool) -> None:
    out.write(",".join(REQUEST_COLUMNS) + "\n")
    micros = np.round(trace.column("arrival_s") * MICROS).astype(np.int64)
    seconds, fraction = np.divmod(micros, MICROS)
    table = np.stack([trace.column("request_id"), seconds, fraction, trace.column("adapter_id"),
                      trace.column("prompt_len"), trace.column("output_len")], axis=1)  # [n, 6]
    n = len(table)
    with tqdm(total=n, unit="req", desc="writing requests.csv", disable=not progress,
              leave=False) as bar:
        for start in range(0, n, _CHUNK_ROWS):
            chunk = table[start:start + _CHUNK_ROWS]
            out.write((_ROW_FORMAT * len(chunk)) % tuple(chunk.ravel().tolist()))
            bar.update(len(chunk))


def _write_adapters(trace: Trace, out: IO[str]) -> None:
    adapters = trace.adapters
    columns = list(ADAPTER_COLUMNS) + (["path"] if "path" in adapters.columns else [])
    writer = csv.writer(out, lineterminator="\n")  # quotes a path that holds a comma
    writer.writerow(columns)
    # repr() is the shortest text that reads back to the same float, on every platform.
    cells = [adapters["adapter_id"].tolist(), adapters["rank"].tolist(),
             [repr(a) for a in adapters["alpha"].tolist()], adapters["targets"].tolist()]
    if "path" in adapters.columns:
        cells.append(adapters["path"].tolist())
    writer.writerows(zip(*cells))


def write_trace(trace: Trace, folder: str | os.PathLike, *, progress: bool = False) -> Path:
    """Write ``trace`` as a folder (replacing an existing trace folder there); returns it."""
    target = Path(folder)
    with atomic_folder(target, TRACE_FILES.__contains__, what="a trace folder",
                       error=TraceError) as staged:
        with open(staged / "requests.csv", "w", encoding="utf-8", newline="\n") as out:
            _write_requests(trace, out, progress)
        with open(staged / "adapters.csv", "w", encoding="utf-8", newline="\n") as out:
            _write_adapters(trace, out)
        with open(staged / "meta.json", "w", encoding="utf-8", newline="\n") as out:
            out.write(json.dumps(trace.meta, indent=2, sort_keys=True) + "\n")
    return target
