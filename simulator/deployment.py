"""What is being simulated besides the trace: the model shape and the pool geometry.

A profile records the model it measured and its pool (``"model"``; ``"pool"`` with
``num_pages`` and ``tokens_per_page``), so a fitted cost model brings all three; a roofline
model brings the model shape and a hardware preset, whose device memory sizes the pool as an
engine would: ``memory_utilization`` of the memory, less the base weights, in pages. Options
given on the command line win over both.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from manylora.engine.model_shape import ModelShape, PoolLayout
from manylora.engine.scheduler_config import ControlConfig
from manylora.simulator.cost_model import named_model_shape, shipped_profile_path
from manylora.simulator.hardware import hardware_preset
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


# Like vLLM's default gpu_memory_utilization: the rest is left for activations and workspace.
DEFAULT_MEMORY_UTILIZATION = 0.9


def pool_pages_for_memory(shape: ModelShape, tokens_per_page: int, memory_bytes: float,
                          utilization: float = DEFAULT_MEMORY_UTILIZATION) -> int:
    """Pages an engine would give the unified pool on a device of ``memory_bytes``."""
    free = memory_bytes * utilization - shape.weight_bytes
    pages = int(free // PoolLayout(shape, tokens_per_page).page_bytes)
    if pages < 2:
        raise DeploymentError(f"{shape.name} ({shape.weight_bytes / 1e9:.1f} GB of weights) "
                              f"leaves no room for a pool in {memory_bytes / 1e9:.0f} GB")
    return pages


def resolve_deployment(profile: str | os.PathLike[str] | None = None,
                       model_shape: str | None = None, pool_pages: int | None = None,
                       tokens_per_page: int | None = None,
                       hardware: str | None = None) -> Deployment:
    """The model shape: ``model_shape`` by name (roofline), else the profile's (the shipped
    profile by default). Tokens per page: the given value, else the profile's, else 1. Pool
    pages: the given value, else the profile's, else what the ``hardware`` preset's memory
    holds after the weights."""
    recorded: dict = {}
    if model_shape is not None:
        shape = named_model_shape(model_shape)
    else:
        measured = read_profile(Path(profile) if profile is not None
                                else shipped_profile_path())
        shape = measured.model
        recorded = dict(measured.pool)
    tokens = tokens_per_page if tokens_per_page is not None \
        else _whole(recorded.get("tokens_per_page"), 1) or 1
    pages = pool_pages if pool_pages is not None else _whole(recorded.get("num_pages"), 2)
    if pages is None and hardware is not None:
        pages = pool_pages_for_memory(shape, tokens, hardware_preset(hardware).memory_bytes)
    if pages is None:
        raise DeploymentError("the pool size is unknown: give --pool-pages N or --hardware "
                              "(a profile records it as pool.num_pages)")
    return Deployment(shape, pages, tokens)
