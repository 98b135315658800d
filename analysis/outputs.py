"""Analysis tables as CSV: one fixed float format, written whole or not at all.

CSV floats use one fixed format so that the same inputs give byte-identical tables; the file
is written through ``manylora.traces.atomic_io`` (a temporary name beside it, then a rename),
so an interrupted command leaves the previous table or the new one, never half of one.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from manylora.traces.atomic_io import atomic_write_text

CSV_FLOAT_FORMAT = "%.9g"


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """``frame`` as CSV (no index, fixed float format), written atomically."""
    return atomic_write_text(path, frame.to_csv(index=False, float_format=CSV_FLOAT_FORMAT,
                                                lineterminator="\n"))
