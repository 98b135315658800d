"""The merged-weights baseline (S-LoRA's vLLM-packed analog): one merged copy of the model
per adapter, as many copies as device memory holds, the rest merged on demand.

Each copy is a manylora ``Engine`` of its own (continuous batching and a paged KV pool of its
share of memory, like one vLLM instance per merged model) serving only base-model requests,
with ``W + scale * B @ A`` merged into its weights. Copies take turns, one engine step each,
the way separate servers share one device. A copy with nothing left to do is given the adapter
whose first waiting request is oldest: the weights the old adapter changed are restored from
a pristine host copy of the base model and the new adapter is merged in (timed; in the real
thing this is loading another merged checkpoint). Requests of an adapter already merged in a
copy go straight to that copy. Adapters' A and B are read into host memory before the clock
starts, as every variant has its adapters in host memory.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from manylora.engine.engine import Engine
from manylora.engine.model_config import ModelConfig
from manylora.engine.peft_loader import read_adapter

from scaling.context import CellContext, Served
from scaling.engine_variants import collect, engine_config, submit

BASE = -1


def fused_rows(config: ModelConfig) -> dict[str, tuple[str, int]]:
    """Per LoRA target: the fused weight of ``engine.layers.DecoderLayer`` holding its rows
    and where they start (q|k|v in ``wqkv``, gate|up in ``wgu``)."""
    shape = config.shape(dtype_bytes=2)  # widths only; the byte size does not matter here
    q, kv, inter = shape.q_width, shape.kv_width, shape.intermediate_size
    return {"q": ("wqkv", 0), "k": ("wqkv", q), "v": ("wqkv", q + kv), "o": ("wo", 0),
            "gate": ("wgu", 0), "up": ("wgu", inter), "down": ("wd", 0)}


@dataclass(frozen=True)
class Delta:
    """One adapted linear layer: ``W[row:row + d_out] += scale * B @ A``."""

    layer: int
    weight: str
    row: int
    scale: float
    a: torch.Tensor  # [rank, d_in]
    b: torch.Tensor  # [d_out, rank]


def read_deltas(folder: Path, config: ModelConfig) -> list[Delta]:
    """An adapter folder's A and B per adapted layer, in host memory."""
    adapter = read_adapter(folder, config)
    rows = fused_rows(config)
    with safe_open(adapter.weights_file, framework="pt") as f:
        return [Delta(m.layer, *rows[m.target], m.scale, f.get_tensor(m.a_key),
                      f.get_tensor(m.b_key)) for m in adapter.modules]


@dataclass
class MergedCopy:
    """One engine whose weights hold the base model plus (at most) one merged adapter."""

    engine: Engine
    adapter: int = BASE
    touched: set[tuple[int, str]] = field(default_factory=set)  # (layer, weight) now merged

    def weight(self, layer: int, name: str) -> torch.Tensor:
        return getattr(self.engine.model.layers[layer], name)


class MergedBaseline:
    name = "merged"
    label = "merged weights: one merged model copy per adapter, re-merged on demand"

    def run(self, ctx: CellContext) -> Served:
        t0 = time.perf_counter()
        count, pool_bytes = ctx.merged_copies()
        config = engine_config(ctx, pool_bytes)
        model_config, weights = ctx.checkpoint()
        # each copy merges into weights of its own: copied from memory, not read from disk
        copies = [MergedCopy(Engine.from_weights(
            model_config, {k: w.to(ctx.device, ctx.dtype, copy=True) for k, w in weights.items()},
            None, config, model_dir=ctx.model_dir)) for _ in range(count)]
        deltas = {aid: read_deltas(ctx.adapter_folders[aid], ctx.model_config)
                  for aid in ctx.used_adapters}
        touched = {(d.layer, d.weight) for ds in deltas.values() for d in ds}
        pin = ctx.device.type == "cuda"
        pristine = {key: copies[0].weight(*key).to("cpu", copy=True) for key in touched}
        if pin:
            pristine = {key: w.pin_memory() for key, w in pristine.items()}
        served = Served(setup_s=time.perf_counter() - t0,
                        notes={"copies": count, "copy_pool_pages":
                               copies[0].engine.scheduler.pool.num_pages})
        waiting: OrderedDict[int, list[int]] = OrderedDict()
        for i, aid in enumerate(ctx.adapter_ids):  # all arrive at once: FCFS by request id
            waiting.setdefault(aid, []).append(i)
        ctx.start_clock()
        for copy in copies:
            copy.engine.clock = ctx.clock
        merges, merge_s = 0, 0.0
        while (waiting or any(c.engine.busy for c in copies)) and not ctx.over_budget():
            for copy in copies:
                if copy.adapter in waiting:
                    submit(copy.engine, ctx, waiting.pop(copy.adapter), BASE)
                elif not copy.engine.busy and waiting:
                    merged = {c.adapter for c in copies}
                    aid = next((a for a in waiting if a not in merged), None)
                    if aid is None:
                        continue
                    start = ctx.clock()
                    self._remerge(copy, aid, deltas.get(aid, []), pristine)
                    ctx.synchronize()
                    merge_s += ctx.clock() - start
                    merges += 1
                    submit(copy.engine, ctx, waiting.pop(aid), BASE)
            for copy in copies:
                if copy.engine.busy:
                    copy.engine.check_progress(copy.engine.step())
        ctx.stop(served)
        for copy in copies:
            collect(copy.engine, served)
        served.notes.update(merges=merges, merge_s=round(merge_s, 3))
        return served

    @staticmethod
    def _remerge(copy: MergedCopy, adapter_id: int, deltas: list[Delta],
                 pristine: dict[tuple[int, str], torch.Tensor]) -> None:
        """Restore what the old adapter changed, then merge ``deltas`` in place."""
        for key in copy.touched:
            copy.weight(*key).copy_(pristine[key], non_blocking=True)
        copy.touched = set()
        for d in deltas:
            w = copy.weight(d.layer, d.weight)  # [d_out_total, d_in]
            b = d.b.to(w.device, torch.float32)
            a = d.a.to(w.device, torch.float32)
            rows = w[d.row:d.row + b.shape[0]]
            rows.copy_((rows.float() + d.scale * (b @ a)).to(w.dtype))
            copy.touched.add((d.layer, d.weight))
        copy.adapter = adapter_id
