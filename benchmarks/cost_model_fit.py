"""How well each cost-model form predicts a profile's steps, by k-fold cross-validation.

Prints, for every form in simulator/cost_terms.py, the held-out error (mean, P90 and largest
absolute percentage error) over all steps and separately over decode-only and prefill-bearing
steps, for several fold counts and seeds; then the noise floor of the profile itself (how far
single repeats sit from their point's mean), which no form can beat. Finally the roofline
presets' step times for reference shapes.

    .venv/bin/python benchmarks/cost_model_fit.py [PROFILE.json]   # default: the shipped one
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from manylora.engine.model_shape import MODEL_SHAPES
from manylora.engine.step_shape import STEP_SHAPE_FIELDS, StepShape
from manylora.simulator.cost_model import shipped_profile_path
from manylora.simulator.cost_terms import FORMS
from manylora.simulator.cost_fit import (cross_validated_predictions, design_matrix,
                                         errors_pct, fold_indices)
from manylora.simulator.fitted_cost_model import profile_arrays
from manylora.simulator.hardware import HARDWARE_PRESETS
from manylora.simulator.profile_file import read_profile
from manylora.simulator.roofline import RooflineCostModel


def fmt(errors: dict[str, float]) -> str:
    return (f"{errors['mape_pct']:6.1f} {errors['p90_ape_pct']:6.1f} "
            f"{errors['max_ape_pct']:7.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", nargs="?", help="default: the shipped profile")
    args = parser.parse_args()
    args.profile = args.profile or str(shipped_profile_path())
    profile = read_profile(args.profile)
    shapes, seconds = profile_arrays(profile)
    decode_only = shapes[:, STEP_SHAPE_FIELDS.index("prefill_tokens")] == 0
    print(f"{args.profile}: {len(seconds)} step shapes ({decode_only.sum()} decode-only), "
          f"{profile.hardware.get('cpu_model')} / {profile.hardware.get('device')}, "
          f"{profile.hardware.get('torch_threads')} threads")
    print(f"{'form':10} {'folds':>5} {'seed':>4} | {'all: MAPE    P90     max':26} | "
          f"{'decode-only':22} | {'prefill-bearing':22}")
    for form in FORMS:
        design = design_matrix(form, shapes)
        for folds in (5, 10):
            for seed in (0, 1, 2):
                split = fold_indices(len(seconds), folds, np.random.default_rng(seed))
                predicted = cross_validated_predictions(design, seconds, split)
                print(f"{form:10} {folds:5d} {seed:4d} | {fmt(errors_pct(predicted, seconds))}"
                      f"     | {fmt(errors_pct(predicted[decode_only], seconds[decode_only]))}"
                      f" | {fmt(errors_pct(predicted[~decode_only], seconds[~decode_only]))}")
    repeats = [np.abs(np.array(s.duration_s) / np.mean(s.duration_s) - 1) * 100
               for s in profile.steps]
    spread = np.concatenate(repeats)
    print(f"noise floor: single repeats vs their mean: mean {spread.mean():.1f}%, "
          f"P90 {np.percentile(spread, 90):.1f}%")
    fit = profile.fit
    if fit is not None:
        chosen = fit["cv"]["forms"][fit["form"]]
        print(f"stored fit: form {fit['form']}, CV MAPE {chosen['mape_pct']:.1f}%, "
              f"P90 {chosen['p90_ape_pct']:.1f}%, in-sample MAPE "
              f"{fit['in_sample']['mape_pct']:.1f}%")
    print("\nroofline presets (ms): decode b=1 ctx 512 | decode b=32 ctx 512 | "
          "prefill 1x2048")
    for gpu in HARDWARE_PRESETS.values():
        for shape in MODEL_SHAPES.values():
            model = RooflineCostModel(gpu, shape)
            cells = [model.step_time(StepShape(decode_requests=b, decode_context_tokens=512 * b))
                     for b in (1, 32)]
            cells.append(model.step_time(StepShape(prefill_tokens=2048, prefill_requests=1,
                                                   prefill_sq_tokens=2048 ** 2)))
            print(f"  {gpu.name:10} {shape.name:12} " + " | ".join(f"{c * 1e3:8.2f}"
                                                                  for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
