"""Per-step batch metadata: the one contract between the engine's data plane and the kernels.

The engine builds one ``BatchMeta`` per scheduler step with ``BatchMeta.build`` and passes it to
every kernel call of that step (all layers, all targets). Everything the kernels index with is
packed into one int32 host buffer and copied to the device once, then split into views.

Token order in a step (docs/internals.md): all prefill tokens, request by request (each
request's tokens contiguous, requests sharing an adapter next to each other so they form one
segment), then one token per decode request. A *slot* is the index of a distinct adapter within
this step (0..S-1); -1 means no LoRA. All index tensors are int32; ``lora_scales`` is float32.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

_INT32_MAX = np.iinfo(np.int32).max


@dataclass(frozen=True)
class LoraTargetMeta:
    """What a LoRA kernel needs for one target (q, k, ..., down) of this step's adapters."""

    adapter_pages: torch.Tensor  # [S, max_adapter_pages] int32: page ids of each slot's adapter
    ranks: torch.Tensor          # [S] int32: rank of the slot on this target, 0 = not adapted
    a_offsets: torch.Tensor      # [S] int32: flat element offset of A ([rank, d_in]) in the adapter
    b_offsets: torch.Tensor      # [S] int32: flat element offset of B^T ([rank, d_out])
    scales: torch.Tensor         # [S] float32: alpha / rank (or alpha / sqrt(rank) with rslora)
    max_rank: int                # largest rank over slots (host int, sizes the shrink output)
    offset_align: int            # largest power of two <= 16 dividing every a/b offset


@dataclass(frozen=True)
class BatchMeta:
    """Everything per step that kernels index with; built once per step by ``build``."""

    # sizes, host ints
    num_prefill_tokens: int      # P
    num_decode_tokens: int       # D (= decode requests)
    num_slots: int               # S
    max_prefill_len: int         # longest prefill request (0 when none)
    max_segment_len: int         # longest run of prefill tokens sharing a slot (0 when none)
    max_context_len: int         # longest decode context incl. the new token (0 when none)
    tokens_per_page: int
    lora_max_ranks: tuple[int, ...]     # per target
    lora_offset_aligns: tuple[int, ...]  # per target, see LoraTargetMeta.offset_align
    # per token, T = P + D
    token_slots: torch.Tensor     # [T] int32: slot of each token, -1 = no LoRA
    positions: torch.Tensor       # [T] int32: position of each token in its request
    kv_store_pages: torch.Tensor  # [T] int32: page receiving each new token's K/V
    kv_store_slots: torch.Tensor  # [T] int32: slot (0..tokens_per_page-1) within that page
    # prefill part
    cu_seqlens: torch.Tensor      # [P_req + 1] int32: prefill request boundaries in tokens
    seg_starts: torch.Tensor      # [num_segs + 1] int32: runs of prefill tokens with one slot
    seg_slots: torch.Tensor       # [num_segs] int32: slot of each run (-1 runs included)
    # decode part
    kv_page_table: torch.Tensor   # [D, max_kv_pages] int32: decode requests' KV pages (0-padded)
    context_lens: torch.Tensor    # [D] int32: context length incl. the new token
    # adapters, per slot and target (targets in the caller's order, canonically q..down)
    adapter_pages: torch.Tensor   # [S, max_adapter_pages] int32 (0-padded)
    lora_ranks: torch.Tensor      # [num_targets, S] int32
    lora_a_offsets: torch.Tensor  # [num_targets, S] int32
    lora_b_offsets: torch.Tensor  # [num_targets, S] int32
    lora_scales: torch.Tensor     # [num_targets, S] float32
    # sampling
    logit_indices: torch.Tensor   # [P_req + D] int32: last token of each request

    @property
    def num_tokens(self) -> int:
        return self.num_prefill_tokens + self.num_decode_tokens

    @property
    def num_targets(self) -> int:
        return len(self.lora_max_ranks)

    @property
    def device(self) -> torch.device:
        return self.token_slots.device

    def lora(self, target: int) -> LoraTargetMeta:
        """The LoRA view of target number ``target`` (its index in the targets given to build)."""
        if not 0 <= target < self.num_targets:
            raise ValueError(f"target index {target} out of range 0..{self.num_targets - 1}")
        return LoraTargetMeta(self.adapter_pages, self.lora_ranks[target],
                              self.lora_a_offsets[target], self.lora_b_offsets[target],
                              self.lora_scales[target], self.lora_max_ranks[target],
                              self.lora_offset_aligns[target])

    @classmethod
    def build(cls, *, prefill_lens: Sequence[int], prefill_slots: Sequence[int],
              prefill_kv_pages: Sequence[Sequence[int]], decode_context_lens: Sequence[int],
              decode_slots: Sequence[int], decode_kv_pages: Sequence[Sequence[int]],
              adapter_pages: Sequence[Sequence[int]], lora_ranks: Sequence[Sequence[int]],
              lora_a_offsets: Sequence[Sequence[int]], lora_b_offsets: Sequence[Sequence[int]],
              lora_scales: Sequence[Sequence[float]], tokens_per_page: int,
              device: torch.device | str, num_targets: int | None = None) -> "BatchMeta":
        """Build one step's metadata from host lists with a single host-to-device copy.

        Per prefill request: its new-token count, slot and KV page list (at least
        ceil(len / tokens_per_page) pages). Per decode request: its context length including the
        new token, slot and KV page list. Per slot: its adapter's page list and, per target,
        rank / a_offset / b_offset / scale (``lora_*[slot][target]``). ``num_targets`` is only
        needed when there are no slots.
        """
        return _build(cls, prefill_lens, prefill_slots, prefill_kv_pages, decode_context_lens,
                      decode_slots, decode_kv_pages, adapter_pages, lora_ranks, lora_a_offsets,
                      lora_b_offsets, lora_scales, tokens_per_page, torch.device(device),
                      num_targets)


