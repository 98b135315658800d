"""A sweep's output folder: one file per finished point, written whole or not at all.

Layout of ``DIR``::

    points/<point_id>.json   a finished point: its keys, its sweep-table rows, its wall time
    runs/<point_id>/         its run folder, when the sweep keeps runs
    results.csv              the sweep table (and results.parquet with pyarrow)
    points.csv               point id, keys and wall time per point, in grid order
    plots/                   the figures the sweep file asks for

A point file is the mark of a finished point. It is written to a temporary name in the same
folder and renamed into place after the point's run folder (if any) is complete, so a sweep
killed at any moment leaves every point either finished or absent; a rerun finds finished
points by id and skips them. Temporary leftovers of a killed run are removed on the next one.
Floats in point files are JSON numbers (exact round trip); undefined metrics are null.
"""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from manylora.engine.run_folder import RUN_FILES
from manylora.traces.atomic_io import atomic_folder, atomic_write_text, is_temporary

POINT_SUFFIX = ".json"


class SweepStoreError(OSError):
    """A sweep folder cannot be used (not a folder, a point file unreadable, ...)."""


@dataclass
class PointResult:
    """What a worker returns for one point."""

    point_id: str
    index: int
    rows: list[dict[str, Any]]            # sweep-table rows, one per SLO scale
    wall_s: float                          # seconds the worker spent on the point
    run_files: dict[str, bytes] = field(default_factory=dict)  # run folder, if kept


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):             # numpy scalars
        return _jsonable(value.item())
    return value


class SweepStore:
    """The point files and run folders under one sweep folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise SweepStoreError(f"{self.root}: exists and is not a folder")
        self.points = self.root / "points"
        self.runs = self.root / "runs"

    def prepare(self) -> None:
        """Create the folders and delete what a killed run left half-written."""
        try:
            self.points.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SweepStoreError(f"{self.points}: cannot create folder ({exc.strerror})"
                                  ) from None
        self._remove_leftovers()

    def point_path(self, point_id: str) -> Path:
        return self.points / f"{point_id}{POINT_SUFFIX}"

    def run_path(self, point_id: str) -> Path:
        return self.runs / point_id

    def _remove_leftovers(self) -> None:
        for folder in (self.points, self.runs):
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if is_temporary(path.name):
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)

    def finished(self, point_ids: Iterable[str], need_runs: bool = False) -> set[str]:
        """The ids among ``point_ids`` whose point file exists (and run folder, if needed)."""
        present = {p.name[:-len(POINT_SUFFIX)] for p in self.points.glob(f"*{POINT_SUFFIX}")
                   if not p.name.startswith(".")}
        done = present & set(point_ids)
        if need_runs:
            done = {i for i in done if self.run_path(i).is_dir()}
        return done

    def write(self, result: PointResult) -> Path:
        """Store a finished point: its run folder first, then the point file."""
        if result.run_files:
            self._write_run(result.point_id, result.run_files)
        rows = [{k: _jsonable(v) for k, v in row.items()} for row in result.rows]
        text = json.dumps({"point_id": result.point_id, "index": result.index,
                           "wall_s": result.wall_s, "rows": rows}, allow_nan=False)
        return atomic_write_text(self.point_path(result.point_id), text + "\n")

    def _write_run(self, point_id: str, files: Mapping[str, bytes]) -> None:
        with atomic_folder(self.run_path(point_id), RUN_FILES.__contains__,
                           what="a run folder", error=SweepStoreError) as staged:
            for name, data in files.items():
                (staged / name).write_bytes(data)

    def read(self, point_id: str) -> dict[str, Any]:
        path = self.point_path(point_id)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SweepStoreError(f"{path}: unreadable point file ({exc}); delete it to "
                                  f"rerun the point") from None
        if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
            raise SweepStoreError(f"{path}: not a point file (no rows); delete it to rerun "
                                  f"the point")
        return data

    def rows(self, point_ids: Iterable[str]) -> pd.DataFrame:
        """The stored rows of these points, in the order given."""
        rows = [row for i in point_ids for row in self.read(i)["rows"]]
        return pd.DataFrame(rows)
