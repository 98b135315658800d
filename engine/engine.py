"""The engine loop: schedule -> execute on the device -> complete, and the Python API.

``Engine(model_dir, adapters, config)`` loads a checkpoint, registers adapter folders, sizes
the unified pool and builds the control plane's scheduler over it. ``step()`` runs one
scheduler iteration at ``clock()`` (wall seconds since construction unless replaced, as trace
replay does): the plan's adapter loads are copied into pool pages, the model runs the
plan's prefill and decode requests in one forward pass, one token per request is sampled, and
the scheduler is told which requests hit end-of-sequence. ``generate`` is the batch API on top.

A request for an adapter whose folder failed validation is rejected with the validation
message (which names the file); one whose weights fail to read at load time is rejected the
same way, together with every other request for that adapter, and the run goes on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from manylora.engine.adapter_store import AdapterStore, adapter_folders
from manylora.engine.catalog import AdapterCatalog
from manylora.engine.engine_config import EngineConfig
from manylora.engine.hf_loader import load_checkpoint
from manylora.engine.model import LlamaModel, checked_weights
from manylora.engine.model_config import ModelConfig
from manylora.engine.model_shape import TARGETS, PoolLayout
from manylora.engine.peft_loader import AdapterError
from manylora.engine.pool_tensors import PoolTensors
from manylora.engine.request import Request, RequestState
from manylora.engine.runner import Runner, StepRows, fill_synthetic_adapters, synthetic_rows
from manylora.engine.sampling import Sampler, SamplingParams
from manylora.engine.scheduler import build_scheduler
from manylora.engine.step_plan import StepPlan


class EngineStallError(RuntimeError):
    """The scheduler stopped making progress while requests wait: a bug, never bad input."""


@dataclass
class _Sequence:
    """The data plane's side of one request: its tokens and how it samples."""

    prompt: np.ndarray                   # [prompt_len] int64
    params: SamplingParams
    generator: torch.Generator | None
    generated: list[int] = field(default_factory=list)
    logits: list[torch.Tensor] = field(default_factory=list)  # [V] each, when kept


@dataclass(frozen=True)
class Generation:
    """What ``generate`` returns per prompt."""

    request_id: int
    tokens: list[int]
    status: str
    reason: str
    logits: torch.Tensor | None  # [len(tokens), V] fp32 when EngineConfig.keep_logits


@dataclass(frozen=True)
class StepRecord:
    """One executed scheduler iteration, as a run folder's steps.csv needs it."""

    plan: StepPlan
    start_s: float
    duration_s: float


