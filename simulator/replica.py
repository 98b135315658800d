"""One engine replica as a SimPy process: schedule -> timeout(step cost) -> complete.

The replica runs the engine's own ``Scheduler``; only the forward pass is replaced by the cost
model. A step lasts ``cost_model.step_time(shape)`` (which includes the blocking host -> pool
adapter copies the shape lists) plus a disk -> host read for each blocking load that comes
from disk. Prefetch loads run in the background: each lands after its disk read (if any) and
host copy, and calls ``adapter_loaded``.

Time is kept exactly: every event is scheduled at an absolute time computed by the same float
additions in every mode (``At``), arrivals and load completions come before step boundaries at
the same instant (URGENT priority), and a schedule at time t sees everything that happened at
or before t.

Jumps: when a plan is a decode step that ``quiet_steps`` says repeats unchanged for k steps,
the replica costs up to k steps in one ``step_times`` call over their shapes (only the decode
context grows), stops the block before the first step boundary at or after the next event that
could change the batch (the next trace arrival, a load completion, the queue policy's next time
event), writes the block's rows at once and completes it with ``skip_steps``. Start times are a
running sum in the same order as stepping, so a jump gives bit-identical results.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import simpy
from simpy.events import NORMAL, URGENT

from manylora.engine.request import Request
from manylora.engine.run_folder import StepLog
from manylora.engine.scheduler import Scheduler
from manylora.engine.step_plan import AdapterLoad, StepPlan
from manylora.engine.step_shape import STEP_SHAPE_FIELDS
from manylora.simulator.cost_base import CostModel

_CONTEXT = STEP_SHAPE_FIELDS.index("decode_context_tokens")
# A jump costs a few dozen numpy calls whatever its length, a step one scalar evaluation:
# jumps pay off from several steps on, so shorter quiet runs are stepped.
_MIN_JUMP_STEPS = 8


def delay_to(now: float, target: float) -> float:
    """A delay d with ``now + d == target`` exactly (SimPy adds delays to its clock)."""
    d = target - now
    for _ in range(8):
        landed = now + d
        if landed == target:
            break
        d = math.nextafter(d, math.inf if landed < target else -math.inf)
    return max(d, 0.0)


class At(simpy.events.Event):
    """An event that fires at absolute time ``time``, with a SimPy priority."""

    def __init__(self, env: simpy.Environment, time: float, priority: int = NORMAL) -> None:
        super().__init__(env)
        # Mirrors simpy.events.Timeout: an already-successful event, scheduled in the future.
        self._ok = True
        self._value = None
        env.schedule(self, priority, delay_to(env.now, time))


class Replica:
    """A scheduler, its clock and its in-flight adapter loads, driven by a SimPy process."""

    def __init__(self, index: int, env: simpy.Environment, scheduler: Scheduler,
                 cost_model: CostModel, log: StepLog, next_arrival: Callable[[], float],
                 jumps: bool) -> None:
        self.index = index
        self.env = env
        self.scheduler = scheduler
        self.cost = cost_model
        self.log = log
        self.next_arrival = next_arrival
        self.jumps = jumps
        self.loads: dict[int, float] = {}      # adapter id -> time its background load lands
        self.steps = 0
        self.jumped_steps = 0
        self._wake: simpy.Event | None = None
        self._aborted = 0                       # drops not yet counted on a steps.csv row
        self._last_duration = 0.0
        self.process = env.process(self._run())

    # --------------------------------------------------------------- inputs
    def submit(self, req: Request, now: float) -> None:
        """An arrival routed here (called at its arrival time)."""
        req.replica = self.index
        self.scheduler.add_request(req, now)
        self._poke()

    def _poke(self) -> None:
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def _start_load(self, adapter_id: int, lands: float) -> None:
        self.loads[adapter_id] = lands
        event = At(self.env, lands, URGENT)
        event.callbacks.append(lambda _: self._landed(adapter_id, lands))

    def _landed(self, adapter_id: int, now: float) -> None:
        del self.loads[adapter_id]
        self.scheduler.adapter_loaded(adapter_id, now)
        self._poke()

    # --------------------------------------------------------------- the process
    def _run(self):
        sched, env = self.scheduler, self.env
        now = env.now
        while True:
            plan = sched.schedule(now)
            self._aborted += len(plan.aborted)
            for load in plan.loads:
                if not load.blocking:
                    self._start_load(load.adapter_id, now + self._background_time(load))
            if not plan.runs:
                self._wake = env.event()
                due = sched.next_event_time()
                if due < math.inf and len(sched.queue):
                    yield self._wake | At(env, max(due, now))
                else:
                    yield self._wake
                self._wake = None
                now = env.now
                continue
            # Cheapest tests first: this runs on every step.
            if (self.jumps and not plan.prefill and not plan.loads
                    and self._horizon() - now > _MIN_JUMP_STEPS * self._last_duration):
                quiet = sched.quiet_steps(plan)
                if quiet >= _MIN_JUMP_STEPS:
                    now = yield from self._jump(plan, now, quiet)
                    continue
            duration = self.cost.step_time(plan.shape)
            for load in plan.loads:
                if load.blocking and load.from_disk:
                    duration += self.cost.adapter_load_time(load.num_bytes, "disk")
            self.log.add(self.index, plan, now, duration, self._aborted)
            self._aborted = 0
            end = now + duration
            yield At(env, end)
            now = end
            sched.complete(plan, now)
            self.steps += 1
            self._last_duration = duration

    def _background_time(self, load: AdapterLoad) -> float:
        seconds = self.cost.adapter_load_time(load.num_bytes, "host")
        if load.from_disk:
            seconds += self.cost.adapter_load_time(load.num_bytes, "disk")
        return seconds

    def _horizon(self) -> float:
        """Earliest time something outside this replica's steps could change its batch."""
        soonest = min(self.next_arrival(), self.scheduler.next_event_time())
        return min(soonest, min(self.loads.values())) if self.loads else soonest

    def _jump(self, plan: StepPlan, now: float, quiet: int):
        """Cost and complete up to ``quiet`` identical decode steps from ``plan`` at once."""
        horizon = self._horizon()
        base = np.array(plan.shape, dtype=np.float64)  # [fields]
        per_step = float(plan.shape.decode_requests)
        durations: list[np.ndarray] = []
        bounds: list[np.ndarray] = []
        # Decode step times barely change within a block: size the first call to reach the
        # horizon at the last step's pace, then double while the block lasts.
        reach = (horizon - now) / self._last_duration if self._last_duration > 0 else quiet
        clock, done, size = now, 0, int(min(quiet, reach)) + 2
        while done < quiet:
            n = min(size, quiet - done)
            rows = np.repeat(base[None, :], n, axis=0)  # [n, fields]
            rows[:, _CONTEXT] += (done + np.arange(n)) * per_step
            d = self.cost.step_times(rows)  # [n]
            ends = np.cumsum(np.concatenate(([clock], d)))[1:]  # [n] same order as stepping
            durations.append(d)
            bounds.append(ends)
            done += n
            clock = float(ends[-1])
            if clock >= horizon:
                break
            size *= 2
        d = np.concatenate(durations)
        ends = np.concatenate(bounds)
        # Step i + 1 stays in the block only if it starts before the horizon.
        count = 1 + int(np.searchsorted(ends[:done - 1], horizon, side="left"))
        starts = np.concatenate(([now], ends[:count - 1]))
        self.log.add_block(self.index, plan, starts, d[:count], self._aborted)
        self._aborted = 0
        end = float(ends[count - 1])
        yield At(self.env, end)
        self.scheduler.skip_steps(plan, count)
        self.steps += count
        self.jumped_steps += count
        self._last_duration = float(d[count - 1])
        return end
