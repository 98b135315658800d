"""Writing output files whole or not at all: a temporary name in the same folder, then rename.

An interrupted command therefore leaves either the previous file or the new one, never half of
one (docs/internals.md, "The command line"). CSV floats use one fixed format so that the same
inputs give byte-identical tables.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

CSV_FLOAT_FORMAT = "%.9g"


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """``frame`` as CSV (no index, fixed float format), written atomically."""
    return atomic_write_text(path, frame.to_csv(index=False, float_format=CSV_FLOAT_FORMAT,
                                                lineterminator="\n"))
