"""CSV tables: reading one into a DataFrame and turning its columns into checked arrays.

Everything here is vectorised: a column is parsed and checked in one pass, and the row of the
first bad cell is located only when the column is known to hold one. Rows are numbered as a
spreadsheet shows them (the header is row 1, the first data row is row 2), and errors name the
file, row, column and value (`TraceError`).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from manylora.traces.errors import TraceError

_INT64_LIMIT = 2.0 ** 63


def spreadsheet_row(index: int) -> int:
    """Row number a spreadsheet shows for data row ``index`` (0-based): the header is row 1."""
    return int(index) + 2


def read_bytes(path: Path) -> bytes:
    """A file's bytes; a missing or unreadable file raises `TraceError` naming it."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise TraceError(f"{path}: is a folder, expected a file") from None
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror or exc}") from None


def read_table(path: Path, data: bytes | None = None) -> pd.DataFrame:
    """Parse a CSV file (or its already read ``data``) with header names stripped of spaces.

    Only empty cells count as missing (no "NA" guessing) and blank lines are kept as rows of
    empty cells, so that row numbers in errors match the file.
    """
    if data is None:
        data = read_bytes(path)
    try:
        frame = pd.read_csv(io.BytesIO(data), keep_default_na=False, na_values=[""],
                            skip_blank_lines=False, skipinitialspace=True, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise TraceError(f"{path}: row 1: the file is empty, expected a header row") from None
    except pd.errors.ParserError as exc:
        raise TraceError(f"{path}: not a valid CSV table: {exc}".rstrip()) from None
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def check_columns(frame: pd.DataFrame, path: object, required: Sequence[str],
                  optional: Sequence[str] = (), allow_unknown: bool = False) -> None:
    """The header must hold every ``required`` column and nothing unexpected."""
    for column in required:
        if column not in frame.columns:
            raise TraceError(f"{path}: row 1: missing column {column!r}; expected "
                             f"{', '.join(list(required) + [f'[{c}]' for c in optional])}")
    known = set(required) | set(optional)
    seen: set[str] = set()
    for column in frame.columns:
        if column in seen:
            raise TraceError(f"{path}: row 1: column {column!r} appears twice")
        seen.add(column)
        if column not in known and not allow_unknown:
            raise TraceError(f"{path}: row 1: unknown column {column!r}; expected "
                             f"{', '.join(list(required) + [f'[{c}]' for c in optional])}")


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def numeric_column(frame: pd.DataFrame, column: str, path: object, *,
                   integer: bool) -> np.ndarray:
    """A column as int64 (``integer``) or float64 ``[rows]``; a non-numeric, empty, infinite
    or (for ``integer``) fractional cell raises `TraceError` naming its row."""
    series = frame[column]
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        parsed = pd.to_numeric(series, errors="coerce")
        bad = (parsed.isna() & series.notna()).to_numpy()
        if pd.api.types.is_bool_dtype(series):
            bad = np.ones(len(series), dtype=bool)
        if bad.any():
            i = _first(bad)
            raise TraceError.at(path, spreadsheet_row(i), column, series.iloc[i], "not a number")
        series = parsed
    if pd.api.types.is_signed_integer_dtype(series) and series.dtype.itemsize == 8:
        return series.to_numpy(dtype=np.int64) if integer else series.to_numpy(np.float64)
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(values)
    if not finite.all():
        i = _first(~finite)
        problem = "empty cell" if np.isnan(values[i]) else "not a finite number"
        raise TraceError.at(path, spreadsheet_row(i), column,
                            "" if np.isnan(values[i]) else values[i], problem)
    if not integer:
        return values
    whole = (values == np.floor(values)) & (np.abs(values) < _INT64_LIMIT)
    if not whole.all():
        i = _first(~whole)
        raise TraceError.at(path, spreadsheet_row(i), column, values[i], "not a whole number")
    return values.astype(np.int64)


def check_min(values: np.ndarray, minimum: float, path: object, column: str) -> None:
    """Every value must be >= ``minimum``."""
    low = values < minimum
    if low.any():
        i = _first(low)
        raise TraceError.at(path, spreadsheet_row(i), column, values[i].item(),
                            f"must be >= {minimum:g}")


def text_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column as Python strings, empty cells as ``""``, object ``[rows]``."""
    values = frame[column].astype(object)
    return values.where(values.notna(), "").map(str).to_numpy(dtype=object)
