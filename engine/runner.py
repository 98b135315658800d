"""One step on the device: host rows -> ``BatchMeta`` (built once) -> forward -> logits.

``StepRows`` describes a step in host form (token ids, page tables, adapter slots); the engine
fills it from a ``StepPlan``, and ``synthetic_rows`` fills it for a batch of a given shape with
no scheduler at all (what the profiler times over a grid of shapes). ``Runner.run`` orders the
prefill requests, and the decode requests, by slot so that requests sharing an adapter form
one segment (the kernels' contract for prefill; for decode it lets the CPU LoRA path multiply
each adapter's tokens at once), builds the metadata with one host-to-device copy, runs the
model and returns the logits in the caller's row order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from manylora.engine.model import LlamaModel
from manylora.engine.model_shape import TARGETS, PoolLayout
from manylora.engine.pool_tensors import PoolTensors
from manylora.kernels.batch_meta import BatchMeta

# per target in canonical order: ranks, A offsets, B offsets, scales (AdapterStore.slot_row)
SlotRow = tuple[Sequence[int], Sequence[int], Sequence[int], Sequence[float]]


@dataclass
class StepRows:
    """A step's requests in host form: prefill rows, then decode rows, then adapter slots."""

    prefill_tokens: list[np.ndarray] = field(default_factory=list)   # [len] int64 each
    prefill_slots: list[int] = field(default_factory=list)            # -1 = no LoRA
    prefill_kv_pages: list[np.ndarray] = field(default_factory=list)  # page table each
    decode_tokens: list[int] = field(default_factory=list)            # the token fed back
    decode_slots: list[int] = field(default_factory=list)
    decode_context_lens: list[int] = field(default_factory=list)      # incl. the new token
    decode_kv_pages: list[np.ndarray] = field(default_factory=list)
    slot_pages: list[np.ndarray] = field(default_factory=list)        # adapter pages per slot
    slot_rows: list[SlotRow] = field(default_factory=list)

    @property
    def num_requests(self) -> int:
        return len(self.prefill_tokens) + len(self.decode_tokens)


def synchronize(device: torch.device) -> None:
    """Wait for ``device`` (nothing to wait for on a CPU): before and after a timed step."""
    if device.type != "cpu":
        torch.accelerator.synchronize(device)


class Runner:
    """Executes ``StepRows`` with the model over the pool."""

    def __init__(self, model: LlamaModel, pool: PoolTensors) -> None:
        self.model = model
        self.pool = pool
        self.device = model.device

    def build_meta(self, rows: StepRows, prefill_order: Sequence[int],
                   decode_order: Sequence[int] | None = None) -> BatchMeta:
        """The step's BatchMeta with prefill and decode requests taken in the given orders
        (decode: the rows' own order by default)."""
        if decode_order is None:
            decode_order = range(len(rows.decode_tokens))
        tpp = self.pool.layout.tokens_per_page
        slot_rows = rows.slot_rows
        return BatchMeta.build(
            prefill_lens=[len(rows.prefill_tokens[i]) for i in prefill_order],
            prefill_slots=[rows.prefill_slots[i] for i in prefill_order],
            prefill_kv_pages=[rows.prefill_kv_pages[i] for i in prefill_order],
            decode_context_lens=[rows.decode_context_lens[i] for i in decode_order],
            decode_slots=[rows.decode_slots[i] for i in decode_order],
            decode_kv_pages=[rows.decode_kv_pages[i] for i in decode_order],
            adapter_pages=rows.slot_pages,
            lora_ranks=[r[0] for r in slot_rows], lora_a_offsets=[r[1] for r in slot_rows],
            lora_b_offsets=[r[2] for r in slot_rows], lora_scales=[r[3] for r in slot_rows],
            tokens_per_page=tpp, device=self.device, num_targets=len(TARGETS))

    @torch.inference_mode()
    def run(self, rows: StepRows) -> torch.Tensor:
        """Logits [R, V] fp32: prefill rows in the caller's order, then decode rows."""
        num_prefill, num_decode = len(rows.prefill_tokens), len(rows.decode_tokens)
        # by slot, so that each adapter's prefill tokens and its decode tokens form one
        # segment each (the LoRA ops work per segment)
        prefill_order = sorted(range(num_prefill), key=rows.prefill_slots.__getitem__)
        decode_order = sorted(range(num_decode), key=rows.decode_slots.__getitem__)
        meta = self.build_meta(rows, prefill_order, decode_order)
        parts = [rows.prefill_tokens[i] for i in prefill_order]
        parts.append(np.asarray([rows.decode_tokens[i] for i in decode_order], dtype=np.int64))
        tokens = torch.from_numpy(np.concatenate(parts).astype(np.int64, copy=False))
        logits = self.model(tokens.to(self.device), meta, self.pool)  # [R, V]
        order = prefill_order + [num_prefill + i for i in decode_order]
        if order != list(range(rows.num_requests)):
            inverse = np.empty(rows.num_requests, dtype=np.int64)
            inverse[order] = np.arange(rows.num_requests)
            logits = logits[torch.from_numpy(inverse).to(logits.device)]
        return logits


