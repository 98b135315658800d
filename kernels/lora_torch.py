"""The plain-torch LoRA path the engine runs on CPU: one plan per step, used by every layer.

``TorchLoraStep(meta, pool, target_dims)`` reads the step's metadata to the host once: runs of
tokens that share a slot (segments; the engine orders prefill and decode requests by slot, so
an adapter's tokens form one segment in each part), per slot and target the rank, A/B offsets
and scale, and whether the slot's pages are one ascending run of page ids. ``apply(y, x,
layer, targets)`` then adds LoRA for targets that read the same ``x`` and write side by side
into ``y`` (q|k|v, o, gate|up, down): per segment, one matmul to shrink and one to expand for
each group of targets with equal rank, width and scale that sit at equal distances in the
packing, so that one strided view holds all their A's (q, k, v of an MHA model; gate and up).

A slot whose pages are one run is read in place, as strided views of the pool, so its weights
are read once per layer and never copied; the pages of any other slot are copied out once per
layer, for all the targets of that layer. fp32 math as in the references; in an fp32 model
that is the model's own dtype, so nothing is converted either.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from manylora.kernels.batch_meta import BatchMeta


@dataclass(frozen=True)
class _Group:
    """Targets of one ``apply`` that one slot's matmuls handle together."""

    count: int       # targets in the group (G)
    rank: int
    a_offset: int    # flat element of the first target's A in the slot's adapter
    b_offset: int    # ... and of its B^T
    step: int        # elements from one target's A (and B^T) to the next one's
    col: int         # first column of the group's output in y
    d_out: int       # output width of each target
    scale: float

    def op(self, d_in: int) -> tuple:
        """What the inner loop needs, flat: (G, A's size, stride and offset, B's too, the
        output columns, d_out, scale). G = 1 has 2-d views."""
        g, r = self.count, self.rank
        if g == 1:
            a_view, b_view = ((r, d_in), (d_in, 1)), ((r, self.d_out), (self.d_out, 1))
        else:
            a_view = ((g, r, d_in), (self.step, d_in, 1))
            b_view = ((g, r, self.d_out), (self.step, self.d_out, 1))
        return (g, *a_view, self.a_offset, *b_view, self.b_offset, self.col,
                self.col + g * self.d_out, self.d_out, self.scale)


def token_segments(token_slots: Sequence[int]) -> list[tuple[int, int, int]]:
    """Runs of consecutive tokens with one slot >= 0: (slot, start, end)."""
    out: list[tuple[int, int, int]] = []
    start = 0
    for i in range(1, len(token_slots) + 1):
        if i == len(token_slots) or token_slots[i] != token_slots[start]:
            if token_slots[start] >= 0:
                out.append((token_slots[start], start, i))
            start = i
    return out


