"""Cost models by name, and the loaders the simulator and its command line call.

- ``default_cost_model()``: the fitted model of the profile shipped with manylora
  (``profiles/cpu-tiny.json``: the tiny model of ``manylora model make-tiny`` on a CPU);
  ``manylora simulate`` uses it when given no cost-model option.
- ``cost_model_from_args(profile=None, hardware=None, model_shape=None)``: what the simulate
  command's ``--profile P`` / ``--hardware NAME --model-shape NAME`` options select.
- ``load_cost_model(name, **options)``: any registered model by name (``COST_MODELS``).

The interface itself (``CostModel``) and its contract are in cost_base.py, re-exported here.
"""
from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from manylora.engine.model_shape import MODEL_SHAPES, ModelShape
from manylora.simulator.cost_base import TIERS, CostModel, CostModelError, UnknownTierError
from manylora.simulator.fitted_cost_model import FittedCostModel
from manylora.simulator.hardware import HARDWARE_PRESETS, hardware_preset
from manylora.simulator.profile_file import ProfileError, parse_profile, read_raw
from manylora.simulator.roofline import DEFAULT_LORA_TARGETS, RooflineCostModel

DEFAULT_PROFILE = "cpu-tiny.json"

__all__ = ["CostModel", "CostModelError", "ProfileError", "UnknownTierError", "TIERS",
           "COST_MODELS", "DEFAULT_PROFILE", "load_cost_model", "default_cost_model",
           "cost_model_from_args", "fitted_cost_model", "roofline_cost_model",
           "shipped_profile_path", "named_model_shape"]


def shipped_profile_path(name: str = DEFAULT_PROFILE) -> Path:
    """Path of a profile shipped inside the package (simulator/profiles/)."""
    path = Path(str(resources.files("manylora.simulator") / "profiles" / name))
    if not path.is_file():
        raise ProfileError(f"no shipped profile {name!r} in {path.parent}")
    return path


def fitted_cost_model(profile: str | os.PathLike[str] | None = None) -> FittedCostModel:
    """The fitted model of a profile file (default: the shipped one)."""
    path = Path(profile) if profile is not None else shipped_profile_path()
    raw = read_raw(path)
    parsed = parse_profile(raw, str(path))
    # File name and content hash, not the full path: meta.json must not depend on where
    # the profile happened to be stored.
    source = {"file": path.name, "sha256": hashlib.sha256(raw).hexdigest(),
              "hardware": dict(parsed.hardware), "model": parsed.model.name}
    return FittedCostModel.from_profile(parsed, source)


def named_model_shape(name: str) -> ModelShape:
    try:
        return MODEL_SHAPES[name]
    except KeyError:
        raise CostModelError(f"unknown model shape {name!r}; known: "
                             f"{', '.join(MODEL_SHAPES)}") from None


def roofline_cost_model(hardware: str, model_shape_name: str,
                        lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
                        ) -> RooflineCostModel:
    """The roofline model of a hardware preset and a named model shape."""
    return RooflineCostModel(hardware_preset(hardware), named_model_shape(model_shape_name),
                             lora_targets)


COST_MODELS: Mapping[str, Callable[..., CostModel]] = MappingProxyType({
    "fitted": fitted_cost_model,
    "roofline": roofline_cost_model,
})


def load_cost_model(name: str, **options: Any) -> CostModel:
    try:
        build = COST_MODELS[name]
    except KeyError:
        raise CostModelError(f"unknown cost model {name!r}; known: "
                             f"{', '.join(COST_MODELS)}") from None
    return build(**options)


def default_cost_model() -> CostModel:
    return fitted_cost_model()


def cost_model_from_args(profile: str | os.PathLike[str] | None = None,
                         hardware: str | None = None,
                         model_shape: str | None = None) -> CostModel:
    """``--profile P`` or ``--hardware NAME --model-shape NAME``; neither: the default."""
    if profile is not None and (hardware is not None or model_shape is not None):
        raise CostModelError("give either --profile or --hardware with --model-shape, not both")
    if (hardware is None) != (model_shape is None):
        raise CostModelError(f"--hardware ({', '.join(HARDWARE_PRESETS)}) and --model-shape "
                             f"({', '.join(MODEL_SHAPES)}) go together")
    if hardware is not None:
        return load_cost_model("roofline", hardware=hardware, model_shape_name=model_shape)
    return load_cost_model("fitted", profile=profile)

