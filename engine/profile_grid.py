"""The batches the profiler times: a seeded grid over step shapes, and each point's StepShape.

A grid point is a batch in the form ``runner.synthetic_rows`` takes: prompt lengths of the
prefill requests, context lengths of the decode requests, each request's adapter slot (-1: no
LoRA) and each slot's rank. ``GridPoint.shape`` counts it exactly as the scheduler counts a
plan (scheduler.py ``_shape``), so a profile's shapes and a run's steps.csv mean the same thing.

The grid has sweeps that isolate one term each (decode batch x context, prefill requests x
length, distinct adapters x rank in decode and in prefill) plus random mixed batches (prefill
and decode together, mixed ranks), which keep the fitted terms from hiding behind one another.
Torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from manylora.engine.step_shape import StepShape


@dataclass(frozen=True)
class GridPoint:
    """One batch to time."""

    prefill_lens: tuple[int, ...]
    context_lens: tuple[int, ...]     # decode requests, including the new token
    request_slots: tuple[int, ...]    # per request, prefill ones first; -1 = no LoRA
    slot_ranks: tuple[int, ...]

    def shape(self) -> StepShape:
        tokens = list(self.prefill_lens) + [1] * len(self.context_lens)
        ranks = [self.slot_ranks[s] if s >= 0 else 0 for s in self.request_slots]
        used = sorted({s for s in self.request_slots if s >= 0})
        return StepShape(
            prefill_tokens=sum(self.prefill_lens), prefill_requests=len(self.prefill_lens),
            prefill_sq_tokens=sum(n * n for n in self.prefill_lens),
            decode_requests=len(self.context_lens),
            decode_context_tokens=sum(self.context_lens),
            distinct_adapters=len(used), sum_ranks=sum(self.slot_ranks[s] for s in used),
            lora_token_ranks=sum(t * r for t, r in zip(tokens, ranks)))

    @property
    def kv_tokens(self) -> int:
        return sum(self.prefill_lens) + sum(self.context_lens)


@dataclass(frozen=True)
class GridConfig:
    """Sizes of the grid; ``quick()`` is a small one for tests and smoke runs."""

    decode_batches: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    decode_contexts: tuple[int, ...] = (16, 64, 256, 1024)
    prefill_requests: tuple[int, ...] = (1, 2, 4, 8)
    prefill_lens: tuple[int, ...] = (16, 64, 256, 1024)
    lora_batches: tuple[int, ...] = (4, 16, 64)
    lora_distinct: tuple[int, ...] = (1, 4, 16, 64)
    ranks: tuple[int, ...] = (8, 16, 32, 64)
    random_points: int = 60
    max_step_tokens: int = 4096      # prefill tokens + decode requests
    max_kv_tokens: int = 65536       # KV tokens of one batch (bounds the pool)
    max_context: int = 2048          # longest sequence (capped by the model's)

    def __post_init__(self) -> None:
        for name in ("decode_batches", "decode_contexts", "prefill_requests", "prefill_lens",
                     "lora_batches", "lora_distinct", "ranks"):
            values = getattr(self, name)
            if not values or min(values) < 1:
                raise ValueError(f"GridConfig.{name} must be a non-empty tuple of ints >= 1, "
                                 f"got {values}")
        for name in ("max_step_tokens", "max_kv_tokens", "max_context"):
            if getattr(self, name) < 1:
                raise ValueError(f"GridConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.random_points < 0:
            raise ValueError(f"GridConfig.random_points must be >= 0, got {self.random_points}")

    @classmethod
    def quick(cls) -> GridConfig:
        return cls(decode_batches=(1, 4, 16), decode_contexts=(16, 128),
                   prefill_requests=(1, 2), prefill_lens=(16, 64), lora_batches=(8,),
                   lora_distinct=(1, 4), ranks=(8, 32), random_points=8,
                   max_step_tokens=256, max_kv_tokens=4096, max_context=256)


def _spread(center: int, count: int, limit: int, rng: np.random.Generator) -> tuple[int, ...]:
    """``count`` lengths uniform in [center/2, 3 center/2], within [1, limit]."""
    center = min(center, limit)
    low, high = max(1, center // 2), min(limit, max(1, center * 3 // 2))
    return tuple(int(v) for v in rng.integers(low, high + 1, size=count))


def _contexts(center: int, count: int, limit: int, rng: np.random.Generator
              ) -> tuple[int, ...]:
    """``count`` decode contexts uniform in [1, 2 center], within ``limit``.

    As wide as in a serving batch, where requests are at every stage of their output: some
    attention implementations pay for the longest context of the batch (the CPU reference pads
    to it), so a grid of near-equal contexts would understate their cost in real steps.
    """
    high = max(1, min(limit, 2 * center))
    return tuple(int(v) for v in rng.integers(1, high + 1, size=count))


def _slots(requests: int, distinct: int, rng: np.random.Generator) -> tuple[int, ...]:
    """Each of ``distinct`` slots used at least once, the rest of the requests at random."""
    slots = list(range(distinct)) + list(rng.integers(0, distinct, size=requests - distinct))
    return tuple(int(s) for s in rng.permutation(slots))


def _compact(slots: Sequence[int], ranks: Sequence[int]
             ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Renumber the slots still in use 0..k-1 and drop the ranks of unused ones."""
    used = sorted({s for s in slots if s >= 0})
    index = {s: i for i, s in enumerate(used)}
    return tuple(index.get(s, -1) for s in slots), tuple(ranks[s] for s in used)


