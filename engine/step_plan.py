"""`StepPlan`: what one scheduler step decided, for a body (engine or simulator) to execute.

A body executes, in order: the plan's evictions (forget those adapters' pages), its blocking
adapter loads (copy weights into the listed pages before the forward pass), the forward pass
over ``prefill`` then ``decode`` requests, and starts its prefetch loads in the background
(reporting each one with ``scheduler.adapter_loaded``). ``shape`` is the step's batch shape,
from which a cost model predicts its duration; the pool fields are occupancy during the step.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from manylora.engine.request import Request
from manylora.engine.step_shape import StepShape


class AdapterLoad(NamedTuple):
    """One adapter copy into the pool."""

    adapter_id: int
    pages: np.ndarray     # [pages] intp: where the packed weights go, in packing order
    num_bytes: int        # weight bytes copied (host -> pool)
    from_disk: bool       # the weights must first be read from disk into host memory
    blocking: bool        # True: before this step's forward; False: prefetch, in background


class StepPlan:
    """One step's decisions. Built by ``Scheduler.schedule``; read-only for bodies."""

    __slots__ = ("step", "prefill", "decode", "loads", "evictions", "preempted", "aborted",
                 "rejected", "shape", "kv_pages", "adapter_pages", "free_pages")

    def __init__(self, step: int, prefill: tuple[Request, ...], decode: tuple[Request, ...],
                 loads: tuple[AdapterLoad, ...], evictions: tuple[int, ...],
                 preempted: tuple[Request, ...], aborted: tuple[Request, ...],
                 rejected: tuple[Request, ...], shape: StepShape, kv_pages: int,
                 adapter_pages: int, free_pages: int) -> None:
        self.step = step                  # global step index (advances on complete)
        self.prefill = prefill            # admitted this step; prefill_len tokens each
        self.decode = decode              # one token each; context_len(step) incl. the new one
        self.loads = loads                # blocking and prefetch adapter loads
        self.evictions = evictions        # adapter ids whose pages were reclaimed
        self.preempted = preempted        # running requests sent back to the queue
        self.aborted = aborted            # queued requests dropped by the admission policy
        self.rejected = rejected          # requests that can never be served
        self.shape = shape
        self.kv_pages = kv_pages          # pool pages held by KV during the step
        self.adapter_pages = adapter_pages
        self.free_pages = free_pages

    @property
    def runs(self) -> bool:
        """Whether there is a forward pass to execute (and ``complete`` to call)."""
        return bool(self.prefill or self.decode)

    @property
    def is_pure_decode(self) -> bool:
        """A decode-only step with no loads: the kind a body may cost in blocks."""
        return not self.prefill and not self.loads and bool(self.decode)

    def blocking_loads(self) -> tuple[AdapterLoad, ...]:
        return tuple(load for load in self.loads if load.blocking)

    def prefetch_loads(self) -> tuple[AdapterLoad, ...]:
        return tuple(load for load in self.loads if not load.blocking)

    def __repr__(self) -> str:
        return (f"StepPlan(step={self.step}, prefill={len(self.prefill)}, "
                f"decode={len(self.decode)}, loads={len(self.loads)}, "
                f"evictions={len(self.evictions)}, preempted={len(self.preempted)}, "
                f"aborted={len(self.aborted)}, rejected={len(self.rejected)})")
