"""The cost-model interface every implementation satisfies, and the input checks they share.

A cost model turns step shapes (engine/step_shape.py) into seconds and adapter sizes into load
times (docs/internals.md, "Cost models"). Implementations live in their own modules and
``cost_model`` gathers them into a registry; this module holds only what they have in common,
so that they can import it without importing each other.

Bit-identical evaluation: implementations write their formula once, over an object with the
``StepShape`` attributes, using only ``+ - * /`` and max/min (all exactly rounded in IEEE
double, identical in Python floats and numpy float64 arrays) in a fixed order. ``step_times``
runs it on a ``StepShape`` whose attributes are float64 columns; ``step_time`` on the shape
itself. So a block of rows gives the same bits as each row alone, which the simulator's jump
over steady decode steps relies on.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from manylora.engine.step_shape import STEP_SHAPE_FIELDS, StepShape

TIERS: tuple[str, ...] = ("host", "disk")
"""Adapter load tiers: "host" copies host memory -> pool, "disk" reads disk -> host memory."""


class CostModelError(ValueError):
    """A cost model cannot be built from what it was given (file, names, options)."""


class UnknownTierError(ValueError):
    """An adapter load tier that is not one of TIERS."""


@runtime_checkable
class CostModel(Protocol):
    """Step time from a step's shape; adapter load time from its size."""

    def step_times(self, shapes: np.ndarray) -> np.ndarray:
        """shapes: float64 [n, len(STEP_SHAPE_FIELDS)] in StepShape field order -> float64 [n] s."""

    def step_time(self, shape: StepShape) -> float:
        """Seconds for one step; equal bit for bit to ``step_times`` of that one row."""

    def adapter_load_time(self, num_bytes: int, tier: str) -> float:
        """Seconds to move ``num_bytes`` of one adapter over ``tier`` (one of TIERS)."""

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description for a run's meta.json."""


def step_columns(shapes: np.ndarray) -> StepShape:
    """A StepShape whose attributes are the float64 columns of ``shapes`` [n, fields]."""
    shapes = np.asarray(shapes, dtype=np.float64)
    if shapes.ndim != 2 or shapes.shape[1] != len(STEP_SHAPE_FIELDS):
        raise ValueError(f"step shapes must be a [n, {len(STEP_SHAPE_FIELDS)}] array in "
                         f"StepShape field order, got shape {shapes.shape}")
    return StepShape._make(shapes.T)


def check_tier(tier: str) -> str:
    if tier not in TIERS:
        raise UnknownTierError(f"unknown adapter load tier {tier!r}; expected one of "
                               f"{', '.join(TIERS)}")
    return tier
