"""A deployment to experiment on: what the engine and the simulator must share to be compared.

``Deployment`` bundles the cost model, the model shape and the control plane with the pool
size pinned to the pages the engine gets from its memory budget (``EngineConfig.pool_pages``),
so that a simulated run and an engine replay of one trace admit, batch and evict alike.
``simulate_run`` writes a simulated run folder; ``requests_frame`` gives the few columns a
capacity probe needs without writing anything.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pandas as pd

from manylora.engine.engine_config import EngineConfig
from manylora.engine.model_shape import ModelShape, PoolLayout
from manylora.engine.request import Request
from manylora.engine.run_folder import write_run_folder
from manylora.engine.scheduler_config import ControlConfig
from manylora.simulator.cost_base import CostModel
from manylora.simulator.simulation import (SimulationConfig, SimulationResult, simulate,
                                           simulation_meta)
from manylora.simulator.speed_profile import SpeedProfile, to_wall_time, work_time_trace
from manylora.traces.trace import Trace


@dataclass(frozen=True)
class Deployment:
    """Cost model, model shape, and the control plane with the engine's pool size."""

    cost_model: CostModel
    shape: ModelShape
    control: ControlConfig

    @classmethod
    def for_engine(cls, cost_model: CostModel, shape: ModelShape,
                   engine: EngineConfig) -> "Deployment":
        """The engine's control plane, its pool pinned to the pages ``engine`` would get."""
        pages = engine.pool_pages(PoolLayout(shape, engine.control.memory.tokens_per_page))
        memory = dataclasses.replace(engine.control.memory, pool_pages=pages)
        return cls(cost_model, shape, dataclasses.replace(engine.control, memory=memory))

    @property
    def num_pages(self) -> int:
        return int(self.control.memory.pool_pages)

    def with_control(self, **options) -> "Deployment":
        """The same deployment under other control-plane options (queue=..., eviction=...);
        the pool size stays."""
        flat = {**{f.name: getattr(part, f.name)
                   for part in (self.control.scheduler, self.control.queue, self.control.memory)
                   for f in dataclasses.fields(part)}, **options}
        return dataclasses.replace(self, control=ControlConfig.from_flat(flat))

    def simulate(self, trace: Trace, seed: int = 0) -> SimulationResult:
        return simulate(trace, self.cost_model, self.control, self.shape, self.num_pages,
                        SimulationConfig(seed=seed))

    def simulate_run(self, trace: Trace, folder: str | Path, seed: int = 0,
                     speed: SpeedProfile | None = None) -> Path:
        """Simulate ``trace`` and write the run folder; returns its path. With ``speed``, on
        a machine running that many times slower than the cost model's over the run (the
        simulation runs in the machine's work time, its times are written in wall time)."""
        if speed is None:
            result = self.simulate(trace, seed)
        else:
            result = to_wall_time(self.simulate(work_time_trace(trace, speed), seed), trace,
                                  speed)
        meta = simulation_meta(trace, self.cost_model, self.control, result,
                               SimulationConfig(seed=seed))
        if speed is not None:
            meta["speed_profile"] = speed.describe()
        return write_run_folder(folder, result.requests, result.steps, meta)

    def engine_config(self, engine: EngineConfig) -> EngineConfig:
        """``engine`` running this deployment's control plane (policies and pool size)."""
        return dataclasses.replace(engine, control=self.control)


def requests_frame(requests: Iterable[Request]) -> pd.DataFrame:
    """arrival_s, status and finish_s of simulated requests (NaN: never finished)."""
    rows = [(r.arrival_s, r.state.value, math.nan if r.finish_s is None else r.finish_s)
            for r in requests]
    return pd.DataFrame(rows, columns=["arrival_s", "status", "finish_s"])
