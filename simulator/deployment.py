"""What is being simulated besides the trace: the model shape and the pool geometry.

A profile records the model it measured and its pool (``"model"``; ``"pool"`` with
``num_pages`` and ``tokens_per_page``), so a fitted cost model brings all three; a roofline
model brings the model shape, and the pool size then has to come from ``--pool-pages``.
Options given on the command line win over what the profile recorded.
"""
from __future__ import annotations

import dataclasses
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
    tokens_per_page: int

    def apply(self, control: ControlConfig) -> ControlConfig:
        """``control`` with this pool size and page size."""
        memory = dataclasses.replace(control.memory, pool_pages=self.num_pages,
                                     tokens_per_page=self.tokens_per_page)
        return dataclasses.replace(control, memory=memory)


def _whole(value: object, minimum: int) -> int | None:
    return value if isinstance(value, int) and value >= minimum else None


def resolve_deployment(profile: str | os.PathLike[str] | None = None,
                       model_shape: str | None = None, pool_pages: int | None = None,
                       tokens_per_page: int | None = None) -> Deployment:
    """The model shape: ``model_shape`` by name (roofline), else the profile's (the shipped
    profile by default). Pool pages and tokens per page: the given values, else the
    profile's (tokens per page default to 1)."""
    recorded: dict = {}
    if model_shape is not None:
        shape = named_model_shape(model_shape)
    else:
        measured = read_profile(Path(profile) if profile is not None
                                else shipped_profile_path())
        shape = measured.model
        recorded = dict(measured.pool)
    pages = pool_pages if pool_pages is not None else _whole(recorded.get("num_pages"), 2)
    if pages is None:
        raise DeploymentError("the pool size is unknown: give --pool-pages N (a roofline model "
                              "has no measured pool; a profile records it as pool.num_pages)")
    tokens = tokens_per_page if tokens_per_page is not None \
        else _whole(recorded.get("tokens_per_page"), 1) or 1
    return Deployment(shape, pages, tokens)
