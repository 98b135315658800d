"""The shape of one scheduler step: what a cost model needs to predict its duration.

Computed once per step by the scheduler (control plane, torch-free), written as the shape
columns of a run's steps.csv, recorded per measurement in a profile, and turned into seconds
by the simulator's cost models. A NamedTuple because the scheduler builds one per step, on the
simulator's hot path.
"""
from __future__ import annotations

from typing import NamedTuple


class StepShape(NamedTuple):
    """Batch shape of one step. All counts are ints; ``0`` when the part is absent."""

    prefill_tokens: int = 0          # new tokens of prefilling requests, summed
    prefill_requests: int = 0
    prefill_sq_tokens: int = 0       # sum of each prefill's length squared (causal attention work)
    decode_requests: int = 0         # one new token each
    decode_context_tokens: int = 0   # sum of decode requests' context lengths incl. the new token
    distinct_adapters: int = 0       # distinct adapters among the step's requests
    sum_ranks: int = 0               # sum of those adapters' ranks
    lora_token_ranks: int = 0        # sum over the step's tokens of their adapter's rank
    adapter_loads: int = 0           # adapter copies into the pool that block this step
    adapter_load_bytes: int = 0      # their bytes

    @property
    def tokens(self) -> int:
        return self.prefill_tokens + self.decode_requests


STEP_SHAPE_FIELDS: tuple[str, ...] = StepShape._fields
