"""The fitted cost model (the default): step time as a non-negative sum of shape terms.

Fitting (``fit_profile``; the least squares are in cost_fit.py) uses two kinds of measurement:

- grid points (the profiler's synthetic batches): the target of each is the mean of its
  repeats, since a run's duration is a sum of step times (the expected step time, not the
  median a right-skewed busy machine pulls below it, is what a simulation must reproduce);
- serving steps (the profiler's short real replays, when the profile has them): every step
  with its tiled duration, blocking adapter copies taken off (the model adds them back).
  When the probes timed speed anchors, each probe's durations are first divided by how much
  slower than the probes' mean its anchor passes ran (``Serving.probe_speeds``, stored as
  ``probe_speed``): a shared machine drifts by a few percent between 8-second probes, and
  without this a probe's drift became part of the model's cost for that probe's batches (the
  0.9 probe's anchor read 3-5% slower than the probes' mean in three validate profiles). The
  model then prices steps at the one speed the anchors' reference stands for, the one
  validate rescales each replay's simulation from.

Each candidate, a form of cost_terms.FORMS and a share ``w`` of the objective given to the
serving steps (SERVING_WEIGHTS; only w = 0 without them), is fitted by non-negative least
squares and scored by cross-validation: the mean, 90th-percentile and largest absolute
percentage error over held-out grid points and, with serving steps, each probe's busy-time
bias over its held-out steps (predicted over measured total, minus 1), which is what
continuous batching amplifies. The best candidate has the smallest RMS of those biases (the
smallest grid error without serving steps) and is refitted on everything. Adapter load times
are fitted per tier from the profile's load timings (adapter_load_model.py).

The fit is stored in the profile; ``FittedCostModel.from_profile`` uses the stored
coefficients when present, so a profile gives the same simulation on every machine.
Blocking adapter copies listed in a step's shape (``adapter_loads``, ``adapter_load_bytes``)
add their host-tier load time to the step, as they do on the engine.
"""
from __future__ import annotations

import math
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from manylora.engine.step_shape import STEP_SHAPE_FIELDS, StepShape
from manylora.simulator.adapter_load_model import AdapterLoadModel, fit_tier
from manylora.simulator.cost_base import step_columns
from manylora.simulator.cost_fit import (ServingSteps, busy_errors_pct, design_matrix,
                                         errors_pct, fold_indices, held_out_predictions,
                                         overhead_terms, serving_steps, weighted_fit)
from manylora.simulator.cost_terms import (FORMS, UnknownFormError, form_terms, term_columns,
                                           term_gates)
from manylora.simulator.profile_file import Profile, ProfileError, Serving

DEFAULT_FOLDS = 5
DEFAULT_SEED = 0
SERVING_WEIGHTS = (0.0, 0.5, 0.9)  # share of the fit objective given to serving steps
_LOADS = STEP_SHAPE_FIELDS.index("adapter_loads"), STEP_SHAPE_FIELDS.index("adapter_load_bytes")


