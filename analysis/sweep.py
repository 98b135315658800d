"""Running a sweep: expand the grid, skip finished points, run the rest, write the table.

``run_sweep(config, out_dir, backend)`` is what ``manylora sweep`` calls:

1. expand the sweep file into validated point tasks (sweep_grid.py), each with a stable id;
2. drop the points whose result is already stored under ``out_dir`` (sweep_store.py), so an
   interrupted sweep resumes where it stopped;
3. run the others on the backend (sweep_backends.py), storing each result as it arrives;
4. gather every point's rows, in grid order, into the sweep table (``results.csv``, plus
   ``results.parquet`` when pyarrow is installed) and ``points.csv``, and draw the figures the
   sweep file asks for with ``manylora plot``'s renderer.

The table depends only on the grid: rows are ordered by grid position, never by completion,
so any backend and worker count write the same bytes.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
from tqdm import tqdm

from manylora.analysis.outputs import write_csv
from manylora.analysis.plot_kinds import render_plot
from manylora.analysis.sweep_backends import Backend, PointFunction
from manylora.analysis.sweep_config import SweepConfig
from manylora.analysis.sweep_grid import PointTask
from manylora.analysis.sweep_store import SweepStore
from manylora.analysis.sweep_table import KEY_COLUMNS, validate_sweep
from manylora.traces.atomic_io import atomic_file

TABLE_NAME = "results"
HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None


@dataclass(frozen=True)
class SweepOutcome:
    """What a sweep run did and wrote."""

    out_dir: Path
    points: int                 # points in the grid
    executed: int               # run by this call
    skipped: int                # found finished
    tables: tuple[Path, ...]    # results.csv (and results.parquet)
    figures: tuple[Path, ...]


def results_table(store: SweepStore, tasks: Sequence[PointTask]) -> pd.DataFrame:
    """The sweep table of finished points ``tasks``, validated, in grid order."""
    ordered = sorted(tasks, key=lambda t: t.index)
    table = store.rows(t.point_id for t in ordered)
    keys = [c for c in (*KEY_COLUMNS, *ordered[0].keys) if c in table.columns]
    keys = list(dict.fromkeys(keys))
    table = table[keys + [c for c in table.columns if c not in keys]]
    return validate_sweep(table, "sweep results")


def _write_parquet(table: pd.DataFrame, path: Path) -> Path:
    with atomic_file(path) as staged:
        table.to_parquet(staged, index=False)
    return path


def _points_index(store: SweepStore, tasks: Sequence[PointTask]) -> pd.DataFrame:
    rows = []
    for task in sorted(tasks, key=lambda t: t.index):
        rows.append({"point_id": task.point_id, **task.keys,
                     "wall_s": store.read(task.point_id)["wall_s"]})
    return pd.DataFrame(rows)


def write_outputs(config: SweepConfig, store: SweepStore,
                  tasks: Sequence[PointTask]) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """results.csv (+ .parquet), points.csv and the figures; returns (tables, figures)."""
    table = results_table(store, tasks)
    csv = write_csv(table, store.root / f"{TABLE_NAME}.csv")
    tables = [csv]
    if HAS_PYARROW:
        tables.append(_write_parquet(table, store.root / f"{TABLE_NAME}.parquet"))
    write_csv(_points_index(store, tasks), store.root / "points.csv")
    figures: list[Path] = []
    for plot in config.plots:
        for path in render_plot(plot.figure, store.root / "plots", sweep=str(csv),
                                metric=plot.metric, where=plot.where, x=plot.x):
            target = path.with_name(plot.file_name + path.suffix)
            if target != path:
                os.replace(path, target)
            figures.append(target)
    return tuple(tables), tuple(figures)


def run_sweep(config: SweepConfig, tasks: Sequence[PointTask], out_dir: str | Path,
              backend: Backend, point_fn: PointFunction,
              progress: bool = False,
              on_result: Callable[[int], None] | None = None) -> SweepOutcome:
    """Run the unfinished ``tasks`` (from :func:`sweep_grid.expand_grid`) and write the
    outputs. ``on_result(n)`` is called after each stored point with the count so far."""
    store = SweepStore(out_dir)
    store.prepare()
    done = store.finished((t.point_id for t in tasks), need_runs=config.keep_runs)
    pending = [t for t in tasks if t.point_id not in done]
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(pending), unit="point",
               desc=f"sweep {config.name}", disable=not progress, dynamic_ncols=True)
    executed = 0
    try:
        for result in backend.run(point_fn, pending):
            store.write(result)
            executed += 1
            bar.update(1)
            if on_result is not None:
                on_result(executed)
    finally:
        bar.close()
    tables, figures = write_outputs(config, store, tasks)
    return SweepOutcome(store.root, len(tasks), executed, len(tasks) - len(pending), tables,
                        figures)
