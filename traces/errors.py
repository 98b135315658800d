"""The two kinds of bad input the traces package reports, and the helper that words them.

`TraceError`: a trace folder (or a source file such as an Azure CSV) holds something invalid;
the message names the file, the row (the header is row 1, as a spreadsheet shows it), the
column and the value. `TraceConfigError`: a generator or import parameter is out of range; the
message names the parameter. Both are `ValueError`s, so callers that only know "bad input"
can catch that.
"""
from __future__ import annotations

from typing import Any


class TraceError(ValueError):
    """A trace or source file is missing, unreadable or holds an invalid value."""

    @classmethod
    def at(cls, file: object, row: int, column: str, value: Any, problem: str) -> "TraceError":
        """Error for one cell: ``FILE: row R, column C: PROBLEM, got VALUE``."""
        return cls(f"{file}: row {row}, column {column}: {problem}, got {value!r}")


class TraceConfigError(ValueError):
    """A generator or import parameter is out of range or inconsistent."""


def check(ok: bool, owner: str, field: str, value: Any, expected: str) -> None:
    """Raise `TraceConfigError` naming ``owner.field`` unless ``ok``."""
    if not ok:
        raise TraceConfigError(f"{owner}.{field} must be {expected}, got {value!r}")
