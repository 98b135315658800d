"""The options a sweep point may set, and how they become the simulator's inputs.

A sweep names options as ``manylora simulate`` does, with or without dashes
(``max-batch-adapters`` or ``max_batch_adapters``): every control-plane option
(``engine.policy_options.OPTIONS``, canonical name: the ControlConfig field) and the
simulate command's own: ``profile``, ``hardware``, ``model-shape`` (the cost model),
``replicas``, ``router`` and ``jumps``. A point's simulation seed is its trace seed.

:class:`SimulateOptions` validates one point's options into a ``ControlConfig`` and a plain
dict of simulate options (what a worker needs), checking the cost model and the deployment
(model shape, pool pages) once per distinct setting. A profile path is taken relative to the
sweep file and made absolute, so workers find it from any directory; the point's identity
holds the cost model's own description (a profile's file name and content hash) instead of
the path, so moving the files does not invalidate finished points.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping

from manylora.analysis.sweep_config import OptionNames
from manylora.engine.policy_options import OPTIONS, policies_from_options
from manylora.engine.scheduler_config import ControlConfig
from manylora.simulator.cost_base import CostModel
from manylora.simulator.cost_model import cost_model_from_args
from manylora.simulator.deployment import Deployment, resolve_deployment
from manylora.simulator.simulation import SimulationConfig

COST_MODEL_OPTIONS = ("profile", "hardware", "model_shape")
SIMULATION_OPTIONS = ("replicas", "router", "jumps")
_CONTROL = {**{o.flag.replace("-", "_"): o.field for o in OPTIONS},
            **{o.field: o.field for o in OPTIONS}}
_SIMULATE = {name: name for name in (*COST_MODEL_OPTIONS, *SIMULATION_OPTIONS)}


def canonical_option(name: str) -> str | None:
    """The canonical name of a sweep option, or None if there is no such option."""
    key = str(name).replace("-", "_")
    return _SIMULATE.get(key) or _CONTROL.get(key)


SWEEP_OPTION_NAMES = OptionNames(
    canonical_option,
    tuple(o.flag for o in OPTIONS) + tuple(n.replace("_", "-") for n in _SIMULATE))


@functools.lru_cache(maxsize=32)
def cost_model(profile: str | None, hardware: str | None,
               model_shape: str | None) -> CostModel:
    """The cost model of these options, built once per process (workers reuse it)."""
    return cost_model_from_args(profile, hardware, model_shape)


@functools.lru_cache(maxsize=256)
def deployment(profile: str | None, model_shape: str | None, pool_pages: int | None,
               tokens_per_page: int | None) -> Deployment:
    """Model shape and pool geometry of these options, resolved once per process."""
    return resolve_deployment(profile, model_shape, pool_pages, tokens_per_page)


def placed(control: ControlConfig, simulate: Mapping[str, Any]) -> Deployment:
    """The deployment of a point whose control config already holds its pool geometry."""
    profile, _, model_shape = cost_args(simulate)
    return deployment(profile, model_shape, control.memory.pool_pages,
                      control.memory.tokens_per_page)


def simulation_config(simulate: Mapping[str, Any], seed: int) -> SimulationConfig:
    return SimulationConfig(seed=seed, **{k: simulate[k] for k in SIMULATION_OPTIONS
                                          if k in simulate})


def cost_args(simulate: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    return tuple(simulate.get(k) for k in COST_MODEL_OPTIONS)  # type: ignore[return-value]


class SimulateOptions:
    """Splits and validates a point's options (``expand_grid``'s ``resolver``)."""

    def __init__(self, base_dir: str | Path = ".") -> None:
        self.base_dir = Path(base_dir)

    def split(self, options: Mapping[str, Any]) -> tuple[ControlConfig, dict[str, Any]]:
        """``(control config with the pool geometry filled in, simulate options)``;
        ValueError names a bad value. Pool pages and tokens per page not given come from
        the profile, as in ``manylora simulate``."""
        control = policies_from_options({k: v for k, v in options.items()
                                         if k not in _SIMULATE})
        simulate = {k: v for k, v in options.items() if k in _SIMULATE}
        for key in COST_MODEL_OPTIONS:
            if key in simulate and not isinstance(simulate[key], str):
                raise ValueError(f"option {key.replace('_', '-')}: expected a string, got "
                                 f"{simulate[key]!r}")
        if "profile" in simulate:
            simulate["profile"] = str((self.base_dir / simulate["profile"]).resolve())
        try:
            simulation_config(simulate, 0)
        except TypeError as exc:        # e.g. replicas = "4": a wrong type, not a crash
            raise ValueError(f"simulation options {simulate}: {exc}") from None
        profile, hardware, model_shape = cost_args(simulate)
        cost_model(profile, hardware, model_shape)
        memory = control.memory
        given = deployment(profile, model_shape,
                           memory.pool_pages if "pool_pages" in options else None,
                           memory.tokens_per_page if "tokens_per_page" in options else None)
        return given.apply(control), simulate

    def identity(self, control: ControlConfig, simulate: Mapping[str, Any]) -> dict[str, Any]:
        """What decides a point's simulation besides its trace and control config."""
        profile, hardware, model_shape = cost_args(simulate)
        return {"simulation": {k: simulate[k] for k in SIMULATION_OPTIONS if k in simulate},
                "cost_model": cost_model(profile, hardware, model_shape).describe(),
                "model": placed(control, simulate).shape.name}
