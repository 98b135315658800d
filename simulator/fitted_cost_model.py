"""The fitted cost model (the default): step time as a non-negative sum of shape terms.

Fitting (``fit_profile``): the target of each grid point is the mean of its repeats: a run's
duration is the sum of its step times, so the expected step time (not the median, which a
right-skewed busy machine pulls below it) is what a simulation must reproduce. Every form in
cost_terms.FORMS is fitted by non-negative least squares on relative error (a 1 ms decode step
counts as much as a 1 s prefill), scored by k-fold cross-validation (mean and 90th-percentile
absolute percentage error over held-out points), and the form with the lowest mean error is
refitted on all points. Adapter load
times are fitted per tier from the profile's load timings (adapter_load_model.py).

The fit is stored in the profile; ``FittedCostModel.from_profile`` uses the stored
coefficients when present, so a profile gives the same simulation on every machine.
Blocking adapter copies listed in a step's shape (``adapter_loads``, ``adapter_load_bytes``)
add their host-tier load time to the step, as they do on the engine.
"""
from __future__ import annotations

import math
from typing import Any, Callable, ClassVar, Mapping

import numpy as np
from scipy.optimize import nnls

from manylora.engine.step_shape import StepShape
from manylora.simulator.adapter_load_model import AdapterLoadModel, fit_tier
from manylora.simulator.cost_base import step_columns
from manylora.simulator.cost_terms import (FORMS, UnknownFormError, form_terms, term_columns,
                                           term_gates)
from manylora.simulator.profile_file import Profile, ProfileError

DEFAULT_FOLDS = 5
DEFAULT_SEED = 0


def design_matrix(form: str, shapes: np.ndarray) -> np.ndarray:
    """Term values [n, num_terms] of ``form`` for step shapes [n, fields]."""
    s = step_columns(shapes)
    n = len(s.prefill_tokens)
    columns, gates = term_columns(s), term_gates(s, np.minimum)
    return np.stack([np.broadcast_to(np.asarray(gates[t.gate] * columns[t.column],
                                                dtype=np.float64), (n,))
                     for t in form_terms(form).values()], axis=1)


