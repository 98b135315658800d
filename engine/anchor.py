"""Speed anchors in a replay (engine/anchor_config.py says why): one timed pass over a few
fixed steps on a small pool of their own, beside the engine's model.

``AnchorRunner`` builds the anchor's batches once (synthetic rows over its own
``PoolTensors``, random adapter weights, the engine's targets) and ``timed_pass`` runs each of
them once, in a fresh random order, the way ``Engine.step`` runs a step (BatchMeta, model,
sampler). The replay loop (replay.py) pauses its clock around each pass, so the engine's own
steps and the trace's arrivals never see it. Data plane: imports torch.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from manylora.engine.anchor_config import AnchorConfig, anchor_points
from manylora.engine.model import LlamaModel
from manylora.engine.model_shape import PoolLayout
from manylora.engine.pool_tensors import PoolTensors
from manylora.engine.runner import (Runner, fill_synthetic_adapters, synchronize,
                                   synthetic_rows)
from manylora.engine.sampling import Sampler, SamplingParams


class AnchorRunner:
    """The anchor's batches over ``model``, ready to be timed."""

    def __init__(self, model: LlamaModel, layout: PoolLayout, dtype: torch.dtype,
                 config: AnchorConfig, targets: tuple[str, ...]) -> None:
        self.config = config
        points = anchor_points(config)
        num_pages = max(sum(layout.kv_pages(n) for n in p.prefill_lens + p.context_lens)
                        + sum(layout.adapter_pages(r, targets) for r in p.slot_ranks)
                        for p in points)
        self.runner = Runner(model, PoolTensors(layout, num_pages, dtype, model.device))
        self.sampler = Sampler(model.device)
        self.rng = np.random.default_rng(config.seed)
        vocab = model.config.vocab_size
        self.rows = []
        for p in points:
            rows = synthetic_rows(layout, num_pages, p.prefill_lens, p.context_lens,
                                  p.request_slots, p.slot_ranks, targets, vocab, self.rng)
            fill_synthetic_adapters(self.runner.pool, rows, self.rng)
            self.rows.append(rows)

    def timed_pass(self) -> list[float]:
        """Seconds each anchor step took (in ``anchor_points`` order), every step run once,
        after ``settle_passes`` untimed passes (AnchorConfig says why)."""
        for _ in range(self.config.settle_passes):
            self._run_pass()
        return self._run_pass()

    def _run_pass(self) -> list[float]:
        seconds = [0.0] * len(self.rows)
        greedy = SamplingParams()
        for i in self.rng.permutation(len(self.rows)):
            rows = self.rows[i]
            params = [greedy] * rows.num_requests
            synchronize(self.runner.device)
            start = time.perf_counter()
            self.sampler.sample(self.runner.run(rows), params, [None] * len(params))
            seconds[i] = time.perf_counter() - start
        return seconds
