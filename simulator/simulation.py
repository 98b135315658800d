"""A simulation: a trace's requests arrive, a router sends each to a replica, every replica
runs the engine's own scheduler over a cost model (replica.py), and the run is recorded in the
same run folder an engine replay writes.

``simulate`` is the library entry point (what ``manylora simulate`` and sweeps call);
``simulation_meta`` describes a run for meta.json. A run is deterministic: the same trace,
cost model, configs and seed give the same requests and steps, bit for bit.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

import simpy
from simpy.events import URGENT

from manylora.engine.catalog import AdapterCatalog
from manylora.engine.model_shape import ModelShape, PoolLayout
from manylora.engine.request import TERMINAL_STATES, Request
from manylora.engine.run_folder import StepLog, versions
from manylora.engine.scheduler import build_scheduler
from manylora.engine.scheduler_config import ControlConfig
from manylora.simulator.cost_base import CostModel
from manylora.simulator.replica import At, Replica
from manylora.simulator.router import ROUTERS, Router
from manylora.traces import Trace

_PROGRESS_TICKS = 200  # progress callbacks over the trace's duration


class SimulationError(RuntimeError):
    """The simulation ended in a state the control plane promises never to reach."""


@dataclass(frozen=True)
class SimulationConfig:
    """What the simulator adds to the control plane: replicas, routing, jumps, seed."""

    replicas: int = 1
    router: str = "round-robin"
    jumps: bool = True       # cost runs of identical decode steps in one block
    seed: int = 0            # recorded in meta.json; stochastic cost models take it too

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"SimulationConfig.replicas must be >= 1, got {self.replicas}")
        if self.router not in ROUTERS:
            raise ValueError(f"SimulationConfig.router: unknown {self.router!r}; choose one "
                             f"of {', '.join(ROUTERS)}")
        if self.seed < 0:
            raise ValueError(f"SimulationConfig.seed must be >= 0, got {self.seed}")


@dataclass
class SimulationResult:
    requests: list[Request]      # every trace request, in trace order, terminal
    steps: StepLog
    layout: PoolLayout
    num_pages: int
    stats: dict[str, int]


def trace_catalog(trace: Trace, layout: PoolLayout) -> AdapterCatalog:
    a = trace.adapters
    return AdapterCatalog.from_columns(layout, a["adapter_id"].tolist(), a["rank"].tolist(),
                                       a["alpha"].tolist(), a["targets"].tolist())


def trace_requests(trace: Trace) -> list[Request]:
    columns = [trace.column(c).tolist() for c in
               ("request_id", "arrival_s", "adapter_id", "prompt_len", "output_len")]
    return [Request(*row) for row in zip(*columns)]


def simulate(trace: Trace, cost_model: CostModel, control: ControlConfig, shape: ModelShape,
             num_pages: int | None = None, config: SimulationConfig = SimulationConfig(),
             progress: Callable[[float], None] | None = None) -> SimulationResult:
    """Simulate ``trace`` on ``config.replicas`` replicas of a ``shape`` model whose pools
    have ``control.memory.pool_pages`` (else ``num_pages``) pages. ``progress(t)`` is called
    as simulated time t advances through the trace."""
    layout = PoolLayout(shape, control.memory.tokens_per_page)
    catalog = trace_catalog(trace, layout)
    schedulers = [build_scheduler(control, layout, catalog, num_pages)
                  for _ in range(config.replicas)]
    requests = trace_requests(trace)
    env = simpy.Environment()
    log = StepLog()
    arrivals = _Arrivals(requests)
    # A stochastic cost model draws per call, so blocks would draw for steps they discard.
    jumps = config.jumps and getattr(cost_model, "deterministic", True)
    replicas = [Replica(i, env, s, cost_model, log, arrivals.next_time, jumps)
                for i, s in enumerate(schedulers)]
    env.process(arrivals.run(env, replicas, ROUTERS[config.router](), progress))
    env.run()
    for sched in schedulers:
        sched.unload_adapters()
        sched.pool.check()
    unfinished = [r for r in requests if r.state not in TERMINAL_STATES]
    if unfinished or any(s.pool.free_pages != s.pool.num_pages for s in schedulers):
        raise SimulationError(f"simulation stalled: {len(unfinished)} requests never ended "
                              f"(first: {unfinished[0] if unfinished else None})")
    stats = {"steps": sum(r.steps for r in replicas),
             "jumped_steps": sum(r.jumped_steps for r in replicas)}
    return SimulationResult(requests, log, layout, schedulers[0].pool.num_pages, stats)


class _Arrivals:
    """Feeds trace requests to replicas at their arrival times, through the router."""

    def __init__(self, requests: list[Request]) -> None:
        self.requests = requests
        self.i = 0

    def next_time(self) -> float:
        return self.requests[self.i].arrival_s if self.i < len(self.requests) else math.inf

    def run(self, env: simpy.Environment, replicas: list[Replica], router: Router,
            progress: Callable[[float], None] | None):
        requests = self.requests
        schedulers = [r.scheduler for r in replicas]
        duration = requests[-1].arrival_s if requests else 0.0
        tick = duration / _PROGRESS_TICKS if duration > 0 else math.inf
        next_tick = tick
        while self.i < len(requests):
            req = requests[self.i]
            t = req.arrival_s
            if t > env.now:
                # URGENT: an arrival is seen by a step boundary at the same instant
                yield At(env, t, URGENT)
                if progress is not None and t >= next_tick:
                    progress(t)
                    next_tick = t + tick
            self.i += 1
            replicas[router.choose(req, schedulers)].submit(req, t)
        if progress is not None:
            progress(duration)


def simulation_meta(trace: Trace, cost_model: CostModel, control: ControlConfig,
                    result: SimulationResult, config: SimulationConfig) -> dict[str, Any]:
    """meta.json of a simulated run (the engine's replay writes the same keys)."""
    sections = control.to_dict()
    layout = result.layout
    return {
        "source": "simulator",
        "trace": trace.meta,
        "model": dataclasses.asdict(layout.shape),
        "cost_model": cost_model.describe(),
        "pool": {"kind": control.memory.pool, "num_pages": result.num_pages,
                 "tokens_per_page": layout.tokens_per_page, "page_bytes": layout.page_bytes},
        "scheduler": sections["scheduler"],
        "policies": {"queue": sections["queue"], "memory": sections["memory"]},
        "simulator": {"replicas": config.replicas, "router": config.router,
                      "jumps": config.jumps, **result.stats},
        "seed": config.seed,
        "versions": versions(),
    }
