"""manylora itself and its S-LoRA ablations, each one ``Engine`` serving the whole trace.

- ``manylora``: as designed: unified pool (KV and adapter pages share it), the heterogeneous
  LoRA ops of the device's default backend (Triton on a GPU, the plain-torch references on
  CPU), adapters swapped host -> pool on demand with LRU eviction, prefetch on;
- ``partitioned``: the same with a partitioned pool (a fixed share of pages for adapters);
- ``padded``: the same with LoRA computed by gathering each token's weights padded to the
  batch's largest rank and a batched matmul.

As in S-LoRA every adapter the trace uses is in host memory before the clock starts (the
control plane's unbounded host tier says so; here the data plane's host copies are read up
front too); copies into the pool, evictions and prefetches happen while serving.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from manylora.engine.engine import Engine
from manylora.engine.engine_config import EngineConfig
from manylora.engine.policy_options import policies_from_options
from manylora.engine.request import RequestState
from manylora.engine.sampling import SamplingParams

from scaling.context import CellContext, Served


def engine_config(ctx: CellContext, pool_bytes: int, pool: str = "unified",
                  lora_backend: str = "") -> EngineConfig:
    """The engine settings every engine-based variant shares (the merged copies too)."""
    preset = ctx.preset
    control = policies_from_options({"max_batch_size": preset.max_batch_size,
                                     "token_budget": preset.token_budget, "pool": pool,
                                     "prefetch": True})
    return EngineConfig(device=str(ctx.device), dtype=preset.dtype, lora_backend=lora_backend,
                        pool_bytes=pool_bytes, control=control, threads=ctx.spec.threads)


def submit(engine: Engine, ctx: CellContext, indices: list[int], adapter_id: int | None = None
           ) -> None:
    """Add the trace's requests ``indices`` (all arrived at t = 0) to ``engine``;
    ``adapter_id`` overrides theirs (the merged copies serve them as the base model)."""
    for i in indices:
        aid = ctx.adapter_ids[i] if adapter_id is None else adapter_id
        engine.add_request(ctx.prompts[i], aid,
                           SamplingParams(max_tokens=ctx.output_lens[i], ignore_eos=True),
                           request_id=ctx.request_ids[i], arrival_s=0.0)


def collect(engine: Engine, served: Served) -> None:
    """Finish times and tokens of the engine's finished requests, into ``served``."""
    for rid, req in engine.requests.items():
        if req.state is RequestState.FINISHED:
            served.finish_s[rid] = float(req.finish_s)
            served.tokens[rid] = engine.tokens(rid)


@dataclass(frozen=True)
class EngineVariant:
    """One Engine over every adapter of the cell, pool kind and LoRA backend as given."""

    name: str
    label: str
    pool: str = "unified"
    lora_backend: str = ""  # empty: the device's default (kernels.backends)

    def run(self, ctx: CellContext) -> Served:
        t0 = time.perf_counter()
        config = engine_config(ctx, ctx.pool_bytes, self.pool, self.lora_backend)
        engine = Engine.from_weights(*ctx.checkpoint(), ctx.adapter_folders, config,
                                     model_dir=ctx.model_dir)
        for adapter_id in ctx.used_adapters:
            engine.store.packed(adapter_id)
        served = Served(setup_s=time.perf_counter() - t0)
        ctx.start_clock()
        engine.clock = ctx.clock
        submit(engine, ctx, list(range(len(ctx.request_ids))))
        steps = 0
        while engine.busy and not ctx.over_budget():
            record = engine.step()
            engine.check_progress(record)
            steps += record.plan.runs
        ctx.stop(served)
        collect(engine, served)
        residency = engine.scheduler.residency
        rejected = sorted({r.reason for r in engine.requests.values()
                           if r.state is RequestState.REJECTED})
        served.notes = {"steps": steps, "adapter_loads": residency.loads,
                        "evictions": residency.evictions,
                        "pool_pages": engine.scheduler.pool.num_pages,
                        "lora_backend": engine.model.lora_backend.name}
        if rejected:
            served.notes["rejected"] = "; ".join(rejected)
        return served


ENGINE_VARIANTS = (
    EngineVariant("manylora", "manylora (unified pool, heterogeneous LoRA, swap + prefetch)"),
    EngineVariant("partitioned", "manylora, partitioned pool", pool="partitioned"),
    EngineVariant("padded", "manylora, LoRA by gather + bmm padded to max rank",
                  lora_backend="padded"),
)