def fit_coefficients(design: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """Non-negative coefficients [k] minimising the relative error of design @ c vs seconds."""
    scale = np.max(np.abs(design), axis=0)  # [k]; columns scaled to 1 for conditioning
    scale[scale == 0.0] = 1.0
    solution, _ = nnls(design / scale / seconds[:, None], np.ones_like(seconds))
    return solution / scale


def errors_pct(predicted: np.ndarray, seconds: np.ndarray) -> dict[str, float]:
    ape = np.abs(predicted - seconds) / seconds * 100.0
    return {"mape_pct": float(np.mean(ape)), "p90_ape_pct": float(np.percentile(ape, 90)),
            "max_ape_pct": float(np.max(ape))}


def fold_indices(n: int, folds: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``folds`` disjoint random index sets covering range(n)."""
    return np.array_split(rng.permutation(n), folds)


def cross_validated_predictions(design: np.ndarray, seconds: np.ndarray,
                                folds: list[np.ndarray]) -> np.ndarray:
    """Each point's prediction [n] by a fit on the folds that do not hold it."""
    predicted = np.empty_like(seconds)
    everything = np.arange(len(seconds))
    for held_out in folds:
        train = np.setdiff1d(everything, held_out)
        predicted[held_out] = design[held_out] @ fit_coefficients(design[train], seconds[train])
    return predicted


def cross_validate(design: np.ndarray, seconds: np.ndarray,
                   folds: list[np.ndarray]) -> dict[str, float]:
    """Held-out errors (percent): mean, 90th percentile and largest."""
    return errors_pct(cross_validated_predictions(design, seconds, folds), seconds)


def profile_arrays(profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """Step shapes [n, fields] and the mean of each one's repeats [n], in seconds."""
    shapes = np.array([s.shape for s in profile.steps], dtype=np.float64)
    seconds = np.array([np.mean(s.duration_s) for s in profile.steps])
    return shapes, seconds


def fit_profile(profile: Profile, folds: int = DEFAULT_FOLDS,
                seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Fit every form, keep the best by cross-validated MAPE; returns the profile's ``fit``."""
    shapes, seconds = profile_arrays(profile)
    folds = min(folds, len(seconds))
    if folds < 2:
        raise ProfileError("a profile needs at least 2 step measurements to cross-validate")
    # The same folds for every form, so that forms are compared on the same held-out points.
    split = fold_indices(len(seconds), folds, np.random.default_rng(seed))
    cv = {form: cross_validate(design_matrix(form, shapes), seconds, split) for form in FORMS}
    best = min(FORMS, key=lambda f: (cv[f]["mape_pct"], len(FORMS[f])))
    design = design_matrix(best, shapes)
    coef = fit_coefficients(design, seconds)
    loads = AdapterLoadModel(
        host=fit_tier([a.bytes for a in profile.adapter_loads],
                      [float(np.mean(a.host_to_pool_s)) for a in profile.adapter_loads]),
        disk=fit_tier([a.bytes for a in profile.adapter_loads],
                      [float(np.mean(a.disk_to_host_s)) for a in profile.adapter_loads]))
    return {
        "form": best,
        "coefficients": {name: float(c) for name, c in zip(FORMS[best], coef)},
        "adapter_loads": loads.to_dict(),
        "cv": {"folds": folds, "seed": seed, "points": len(seconds),
               "forms": {f: cv[f] for f in FORMS}},
        "in_sample": errors_pct(design @ coef, seconds),
    }


class FittedCostModel:
    """sum(c_i * term_i(shape)) + blocking host->pool copies, from a profile's fit."""

    deterministic: ClassVar[bool] = True  # a function of the shape: blocks may be costed at once

    def __init__(self, form: str, coefficients: Mapping[str, float], loads: AdapterLoadModel,
                 source: Mapping[str, Any] | None = None) -> None:
        terms = form_terms(form)
        if set(coefficients) != set(terms):
            raise ValueError(f"coefficients of form {form!r} must be exactly "
                             f"{', '.join(terms)}; got {', '.join(coefficients)}")
        for name, c in coefficients.items():
            if not (0.0 <= c < math.inf):
                raise ValueError(f"coefficient {name!r} must be finite and >= 0, got {c!r}")
        self.form, self.coefficients, self.loads = form, dict(coefficients), loads
        self.source = dict(source or {})  # where the profile came from, for meta.json
        # (coefficient, gate, column); zero terms are skipped identically by both paths.
        self._terms: tuple[tuple[float, int, int], ...] = tuple(
            (float(coefficients[n]), t.gate, t.column) for n, t in terms.items()
            if coefficients[n] > 0.0)

    @classmethod
    def from_profile(cls, profile: Profile,
                     source: Mapping[str, Any] | None = None) -> FittedCostModel:
        fit = profile.fit if profile.fit is not None else fit_profile(profile)
        where = f"{(source or {}).get('file', 'profile')}: field 'fit'"
        try:
            loads = AdapterLoadModel.from_dict(fit["adapter_loads"])
            return cls(fit["form"], fit["coefficients"], loads, source)
        except (KeyError, TypeError, ValueError, UnknownFormError) as exc:
            raise ProfileError(f"{where}: {exc!s}" if not isinstance(exc, KeyError)
                               else f"{where}: missing {exc}") from None

    def _evaluate(self, s: StepShape, zero: Any, minimum: Callable) -> Any:
        columns, gates = term_columns(s), term_gates(s, minimum)
        t = zero
        for c, gate, column in self._terms:
            t = t + c * (gates[gate] * columns[column])
        host = self.loads.host
        return t + s.adapter_loads * host.latency_s + s.adapter_load_bytes / host.bytes_per_s

    def step_times(self, shapes: np.ndarray) -> np.ndarray:
        s = step_columns(shapes)
        return self._evaluate(s, np.zeros(len(s.prefill_tokens)), np.minimum)

    def step_time(self, shape: StepShape) -> float:
        return float(self._evaluate(shape, 0.0, min))

    def adapter_load_time(self, num_bytes: int, tier: str) -> float:
        return self.loads.time(num_bytes, tier)

    def describe(self) -> dict[str, Any]:
        return {"name": "fitted", "profile": self.source, "form": self.form,
                "coefficients": dict(self.coefficients), "adapter_loads": self.loads.to_dict()}