def _ints(name: str, values: Sequence[int]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.int64).reshape(-1)
    if arr.size and (arr.min() < -1 or arr.max() > _INT32_MAX):
        raise ValueError(f"{name} has a value outside -1..{_INT32_MAX}")
    return arr


def _ragged(name: str, rows: Sequence[Sequence[int]], num_rows: int) -> np.ndarray:
    """Pad a list of int lists to a [num_rows, max_len] array with zeros (page 0 is never read)."""
    if len(rows) != num_rows:
        raise ValueError(f"{name} has {len(rows)} rows, expected {num_rows}")
    width = max((len(r) for r in rows), default=0)
    out = np.zeros((num_rows, width), dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    if out.size and (out.min() < 0 or out.max() > _INT32_MAX):
        raise ValueError(f"{name} holds a page id outside 0..{_INT32_MAX}")
    return out


def _per_slot_target(name: str, rows, num_slots: int, num_targets: int, dtype) -> np.ndarray:
    arr = np.asarray(rows, dtype=dtype) if num_slots else np.zeros((0, num_targets), dtype)
    if arr.shape != (num_slots, num_targets):
        raise ValueError(f"{name} must be [num_slots={num_slots}][num_targets={num_targets}]")
    return arr.T  # [num_targets, S]


def _align(offsets: np.ndarray) -> int:
    """Largest power of two <= 16 dividing every offset (16 when there are none)."""
    g = int(np.gcd.reduce(offsets)) if offsets.size else 0
    align = 16
    while align > 1 and g % align:
        align //= 2
    return align


def _build(cls, prefill_lens, prefill_slots, prefill_kv_pages, decode_context_lens,
           decode_slots, decode_kv_pages, adapter_pages, lora_ranks, lora_a_offsets,
           lora_b_offsets, lora_scales, tpp, device, num_targets) -> BatchMeta:
    if tpp < 1:
        raise ValueError(f"tokens_per_page must be >= 1, got {tpp}")
    plens = _ints("prefill_lens", prefill_lens)
    pslots = _ints("prefill_slots", prefill_slots)
    ctx = _ints("decode_context_lens", decode_context_lens)
    dslots = _ints("decode_slots", decode_slots)
    n_pre, n_dec = plens.size, ctx.size
    if pslots.size != n_pre:
        raise ValueError(f"prefill_slots has {pslots.size} entries, prefill_lens {n_pre}")
    if dslots.size != n_dec:
        raise ValueError(f"decode_slots has {dslots.size} entries, decode_context_lens {n_dec}")
    if n_pre and plens.min() < 1:
        raise ValueError(f"prefill_lens must be >= 1, got {plens.min()}")
    if n_dec and ctx.min() < 1:
        raise ValueError(f"decode_context_lens must be >= 1, got {ctx.min()}")
    num_slots = len(adapter_pages)
    for name, slots in (("prefill_slots", pslots), ("decode_slots", dslots)):
        if slots.size and slots.max() >= num_slots:
            raise ValueError(f"{name} holds slot {slots.max()} but only {num_slots} slots exist")
    if num_targets is None:
        if not num_slots:
            raise ValueError("num_targets is required when there are no adapter slots")
        num_targets = len(lora_ranks[0])
    ranks = _per_slot_target("lora_ranks", lora_ranks, num_slots, num_targets, np.int64)
    a_off = _per_slot_target("lora_a_offsets", lora_a_offsets, num_slots, num_targets, np.int64)
    b_off = _per_slot_target("lora_b_offsets", lora_b_offsets, num_slots, num_targets, np.int64)
    scales = _per_slot_target("lora_scales", lora_scales, num_slots, num_targets, np.float32)
    for name, arr in (("lora_ranks", ranks), ("lora_a_offsets", a_off),
                      ("lora_b_offsets", b_off)):
        if arr.size and (arr.min() < 0 or arr.max() > _INT32_MAX):
            raise ValueError(f"{name} has a value outside 0..{_INT32_MAX}")
    apages = _ragged("adapter_pages", adapter_pages, num_slots)
    pre_pages = _ragged("prefill_kv_pages", prefill_kv_pages, n_pre)
    dec_pages = _ragged("decode_kv_pages", decode_kv_pages, n_dec)
    for name, lens, rows in (("prefill_kv_pages", plens, prefill_kv_pages),
                             ("decode_kv_pages", ctx, decode_kv_pages)):
        have = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        short = np.nonzero(have * tpp < lens)[0]
        if short.size:
            i = int(short[0])
            raise ValueError(f"{name}[{i}] has {have[i]} pages, too few for {lens[i]} tokens "
                             f"at {tpp} tokens per page")

    # prefill tokens: positions 0..len-1 of each request
    cu = np.zeros(n_pre + 1, dtype=np.int64)
    np.cumsum(plens, out=cu[1:])
    n_p = int(cu[-1])
    req_of_tok = np.repeat(np.arange(n_pre), plens)
    pre_pos = np.arange(n_p) - cu[:-1][req_of_tok]
    pre_store_pages = pre_pages[req_of_tok, pre_pos // tpp] if n_p else pre_pos
    # segments: merge consecutive prefill requests with equal slots
    boundary = np.ones(n_pre, dtype=bool)
    boundary[1:] = pslots[1:] != pslots[:-1]
    seg_first = np.nonzero(boundary)[0]
    seg_starts = np.append(cu[seg_first], n_p)
    seg_slots = pslots[seg_first]
    # decode tokens: the new token sits at position ctx - 1
    dec_pos = ctx - 1
    dec_store_pages = dec_pages[np.arange(n_dec), dec_pos // tpp] if n_dec else dec_pos

    token_slots = np.concatenate([np.repeat(pslots, plens), dslots])
    positions = np.concatenate([pre_pos, dec_pos])
    store_pages = np.concatenate([pre_store_pages, dec_store_pages])
    store_slots = positions % tpp
    logit_indices = np.concatenate([cu[1:] - 1, n_p + np.arange(n_dec)])

    parts = {
        "token_slots": token_slots, "positions": positions, "kv_store_pages": store_pages,
        "kv_store_slots": store_slots, "cu_seqlens": cu, "seg_starts": seg_starts,
        "seg_slots": seg_slots, "kv_page_table": dec_pages, "context_lens": ctx,
        "adapter_pages": apages, "lora_ranks": ranks, "lora_a_offsets": a_off,
        "lora_b_offsets": b_off, "lora_scales": scales, "logit_indices": logit_indices,
    }
    host = np.concatenate([
        (np.ascontiguousarray(a).view(np.int32) if a.dtype == np.float32 else a.astype(np.int32))
        .reshape(-1) for a in parts.values()])
    flat = torch.from_numpy(host).to(device)
    tensors = {}
    for (name, arr), chunk in zip(parts.items(), flat.split([a.size for a in parts.values()])):
        chunk = chunk.view(arr.shape)
        tensors[name] = chunk.view(torch.float32) if arr.dtype == np.float32 else chunk

    seg_lens = np.diff(seg_starts)
    return cls(
        num_prefill_tokens=n_p, num_decode_tokens=n_dec, num_slots=num_slots,
        max_prefill_len=int(plens.max(initial=0)), max_segment_len=int(seg_lens.max(initial=0)),
        max_context_len=int(ctx.max(initial=0)), tokens_per_page=tpp,
        lora_max_ranks=tuple(int(r) for r in ranks.max(axis=1, initial=0)),
        lora_offset_aligns=tuple(_align(np.concatenate([a_off[t], b_off[t]]))
                                 for t in range(num_targets)),
        **tensors)