def profile_arrays(profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """Step shapes [n, fields] and the mean of each one's repeats [n], in seconds."""
    shapes = np.array([s.shape for s in profile.steps], dtype=np.float64)
    seconds = np.array([np.mean(s.duration_s) for s in profile.steps])
    return shapes, seconds


def _load_model(profile: Profile) -> AdapterLoadModel:
    return AdapterLoadModel(
        host=fit_tier([a.bytes for a in profile.adapter_loads],
                      [float(np.mean(a.host_to_pool_s)) for a in profile.adapter_loads]),
        disk=fit_tier([a.bytes for a in profile.adapter_loads],
                      [float(np.mean(a.disk_to_host_s)) for a in profile.adapter_loads]))


def _serving(calibration: Serving | None, form: str, loads: AdapterLoadModel,
             folds: int, speeds: Mapping[str, float] | None) -> ServingSteps | None:
    """The calibration probes' steps for ``form``: each probe's durations at the calibration's
    mean speed (divided by its ``speeds`` factor, when the probes timed speed anchors), blocking
    copies taken off."""
    if calibration is None:
        return None
    shapes, seconds, probe = calibration.arrays()
    if speeds is not None:
        seconds = seconds / np.array([speeds[p.name] for p in calibration.probes])[probe]
    copies = (shapes[:, _LOADS[0]] * loads.host.latency_s
              + shapes[:, _LOADS[1]] / loads.host.bytes_per_s)
    return serving_steps(design_matrix(form, shapes), seconds - copies, probe, folds)


def _probe_errors(serving: ServingSteps, predicted: np.ndarray,
                  names: list[str]) -> dict[str, dict[str, float]]:
    return {name: busy_errors_pct(predicted[serving.probe == i],
                                  serving.seconds[serving.probe == i])
            for i, name in enumerate(names)}


def _rms_bias(errors: Mapping[str, Mapping[str, float]]) -> float:
    return float(np.sqrt(np.mean([e["busy_bias_pct"] ** 2 for e in errors.values()])))


def fit_profile(profile: Profile, folds: int = DEFAULT_FOLDS,
                seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Fit every candidate, keep the best (module docstring); returns the profile's ``fit``."""
    shapes, seconds = profile_arrays(profile)
    folds = min(folds, len(seconds))
    if folds < 2:
        raise ProfileError("a profile needs at least 2 step measurements to cross-validate")
    # The same folds for every candidate, so they are compared on the same held-out points.
    split = fold_indices(len(seconds), folds, np.random.default_rng(seed))
    loads = _load_model(profile)
    calibration = profile.serving.calibration() if profile.serving is not None else None
    names = [p.name for p in calibration.probes] if calibration is not None else []
    speeds = profile.serving.probe_speeds() if calibration is not None else None
    weights = SERVING_WEIGHTS if names else (0.0,)
    grid_cv: dict[tuple[str, float], dict[str, float]] = {}
    probe_cv: dict[tuple[str, float], dict[str, dict[str, float]]] = {}
    for form in FORMS:
        design, serving = design_matrix(form, shapes), _serving(calibration, form, loads, folds,
                                                                 speeds)
        for w in weights:
            grid, steps = held_out_predictions(design, seconds, split, serving, w,
                                               overhead_terms(form))
            grid_cv[form, w] = errors_pct(grid, seconds)
            if serving is not None:
                probe_cv[form, w] = _probe_errors(serving, steps, names)

    def score(candidate: tuple[str, float]) -> tuple[float, float, int]:
        first = _rms_bias(probe_cv[candidate]) if names else grid_cv[candidate]["mape_pct"]
        return first, grid_cv[candidate]["mape_pct"], len(FORMS[candidate[0]])
    best, weight = min(grid_cv, key=score)
    design, serving = design_matrix(best, shapes), _serving(calibration, best, loads, folds,
                                                             speeds)
    fit = weighted_fit(design, seconds, serving, weight, overhead_terms(best))
    terms = list(FORMS[best])
    result = {
        "form": best, "serving_weight": weight,
        "coefficients": {name: float(c) for name, c in zip(terms, fit.coefficients)},
        "serving_overhead": {terms[i]: float(c)
                             for i, c in zip(overhead_terms(best), fit.overhead)},
        "adapter_loads": loads.to_dict(),
        "probe_speed": speeds,
        "cv": {"folds": folds, "seed": seed, "points": len(seconds),
               "forms": {f: grid_cv[f, weight] for f in FORMS}, "serving": None},
        "in_sample": errors_pct(design @ fit.grid, seconds),
        "serving_in_sample": None,
    }
    if serving is not None:
        result["serving_in_sample"] = _probe_errors(
            serving, serving.design @ fit.coefficients, names)
        result["cv"]["serving"] = {
            "probes": names, "steps": len(serving.seconds),
            "candidates": [{"form": f, "serving_weight": w,
                            "rms_busy_bias_pct": _rms_bias(probe_cv[f, w]),
                            "grid_mape_pct": grid_cv[f, w]["mape_pct"],
                            "probes": probe_cv[f, w]} for f, w in grid_cv]}
    return result


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
