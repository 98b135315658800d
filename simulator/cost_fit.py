"""Least-squares machinery of the fitted cost model: design matrices, the weighted fit over
grid points and serving steps, and cross-validation.

Two kinds of measurement (fitted_cost_model.py says where they come from):

- grid points count by relative error (a 1 ms decode step weighs as much as a 1 s prefill);
- serving steps count by absolute error over their probe's mean step, so long steps weigh by
  the time they take and a probe's busy time comes out right; every probe weighs the same.

``weighted_fit`` minimises ``(1 - w) x`` the grid's mean squared error ``+ w x`` the probes'.
Serving steps also pay what grid points never see (scheduling, completion, the replay loop
around each step): the form's per-step constants get a second, non-negative copy that only
serving rows carry, the *serving overhead*, and the fitted model is the grid part plus that
overhead, since every simulated step stands for a serving step.

Cross-validation splits grid points into random folds and each probe's steps into as many
contiguous blocks (neighbouring steps are alike, so random folds would leak); fold j holds out
grid fold j and block j of every probe.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.optimize import nnls

from manylora.simulator.cost_base import step_columns
from manylora.simulator.cost_terms import COLUMNS, form_terms, term_columns, term_gates

_STEP = COLUMNS.index("step")


def design_matrix(form: str, shapes: np.ndarray) -> np.ndarray:
    """Term values [n, num_terms] of ``form`` for step shapes [n, fields]."""
    s = step_columns(shapes)
    n = len(s.prefill_tokens)
    columns, gates = term_columns(s), term_gates(s, np.minimum)
    return np.stack([np.broadcast_to(np.asarray(gates[t.gate] * columns[t.column],
                                                dtype=np.float64), (n,))
                     for t in form_terms(form).values()], axis=1)


def overhead_terms(form: str) -> np.ndarray:
    """Indexes of ``form``'s per-step constants (the terms a serving overhead adds to)."""
    return np.array([i for i, t in enumerate(form_terms(form).values()) if t.column == _STEP],
                    dtype=np.intp)


def _nnls(rows: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Non-negative c [k] minimising |rows @ c - target|, columns scaled for conditioning."""
    scale = np.max(np.abs(rows), axis=0)  # [k]
    scale[scale == 0.0] = 1.0
    solution, _ = nnls(rows / scale, target)
    return solution / scale


def fit_coefficients(design: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """Non-negative coefficients [k] minimising the relative error of design @ c vs seconds."""
    return _nnls(design / seconds[:, None], np.ones_like(seconds))


class ServingSteps(NamedTuple):
    """Serving steps in fitting form."""

    design: np.ndarray    # [n, k] the form's terms
    seconds: np.ndarray   # [n] measured, blocking adapter copies taken off
    probe: np.ndarray     # [n] index of the probe each step belongs to
    block: np.ndarray     # [n] contiguous block of its probe (cross-validation)

    def subset(self, keep: np.ndarray) -> ServingSteps:
        return ServingSteps(*(column[keep] for column in self))


def serving_steps(design: np.ndarray, seconds: np.ndarray, probe: np.ndarray,
                  folds: int) -> ServingSteps:
    """Steps in probe order, each probe's split into ``folds`` contiguous blocks."""
    block = np.empty(len(probe), dtype=np.intp)
    for p in np.unique(probe):
        mine = np.flatnonzero(probe == p)
        block[mine] = np.arange(len(mine)) * folds // len(mine)
    return ServingSteps(design, seconds, probe, block)


class Fit(NamedTuple):
    coefficients: np.ndarray  # [k] grid part + serving overhead: what the model uses
    grid: np.ndarray          # [k] the grid part alone (what a grid point costs)
    overhead: np.ndarray      # [len(overhead_terms)] the serving overhead alone


def weighted_fit(design: np.ndarray, seconds: np.ndarray, serving: ServingSteps | None,
                 weight: float, overhead: np.ndarray) -> Fit:
    """The fit over grid points ``design`` [n, k] / ``seconds`` [n] and, with weight > 0,
    ``serving`` (module docstring); ``overhead``: the form's per-step constant terms."""
    if serving is None or weight == 0.0 or not len(serving.seconds):
        grid = fit_coefficients(design, seconds)
        return Fit(grid, grid, np.zeros(len(overhead)))
    grid = math.sqrt((1.0 - weight) / len(seconds)) / seconds  # [n]
    rows = [np.hstack([design * grid[:, None], np.zeros((len(seconds), len(overhead)))])]
    target = [grid * seconds]
    probes = np.unique(serving.probe)
    for p in probes:
        mine = serving.probe == p
        scale = math.sqrt(weight / (len(probes) * mine.sum())) / np.mean(serving.seconds[mine])
        d = serving.design[mine]
        rows.append(np.hstack([d, d[:, overhead]]) * scale)
        target.append(serving.seconds[mine] * scale)
    solution = _nnls(np.vstack(rows), np.concatenate(target))
    k = design.shape[1]
    coefficients = solution[:k].copy()
    coefficients[overhead] += solution[k:]
    return Fit(coefficients, solution[:k], solution[k:])


def errors_pct(predicted: np.ndarray, seconds: np.ndarray) -> dict[str, float]:
    ape = np.abs(predicted - seconds) / seconds * 100.0
    return {"mape_pct": float(np.mean(ape)), "p90_ape_pct": float(np.percentile(ape, 90)),
            "max_ape_pct": float(np.max(ape))}


def busy_errors_pct(predicted: np.ndarray, seconds: np.ndarray) -> dict[str, float]:
    """Busy-time bias (predicted total / measured total - 1) and time-weighted absolute error
    (sum |error| / measured total), percent."""
    total = float(np.sum(seconds))
    return {"busy_bias_pct": (float(np.sum(predicted)) / total - 1.0) * 100.0,
            "wape_pct": float(np.sum(np.abs(predicted - seconds))) / total * 100.0}


def fold_indices(n: int, folds: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``folds`` disjoint random index sets covering range(n)."""
    return np.array_split(rng.permutation(n), folds)


def held_out_predictions(design: np.ndarray, seconds: np.ndarray, folds: list[np.ndarray],
                         serving: ServingSteps | None, weight: float, overhead: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray | None]:
    """Held-out predictions of every grid point [n] and serving step [m] (None without
    serving steps): fold j's fit leaves out grid fold j and block j of every probe."""
    grid = np.empty_like(seconds)
    steps = np.empty_like(serving.seconds) if serving is not None else None
    everything = np.arange(len(seconds))
    for j, held_out in enumerate(folds):
        train = np.setdiff1d(everything, held_out)
        fit = weighted_fit(design[train], seconds[train],
                           serving.subset(serving.block != j) if serving is not None else None,
                           weight, overhead)
        grid[held_out] = design[held_out] @ fit.grid
        if serving is not None:
            mine = serving.block == j
            steps[mine] = serving.design[mine] @ fit.coefficients
    return grid, steps


def cross_validated_predictions(design: np.ndarray, seconds: np.ndarray,
                                folds: list[np.ndarray]) -> np.ndarray:
    """Each grid point's prediction [n] by a grid-only fit on the folds that do not hold it."""
    return held_out_predictions(design, seconds, folds, None, 0.0,
                                np.zeros(0, dtype=np.intp))[0]
