"""What is being simulated besides the trace: the model shape and the pool size.

A profile records the model it measured and its pool (``"model"``, ``"pool"``), so a fitted
cost model brings both; a roofline model brings the model shape, and the pool size then comes
from ``--pool-pages`` (``MemoryConfig.pool_pages``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from manylora.engine.model_shape import ModelShape
from manylora.engine.scheduler_config import ControlConfig
from manylora.simulator.cost_model import named_model_shape, shipped_profile_path
from manylora.simulator.profile_file import read_profile


class DeploymentError(ValueError):
    """The model or pool size of a simulation cannot be determined from the options."""


@dataclass(frozen=True)
class Deployment:
    shape: ModelShape
    num_pages: int


def resolve_deployment(control: ControlConfig, profile: str | os.PathLike[str] | None = None,
                       model_shape: str | None = None) -> Deployment:
    """The model shape: ``model_shape`` by name (roofline), else the profile's (the shipped
    profile by default). The pool pages: ``--pool-pages`` if given, else the profile's."""
    recorded_pages = None
    if model_shape is not None:
        shape = named_model_shape(model_shape)
    else:
        recorded = read_profile(Path(profile) if profile is not None
                                else shipped_profile_path())
        shape = recorded.model
        recorded_pages = recorded.pool.get("num_pages")
    pages = control.memory.pool_pages if control.memory.pool_pages is not None \
        else recorded_pages
    if not isinstance(pages, int) or pages < 2:
        raise DeploymentError("the pool size is unknown: give --pool-pages N (a roofline model "
                              "has no measured pool; a profile records it as pool.num_pages)")
    return Deployment(shape, pages)