def synthetic_rows(layout: PoolLayout, num_pages: int, prefill_lens: Sequence[int],
                   decode_context_lens: Sequence[int], request_slots: Sequence[int],
                   slot_ranks: Sequence[int], targets: Sequence[str], vocab_size: int,
                   rng: np.random.Generator) -> StepRows:
    """A step of the given shape over a pool of ``num_pages`` with no scheduler.

    ``request_slots`` gives each request (prefill ones first) a slot (-1 = no LoRA); slot s is
    an adapter of rank ``slot_ranks[s]`` on ``targets``. KV pages are taken from the start of
    the pool and adapter pages from the end; ``ValueError`` if the pool is too small. Fill the
    adapter pages with ``fill_synthetic_adapters`` before running.
    """
    if len(request_slots) != len(prefill_lens) + len(decode_context_lens):
        raise ValueError(f"request_slots has {len(request_slots)} entries, expected "
                         f"{len(prefill_lens) + len(decode_context_lens)}")
    rows = StepRows()
    next_kv = 0
    for length in list(prefill_lens) + list(decode_context_lens):
        n = layout.kv_pages(length)
        rows_pages = np.arange(next_kv, next_kv + n, dtype=np.int32)
        next_kv += n
        if len(rows.prefill_tokens) < len(prefill_lens):
            rows.prefill_kv_pages.append(rows_pages)
            rows.prefill_tokens.append(rng.integers(0, vocab_size, length, dtype=np.int64))
        else:
            rows.decode_kv_pages.append(rows_pages)
            rows.decode_context_lens.append(int(length))
            rows.decode_tokens.append(int(rng.integers(0, vocab_size)))
    rows.prefill_slots = [int(s) for s in request_slots[:len(prefill_lens)]]
    rows.decode_slots = [int(s) for s in request_slots[len(prefill_lens):]]
    next_adapter = num_pages
    for rank in slot_ranks:
        adapter = layout.adapter_layout({t: rank for t in targets})
        next_adapter -= adapter.num_pages
        slices = {s.target: s for s in adapter.slices}
        rows.slot_pages.append(np.arange(next_adapter, next_adapter + adapter.num_pages,
                                         dtype=np.int32))
        rows.slot_rows.append((
            [slices[t].rank if t in slices else 0 for t in TARGETS],
            [slices[t].a_offset if t in slices else 0 for t in TARGETS],
            [slices[t].b_offset if t in slices else 0 for t in TARGETS],
            [1.0 if t in slices else 0.0 for t in TARGETS]))
    if next_adapter < next_kv:
        raise ValueError(f"a pool of {num_pages} pages cannot hold this step: {next_kv} KV "
                         f"pages and {num_pages - next_adapter} adapter pages")
    return rows


def fill_synthetic_adapters(pool: PoolTensors, rows: StepRows,
                            rng: np.random.Generator) -> None:
    """Random weights (std 0.02) in every slot's adapter pages, all layers."""
    for pages in rows.slot_pages:
        values = 0.02 * rng.standard_normal(
            (pool.data.shape[0], len(pages), pool.data.shape[2]), dtype=np.float32)
        pool.write_adapter(torch.from_numpy(pages.astype(np.int64)).to(pool.data.device),
                           torch.from_numpy(values))
