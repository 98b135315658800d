"""The tidy sweep table: one row per (experiment point, SLO scale), metric columns beside it.

Sweeps (``manylora sweep``) write it, the SLO plots read it; docs/internals.md ("Sweep table")
is the contract. Key columns name the point: ``policy, rate, cv, num_adapters, alpha, seed,
slo_scale`` are required, and any other non-metric column (``replicas``, ``router``, ...) is
an extra key. Metric columns are named as :data:`metrics.SUMMARY_COLUMNS`; a table holds any
subset of them. One simulation gives one row per SLO scale, since scaling the SLO needs no new
run: :func:`sweep_rows` computes them from a run's requests.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from manylora.analysis.metrics import SUMMARY_COLUMNS, summarize
from manylora.analysis.slo import SLO
from manylora.analysis.window import Window

KEY_COLUMNS: dict[str, str] = {
    "policy": "text",        # the scheduling configuration's name, e.g. "fcfs" or "abort+lru"
    "rate": "positive",      # mean request rate, requests/s
    "cv": "nonnegative",     # coefficient of variation of inter-arrival gaps (1 = Poisson)
    "num_adapters": "count",
    "alpha": "number",       # adapter popularity exponent (S-LoRA's alpha, or a Zipf exponent)
    "seed": "integer",
    "slo_scale": "positive",  # both SLOs multiplied by this when the metrics were computed
}
# Workloads without these parameters (an imported production trace has no cv or alpha) leave
# them empty; every other key must be set.
MAY_BE_EMPTY = ("rate", "cv", "alpha")
READERS = {".csv": pd.read_csv, ".parquet": pd.read_parquet}


class SweepTableError(ValueError):
    """A sweep table is missing a key column or holds a value that breaks the schema."""


def _bad(path: object, frame: pd.DataFrame, mask: np.ndarray, column: str, why: str) -> None:
    if mask.any():
        i = int(np.flatnonzero(mask)[0])
        value = frame[column].iloc[i]
        value = value.item() if isinstance(value, np.generic) else value
        raise SweepTableError(f"{path} row {i + 2}, column {column}: {value!r} {why}")


def validate_sweep(frame: pd.DataFrame, source: object = "sweep table") -> pd.DataFrame:
    """Check the schema and return the table with typed key and metric columns."""
    missing = [c for c in KEY_COLUMNS if c not in frame.columns]
    if missing:
        raise SweepTableError(f"{source}: missing key column(s) {', '.join(missing)}")
    out = frame.copy()
    out["policy"] = out["policy"].astype(str)
    numeric = [c for c in KEY_COLUMNS if KEY_COLUMNS[c] != "text"]
    numeric += [c for c in SUMMARY_COLUMNS if c in out.columns]
    for column in numeric:
        values = pd.to_numeric(out[column], errors="coerce").to_numpy(dtype=np.float64)
        blank = out[column].isna().to_numpy()
        must_be_set = column in KEY_COLUMNS and column not in MAY_BE_EMPTY
        _bad(source, out, np.isnan(values) & (~blank | must_be_set), column, "is not a number")
        kind = KEY_COLUMNS.get(column)
        if kind in ("integer", "count"):
            _bad(source, out, values != np.round(values), column, "is not an integer")
        if kind in ("positive", "count"):
            _bad(source, out, values <= 0, column, "must be > 0")
        if kind == "nonnegative":
            _bad(source, out, values < 0, column, "must be >= 0")
        out[column] = values.astype(np.int64) if kind in ("integer", "count") else values
    return out


def read_sweep(path: str | Path) -> pd.DataFrame:
    """Read a sweep table from CSV or Parquet and validate it."""
    path = Path(path)
    reader = READERS.get(path.suffix)
    if reader is None:
        raise SweepTableError(f"{path}: a sweep table is .csv or .parquet, got {path.suffix!r}")
    if not path.is_file():
        raise SweepTableError(f"{path}: missing file")
    try:
        frame = reader(path)
    except (ValueError, OSError, ImportError) as exc:
        raise SweepTableError(f"{path}: cannot read ({exc})") from exc
    return validate_sweep(frame, path)


def sweep_rows(requests: pd.DataFrame, point: Mapping[str, Any], slo: SLO = SLO(),
               slo_scales: Sequence[float] = (1.0,), window: Window = Window()) -> pd.DataFrame:
    """Sweep-table rows for one run: ``point``'s keys, then the metrics at each SLO scale."""
    rows = []
    for scale in slo_scales:
        keys = {**point, "slo_scale": float(scale)}
        rows.append({**keys, **summarize(requests, slo.scaled(scale), window).to_dict()})
    return validate_sweep(pd.DataFrame(rows), "sweep rows")


def key_columns(sweep: pd.DataFrame) -> list[str]:
    """The table's key columns: the required ones and every extra non-metric column."""
    metrics = set(SUMMARY_COLUMNS)
    return [c for c in sweep.columns if c not in metrics]


def flat_settings(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A run's scheduler and policy settings (meta.json ``scheduler`` and ``policies``) as
    ``{"policies.queue.queue": "fcfs", ...}``, nested configs flattened with dots."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key in sorted(value):
                walk(f"{prefix}.{key}", value[key])
        else:
            flat[prefix] = value

    for top in ("scheduler", "policies"):
        if top in meta:
            walk(top, meta[top])
    return flat


def policy_labels(metas: Sequence[Mapping[str, Any]]) -> list[str]:
    """One short policy name per run: ``meta["policy"]`` when the writer gave one, else the
    settings in which the runs differ (``queue=fcfs, eviction=lru``), else "default"."""
    flats = [flat_settings(meta) for meta in metas]
    keys = sorted({k for flat in flats for k in flat})
    differing = [k for k in keys if len({repr(flat.get(k)) for flat in flats}) > 1]
    labels = []
    for meta, flat in zip(metas, flats):
        if isinstance(meta.get("policy"), str):
            labels.append(meta["policy"])
        elif differing:
            labels.append(", ".join(f"{k.rsplit('.', 1)[-1]}={flat.get(k)}" for k in differing))
        else:
            labels.append("default")
    return labels


def point_from_meta(meta: Mapping[str, Any], where: object = "meta.json",
                    policy: str | None = None) -> dict[str, Any]:
    """Sweep keys of a run from its meta.json: the workload from the trace generator's
    parameters (docs/internals.md); the policy as given, else :func:`policy_labels` of the
    run alone."""
    trace = meta.get("trace") if isinstance(meta.get("trace"), Mapping) else {}
    params = trace.get("params") if isinstance(trace.get("params"), Mapping) else {}
    arrivals = params.get("arrivals") if isinstance(params.get("arrivals"), Mapping) else {}
    popularity = (params.get("popularity") if isinstance(params.get("popularity"), Mapping)
                  else {})
    if "num_adapters" not in params:
        raise SweepTableError(f"{where}: meta.json has no trace.params.num_adapters, so the "
                              f"run cannot be placed in a sweep; use a sweep table instead")
    # A Poisson process has cv 1 by definition, whatever its parameters are called.
    cv = arrivals.get("cv", 1.0 if arrivals.get("name") == "poisson" else np.nan)
    # S-LoRA's popularity calls its exponent alpha, a Zipf law calls it exponent.
    alpha = popularity.get("alpha", popularity.get("exponent", np.nan))
    policy = policy if policy is not None else policy_labels([meta])[0]
    return {"policy": policy, "rate": arrivals.get("rate", np.nan), "cv": cv,
            "num_adapters": params["num_adapters"], "alpha": alpha,
            "seed": trace.get("seed", meta.get("seed", 0))}