class Engine:
    """A Llama-family model serving many LoRA adapters over one unified pool."""

    def __init__(self, model_dir: str | Path,
                 adapters: str | Path | Mapping[int, str | Path] | Iterable[str | Path] | None
                 = None, config: EngineConfig = EngineConfig(), *,
                 loaded: tuple[ModelConfig, Mapping[str, torch.Tensor]] | None = None) -> None:
        self.config = config
        if config.threads:
            # small per-token matrices: extra OpenMP threads mostly spin (and on a shared
            # machine they contend), so serving often runs best on fewer threads
            torch.set_num_threads(config.threads)
        self.device = torch.device(config.device)
        self.dtype = config.torch_dtype
        if loaded is None:
            self.model_config, weights = load_checkpoint(model_dir, self.dtype, self.device)
        else:
            self.model_config = loaded[0]
            weights = checked_weights(*loaded, self.dtype, self.device)
        self.model_dir = Path(model_dir)
        self.model = LlamaModel(self.model_config, weights, config.lora(self.device),
                                config.attention(self.device))
        shape = self.model_config.shape(dtype_bytes=self.dtype.itemsize)
        self.layout = PoolLayout(shape, config.control.memory.tokens_per_page)
        self.store = AdapterStore(self.model_config, self.layout, self.dtype, self.device)
        if adapters is not None:
            self.store.register_all(adapter_folders(adapters))
        self.catalog = AdapterCatalog(self.layout, self.store.catalog_specs())
        self.scheduler = build_scheduler(config.control, self.layout, self.catalog,
                                         config.pool_pages(self.layout))
        self.pool = PoolTensors(self.layout, self.scheduler.pool.num_pages, self.dtype,
                                self.device)
        self.runner = Runner(self.model, self.pool)
        self.sampler = Sampler(self.device)
        self.requests: dict[int, Request] = {}
        self._seqs: dict[int, _Sequence] = {}
        self._eos = frozenset(self.model_config.eos_token_ids)
        t0 = time.perf_counter()
        self.clock: Callable[[], float] = lambda: time.perf_counter() - t0

    @classmethod
    def from_weights(cls, model_config: ModelConfig, weights: Mapping[str, torch.Tensor],
                     adapters: str | Path | Mapping[int, str | Path] | Iterable[str | Path]
                     | None = None, config: EngineConfig = EngineConfig(),
                     model_dir: str | Path = "") -> "Engine":
        """An engine over a checkpoint already in memory (``weights`` by HF name, as
        ``load_checkpoint`` returns them), so that many engines need one read from disk.
        Tensors already in the config's dtype and on its device are used as they are, shared
        with the caller (the engine never writes them); others are converted. ``model_dir``
        only names the model."""
        return cls(model_dir, adapters, config, loaded=(model_config, weights))

    # ----------------------------------------------------------------- state
    @property
    def busy(self) -> bool:
        """Requests waiting or running, or prefetch copies in flight."""
        return not self.scheduler.idle or bool(self.scheduler.residency.loading)

    def tokens(self, request_id: int) -> list[int]:
        return list(self._seqs[request_id].generated)

    def logits(self, request_id: int) -> torch.Tensor | None:
        """[generated, V] fp32 logits that produced each token (EngineConfig.keep_logits)."""
        kept = self._seqs[request_id].logits
        return torch.stack(kept) if kept else None

    # ----------------------------------------------------------------- requests
    def add_request(self, prompt: Sequence[int] | np.ndarray, adapter_id: int = -1,
                    sampling: SamplingParams = SamplingParams(), request_id: int | None = None,
                    arrival_s: float | None = None) -> Request:
        """Queue one request at ``arrival_s`` (default: now on ``clock``); it may come back
        rejected at once, with the reason."""
        tokens = np.asarray(prompt, dtype=np.int64).reshape(-1)
        vocab = self.model_config.vocab_size
        if not tokens.size or tokens.min() < 0 or tokens.max() >= vocab:
            raise ValueError(f"a prompt needs >= 1 token id, each in [0, {vocab})")
        rid = len(self.requests) if request_id is None else int(request_id)
        if rid in self.requests:
            raise ValueError(f"request id {rid} was already submitted")
        now = self.clock() if arrival_s is None else arrival_s
        req = Request(rid, now, adapter_id, int(tokens.size), sampling.max_tokens)
        self.requests[rid] = req
        self._seqs[rid] = _Sequence(tokens, sampling, sampling.make_generator())
        if adapter_id in self.store.broken:
            _reject(req, self.store.broken[adapter_id])
        elif req.kv_tokens_total > self.model_config.max_context_len:
            _reject(req, f"exceeds-max-context-{self.model_config.max_context_len}")
        else:
            self.scheduler.add_request(req, now)
        return req

    def stage_host_tier(self) -> None:
        """With no host-memory budget the control plane holds every adapter in host memory
        from the start (as S-LoRA does), so read them all now: a first use then costs only
        the copy into the pool, as the simulator assumes. With a budget, adapters start on
        disk in both bodies and nothing is read ahead."""
        if not self.scheduler.residency.host.bounded:
            self.store.preload(list(self.store.adapters))

    # ----------------------------------------------------------------- one step
    def step(self, now: float | None = None) -> StepRecord:
        """One scheduler iteration; ``record.plan.runs`` says whether a forward pass ran.

        ``now`` is when the iteration began on ``clock`` (default: read it here); a driver
        that reads the clock, delivers the arrivals due by then and steps passes it, so the
        plan sees exactly those arrivals, as a simulated step at ``now`` does. The record's
        duration runs from ``now`` to the end of the iteration: schedule, adapter copies,
        forward pass, sampling, ``complete`` and bookkeeping, so that steps run back to back
        tile the engine's time as a simulator's steps do. Tokens are stamped when they exist,
        after sampling."""
        start = self.clock() if now is None else now
        plan = self.scheduler.schedule(start)
        failed = self._load(plan, start)
        produced = start
        if plan.runs:
            stopped = self._execute(plan, failed)
            produced = self.clock()
            self.scheduler.complete(plan, produced, stopped)
        if failed:
            self._fail_adapters(failed, plan)
        for adapter_id in self.store.finished_prefetches():
            self.scheduler.adapter_loaded(adapter_id, produced)
        if plan.loads:
            self.store.retain(self.scheduler.residency.host.__contains__)
        return StepRecord(plan, start, self.clock() - start if plan.runs else 0.0)

    def _load(self, plan: StepPlan, now: float) -> dict[int, str]:
        """Copy the plan's loads into the pool; adapters whose weights fail -> reason."""
        failed = {}
        for load in plan.loads:
            try:
                self.store.copy_to_pool(load.adapter_id, load.pages, self.pool, load.blocking)
            except AdapterError as exc:
                failed[load.adapter_id] = str(exc)
                if not load.blocking:
                    # the copy will never land: let the pages become evictable at once
                    self.scheduler.adapter_loaded(load.adapter_id, now)
        return failed

    def _execute(self, plan: StepPlan, failed: Mapping[int, str]) -> list[int]:
        """Forward pass and sampling for the plan's requests; returns ids that hit EOS (and
        those of failed adapters, which ``complete`` must take out of the batch)."""
        reqs = [r for r in plan.prefill + plan.decode if r.adapter_id not in failed]
        skipped = [r.request_id for r in plan.prefill + plan.decode if r.adapter_id in failed]
        if not reqs:
            return skipped
        rows = self._rows(plan, reqs)
        logits = self.runner.run(rows)  # [R, V]
        seqs = [self._seqs[r.request_id] for r in reqs]
        tokens = self.sampler.sample(logits, [s.params for s in seqs],
                                     [s.generator for s in seqs]).tolist()
        keep = self.config.keep_logits
        kept = logits.cpu() if keep else None
        stopped = skipped
        for i, (req, seq, token) in enumerate(zip(reqs, seqs, tokens)):
            seq.generated.append(token)
            if keep:
                seq.logits.append(kept[i])
            if token in self._eos and not seq.params.ignore_eos:
                stopped.append(req.request_id)
        return stopped

    def _rows(self, plan: StepPlan, reqs: Sequence[Request]) -> StepRows:
        rows = StepRows()
        slots: dict[int, int] = {}
        residency = self.scheduler.residency
        for req in reqs:
            aid = req.adapter_id
            if aid >= 0 and aid not in slots:
                slots[aid] = len(slots)
                rows.slot_pages.append(residency.pages[aid])
                rows.slot_rows.append(self.store.slot_row(aid))
        num_prefill = sum(1 for r in reqs if r.prefill_step == plan.step)
        for req in reqs[:num_prefill]:
            seq = self._seqs[req.request_id]
            tokens = seq.prompt
            if req.base_tokens:  # re-admitted after preemption: recompute generated tokens
                tokens = np.concatenate([tokens, np.asarray(seq.generated[:req.base_tokens],
                                                            dtype=np.int64)])
            rows.prefill_tokens.append(tokens)
            rows.prefill_slots.append(slots.get(req.adapter_id, -1))
            rows.prefill_kv_pages.append(req.kv_pages)
        for req in reqs[num_prefill:]:
            rows.decode_tokens.append(self._seqs[req.request_id].generated[-1])
            rows.decode_slots.append(slots.get(req.adapter_id, -1))
            rows.decode_context_lens.append(req.context_len(plan.step))
            rows.decode_kv_pages.append(req.kv_pages)
        return rows

    def _fail_adapters(self, failed: Mapping[int, str], plan: StepPlan) -> None:
        """Reject every request of adapters whose weights could not be read: those of this
        step (``complete`` already took them out of the batch) and those still waiting."""
        for req in plan.prefill + plan.decode:
            if req.adapter_id in failed:
                _reject(req, failed[req.adapter_id])
                req.output_tokens = len(self._seqs[req.request_id].generated)
                if not req.output_tokens:
                    req.first_token_s = None  # ``complete`` stamped a token it never made
        for req in self.requests.values():
            if req.adapter_id in failed and req.state is RequestState.WAITING:
                self.scheduler.queue.remove(req)
                _reject(req, failed[req.adapter_id])

    def warmup(self, seed: int = 0) -> None:
        """Run one throwaway prefill + decode step with a rank-8 adapter on every target, so
        one-time costs (allocator growth, kernel compilation) do not land in a measured step.
        Uses free pages only; KV and adapter pages are always rewritten before they are read."""
        layout, pages = self.layout, self.scheduler.pool.num_pages
        rng = np.random.default_rng(seed)
        ranks = [8] if layout.adapter_pages(8, TARGETS) + 2 * layout.kv_pages(9) < pages else []
        rows = synthetic_rows(layout, pages, [8], [9], [0 if ranks else -1] * 2, ranks, TARGETS,
                              self.model_config.vocab_size, rng)
        fill_synthetic_adapters(self.pool, rows, rng)
        self.sampler.sample(self.runner.run(rows), [SamplingParams()] * 2, [None, None])

    # ----------------------------------------------------------------- batch API
    def check_progress(self, record: StepRecord) -> None:
        """EngineStallError when a step changed nothing and nothing ever will (a bug)."""
        sched = self.scheduler
        if (not record.plan.runs and not record.plan.loads and not sched.running
                and not sched.residency.loading and len(sched.queue)
                and sched.next_event_time() == float("inf")):
            raise EngineStallError(f"the scheduler admits none of {len(sched.queue)} waiting "
                                   f"requests with an idle engine")

    def run_until_done(self) -> list[StepRecord]:
        """Step until nothing waits, runs or loads; then evict idle adapters so the pool
        ends empty. Returns the steps that ran a forward pass."""
        records = []
        while self.busy:
            record = self.step()
            self.check_progress(record)
            if record.plan.runs:
                records.append(record)
        self.scheduler.unload_adapters()
        return records

    def generate(self, prompts: Sequence[Sequence[int]], adapter_ids: Sequence[int] | None = None,
                 sampling: SamplingParams | Sequence[SamplingParams] = SamplingParams()
                 ) -> list[Generation]:
        """Run the prompts (adapter -1 = base model) to completion, all arriving now. One
        SamplingParams is shared by every prompt (its seed too); pass a list to vary seeds."""
        ids = list(adapter_ids) if adapter_ids is not None else [-1] * len(prompts)
        params = [sampling] * len(prompts) if isinstance(sampling, SamplingParams) \
            else list(sampling)
        if not len(ids) == len(params) == len(prompts):
            raise ValueError(f"{len(prompts)} prompts, {len(ids)} adapter ids and "
                             f"{len(params)} sampling settings")
        reqs = [self.add_request(p, a, s) for p, a, s in zip(prompts, ids, params)]
        self.run_until_done()
        return [Generation(r.request_id, self.tokens(r.request_id), r.state.value, r.reason,
                           self.logits(r.request_id)) for r in reqs]


def _reject(req: Request, reason: str) -> None:
    """Mark ``req`` rejected; the reason goes into a CSV cell, so no commas or quotes."""
    req.state = RequestState.REJECTED
    req.reason = " ".join(reason.replace(",", ";").replace('"', "'").split())