class TorchLoraStep:
    """One step's LoRA for every layer; see the module docstring."""

    def __init__(self, meta: BatchMeta, pool: torch.Tensor,
                 target_dims: Sequence[tuple[int, int]]) -> None:
        # pool: [L, num_pages, page_elems], contiguous; target_dims: (d_in, d_out) per target
        if not pool.is_contiguous():
            raise ValueError("TorchLoraStep needs a contiguous pool tensor")
        if len(target_dims) != meta.num_targets:
            raise ValueError(f"{len(target_dims)} target dims for {meta.num_targets} targets")
        self.pool = pool
        self.dims = tuple(target_dims)
        self.segments = token_segments(meta.token_slots.tolist())
        self.ranks = meta.lora_ranks.tolist()        # [targets][S]
        self.a_offsets = meta.lora_a_offsets.tolist()
        self.b_offsets = meta.lora_b_offsets.tolist()
        self.scales = meta.lora_scales.tolist()
        self.max_ranks = meta.lora_max_ranks
        self._groups: dict[tuple[int, ...], list[list[tuple]]] = {}  # targets -> plan
        self._in_place, self._copy_index, self._copy_base = self._page_runs(meta)
        self._copy_layer, self._copy = -1, pool.new_empty(0)

    def _page_runs(self, meta: BatchMeta) -> tuple[list[int], torch.Tensor, list[int]]:
        """Per slot: its first page's element offset when the pages its matrices span are one
        ascending run (-1 otherwise); the pages to copy for the other slots, and where each
        slot starts in that copy."""
        page_elems = self.pool.shape[2]
        pages = meta.adapter_pages.cpu().numpy().astype(np.int64)  # [S, max_pages]
        num_slots, width = pages.shape
        in_place, base = [-1] * num_slots, [0] * num_slots
        if not num_slots or not width:
            return in_place, torch.zeros(0, dtype=torch.int64, device=self.pool.device), base
        ranks = np.asarray(self.ranks, dtype=np.int64)  # [targets, S]
        b_offsets = np.asarray(self.b_offsets, dtype=np.int64)
        d_out = np.asarray([d for _, d in self.dims], dtype=np.int64)[:, None]
        ends = np.where(ranks > 0, b_offsets + ranks * d_out, 0).max(axis=0)  # [S] elements
        used = np.minimum(-(-ends // page_elems), width)  # pages each slot's matrices span
        past_end = np.arange(width - 1)[None, :] >= used[:, None] - 1
        run = ((np.diff(pages, axis=1) == 1) | past_end).all(axis=1)  # [S]
        copied, offset = [], 0
        for s in range(num_slots):
            if run[s]:
                in_place[s] = int(pages[s, 0]) * page_elems
            elif used[s]:
                copied.append(pages[s, :used[s]])
                base[s] = offset
                offset += int(used[s]) * page_elems
        index = np.concatenate(copied) if copied else np.zeros(0, dtype=np.int64)
        return in_place, torch.from_numpy(index).to(self.pool.device), base

    def _plan(self, targets: tuple[int, ...]) -> list[list[tuple]]:
        """Per slot, the ops (``_Group.op``) for the groups of ``targets`` it adapts."""
        cols, col = [], 0
        for t in targets:
            cols.append(col)
            col += self.dims[t][1]
        d_in = self.dims[targets[0]][0]
        plan = []
        for s in range(len(self._in_place)):
            groups: list[_Group] = []
            for t, c in zip(targets, cols):
                rank = self.ranks[t][s]
                if rank == 0:
                    continue
                a, b, d_out, scale = self.a_offsets[t][s], self.b_offsets[t][s], \
                    self.dims[t][1], self.scales[t][s]
                last = groups[-1] if groups else None
                if last is not None and last.rank == rank and last.d_out == d_out \
                        and last.scale == scale and c == last.col + last.count * d_out \
                        and b - a == last.b_offset - last.a_offset:
                    step = a - last.a_offset if last.count == 1 else last.step
                    if step > 0 and a == last.a_offset + last.count * step:
                        groups[-1] = _Group(last.count + 1, rank, last.a_offset,
                                            last.b_offset, step, last.col, d_out, scale)
                        continue
                groups.append(_Group(1, rank, a, b, 0, c, d_out, scale))
            plan.append([g.op(d_in) for g in groups])
        self._groups[targets] = plan
        return plan

    def _copied(self, layer: int, slot: int) -> tuple[torch.Tensor, int]:
        """(the copy of this layer's scattered adapter pages, storage offset of the slot's
        first adapter element in it); copied at the first call for a layer."""
        if self._copy_layer != layer:
            self._copy = self.pool[layer].index_select(0, self._copy_index).reshape(-1)
            self._copy_layer = layer
        return self._copy, self._copy.storage_offset() + self._copy_base[slot]

    def apply(self, y: torch.Tensor, x: torch.Tensor, layer: int,
              targets: tuple[int, ...]) -> None:
        """``y[:, cols of t] += scale * (x @ A_t^T) @ B_t`` for each target t of ``targets``.

        x: [T, d_in] (every target of the call reads it); y: [T, sum of d_out], the targets'
        outputs side by side in ``targets`` order, last dimension contiguous.
        """
        if not any(self.max_ranks[t] for t in targets):
            return
        plan = self._groups.get(targets) or self._plan(targets)
        exact = x.dtype == torch.float32 and self.pool.dtype == torch.float32
        pool = self.pool
        layer_base = pool.storage_offset() + layer * pool.shape[1] * pool.shape[2]
        for slot, start, end in self.segments:
            ops = plan[slot]
            if not ops:
                continue
            base = self._in_place[slot]
            src, base = (pool, layer_base + base) if base >= 0 else self._copied(layer, slot)
            xt = x[start:end].T if exact else x[start:end].float().T  # [d_in, n]
            for g, a_size, a_stride, a_off, b_size, b_stride, b_off, c0, c1, d_out, scale \
                    in ops:
                a = src.as_strided(a_size, a_stride, base + a_off)  # [(G,) r, d_in]
                b = src.as_strided(b_size, b_stride, base + b_off)  # [(G,) r, d_out]
                out = y[start:end, c0:c1]  # [n, G d_out]
                if not exact:
                    a, b = a.float(), b.float()
                    delta = torch.matmul(torch.matmul(a, xt).transpose(-1, -2), b)
                    if g > 1:  # [G, n, d_out] -> [n, G d_out]
                        delta = delta.transpose(0, 1).reshape(end - start, -1)
                    out.copy_((out.float() + scale * delta).to(y.dtype))
                elif g == 1:
                    out.addmm_((a @ xt).T, b, alpha=scale)
                else:
                    out.view(end - start, g, d_out).transpose(0, 1).baddbmm_(
                        torch.matmul(a, xt).transpose(1, 2), b, alpha=scale)