def build_grid(config: GridConfig, max_context: int, rng: np.random.Generator
               ) -> list[GridPoint]:
    """The grid for a model serving sequences up to ``max_context`` tokens."""
    limit = min(config.max_context, max_context)
    points: list[GridPoint] = []

    def add(prefill: Sequence[int], contexts: Sequence[int], slots: Sequence[int],
            ranks: Sequence[int]) -> None:
        point = GridPoint(tuple(prefill), tuple(contexts), tuple(slots), tuple(ranks))
        if (point.shape().tokens <= config.max_step_tokens
                and point.kv_tokens <= config.max_kv_tokens):
            points.append(point)

    for batch in config.decode_batches:
        for context in config.decode_contexts:
            if context <= limit:
                add((), _contexts(context, batch, limit, rng), (-1,) * batch, ())
    for requests in config.prefill_requests:
        for length in config.prefill_lens:
            if length <= limit:
                add(_spread(length, requests, limit, rng), (), (-1,) * requests, ())
    mid_context = min(limit, config.decode_contexts[len(config.decode_contexts) // 2])
    for batch in config.lora_batches:
        for distinct in (d for d in config.lora_distinct if d <= batch):
            for rank in config.ranks:
                add((), _contexts(mid_context, batch, limit, rng), _slots(batch, distinct, rng),
                    (rank,) * distinct)
    mid_len = min(limit, config.prefill_lens[len(config.prefill_lens) // 2])
    for requests in [r for r in config.prefill_requests if r > 1] or [1]:
        for distinct in sorted({1, requests}):
            for rank in config.ranks:
                add(_spread(mid_len, requests, limit, rng), (), _slots(requests, distinct, rng),
                    (rank,) * distinct)
    for _ in range(config.random_points):
        num_prefill = int(rng.integers(0, max(config.prefill_requests) + 1))
        num_decode = int(rng.integers(0 if num_prefill else 1, max(config.decode_batches) + 1))
        prefill = _spread(int(rng.choice(config.prefill_lens)), num_prefill, limit, rng)
        contexts = _contexts(int(rng.choice(config.decode_contexts)), num_decode, limit, rng)
        requests = num_prefill + num_decode
        distinct = int(rng.integers(0, min(requests, max(config.lora_distinct)) + 1))
        slots = _slots(requests, distinct, rng) if distinct else (-1,) * requests
        ranks = tuple(int(r) for r in rng.choice(config.ranks, size=distinct))
        # some requests on the base model even when adapters are in the batch
        add(prefill, contexts, *_compact([s if rng.random() < 0.8 else -1 for s in slots], ranks))
    return points
