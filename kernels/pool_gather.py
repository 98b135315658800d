"""Reading adapter weights out of the paged pool (the layout of docs/internals.md).

An adapter's per-layer weights are one flat element space spread over its page list: flat
element ``e`` lives on page ``pages[e // page_elems]`` at offset ``e % page_elems``. A target's
``A`` is ``[rank, d_in]`` at ``a_offset`` and its ``B^T`` is ``[rank, d_out]`` at ``b_offset``.
``pool_offsets`` (any element) and ``pool_tile_offsets`` (a tile of row chunks no wider than a
page: two page-table reads per row instead of one per element) compute element addresses inside
Triton kernels. With plain torch, ``gather_rows`` copies one such matrix out of the pool,
``slot_matrices`` many with one copy (the references), and ``gather_padded`` pads all of them
to one rank (the padded baseline).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def pool_offsets(pages_row_ptr, e, mask, PAGE_ELEMS: tl.constexpr):
    """Element offsets into ``pool_layer`` of flat adapter elements ``e`` (any shape)."""
    page = tl.load(pages_row_ptr + e // PAGE_ELEMS, mask=mask, other=0)
    return page.to(tl.int64) * PAGE_ELEMS + e % PAGE_ELEMS


@triton.jit
def pool_tile_offsets(pages_row_ptr, row_start, num_valid, mask_row, BLOCK: tl.constexpr,
                      PAGE_ELEMS: tl.constexpr):
    """Offsets [R, BLOCK] of flat elements ``row_start[:, None] + arange(BLOCK)[None, :]``.

    row_start: [R] flat element of each row's first tile column. BLOCK <= PAGE_ELEMS, so a row
    chunk touches at most two pages; only the first ``num_valid`` columns are ever loaded, so
    the second page is looked up only when those reach it (never past the page list).
    """
    first = row_start // PAGE_ELEMS
    start = row_start % PAGE_ELEMS
    col = start[:, None] + tl.arange(0, BLOCK)[None, :]  # [R, BLOCK], < 2 * PAGE_ELEMS
    crosses = start + tl.minimum(num_valid, BLOCK) > PAGE_ELEMS
    lo = tl.load(pages_row_ptr + first, mask=mask_row, other=0).to(tl.int64)
    hi = tl.load(pages_row_ptr + first + 1, mask=mask_row & crosses, other=0).to(tl.int64)
    return tl.where(col < PAGE_ELEMS, lo[:, None] * PAGE_ELEMS + col,
                    hi[:, None] * PAGE_ELEMS + col - PAGE_ELEMS)


def gather_rows(pool_layer: torch.Tensor, pages_row: torch.Tensor, offset: int, rows: int,
                cols: int) -> torch.Tensor:
    """The ``[rows, cols]`` matrix stored flat at ``offset`` over the pages ``pages_row``.

    pool_layer: [num_pages, page_elems]; pages_row: [max_pages] int (one slot's page list).
    Copies only the pages the matrix touches, in the pool's dtype.
    """
    page_elems = pool_layer.shape[1]
    count = rows * cols
    if count == 0:
        return pool_layer.new_zeros(rows, cols)
    first, last = offset // page_elems, (offset + count - 1) // page_elems
    flat = pool_layer.index_select(0, pages_row[first:last + 1].long()).reshape(-1)
    start = offset - first * page_elems
    return flat[start:start + count].view(rows, cols)


def slot_matrices(pool_layer: torch.Tensor, adapter_pages: torch.Tensor, slots: list[int],
                  offsets: list[int], ranks: list[int], cols: int) -> list[torch.Tensor]:
    """Views ``[ranks[i], cols]`` of the matrices at ``offsets[i]`` of the given slots.

    One page copy serves all of them: exactly the pages each matrix spans, back to back, with a
    single index_select; each matrix is then a view into that copy.
    adapter_pages: [S, max_pages]; slots, offsets, ranks: host lists, one entry per matrix.
    """
    if not slots:
        return []
    page_elems, width = pool_layer.shape[1], adapter_pages.shape[1]
    entries, bases = [], []
    for slot, off, r in zip(slots, offsets, ranks):
        first, last = off // page_elems, (off + max(r * cols, 1) - 1) // page_elems
        bases.append(len(entries) * page_elems - first * page_elems + off)
        entries.extend(range(slot * width + first, slot * width + last + 1))
    index = torch.tensor(entries, device=pool_layer.device)
    pages = adapter_pages.reshape(-1).index_select(0, index).long()
    # index_select, not advanced indexing: row copies rather than per-element index math
    flat = pool_layer.index_select(0, pages).reshape(-1)
    return [flat[base:base + r * cols].view(r, cols) for base, r in zip(bases, ranks)]


def gather_padded(pool_layer: torch.Tensor, adapter_pages: torch.Tensor, offsets: torch.Tensor,
                  ranks: torch.Tensor, max_rank: int, cols: int) -> torch.Tensor:
    """Every slot's ``[rank, cols]`` matrix at once, zero-padded to ``max_rank`` rows.

    adapter_pages: [S, max_pages] int; offsets, ranks: [S] int. Returns [S, max_rank, cols] in
    the pool's dtype (this is the padded baseline's data movement): the pages a max_rank matrix
    could span are copied per slot, then each slot's run is cut out at its own start.
    """
    page_elems = pool_layer.shape[1]
    num_slots, width = adapter_pages.shape
    device = pool_layer.device
    count = max_rank * cols
    span = -(-count // page_elems) + 1  # pages a run of `count` elements can touch
    offsets = offsets.long()
    page_index = (offsets // page_elems)[:, None] + torch.arange(span, device=device)
    pages = torch.gather(adapter_pages.long(), 1, page_index.clamp(max=width - 1))  # [S, span]
    flat = pool_layer.index_select(0, pages.reshape(-1)).reshape(num_slots, span * page_elems)
    start = (offsets % page_elems)[:, None] + torch.arange(count, device=device)  # [S, count]
    mats = torch.gather(flat, 1, start).view(num_slots, max_rank, cols)
    # rows past a slot's rank hold other weights (or anything): select zeros, never multiply
    live = torch.arange(max_rank, device=device)[None, :] < ranks.long()[:, None]
    return torch.where(live[:, :, None], mats, torch.zeros((), dtype=mats.dtype, device=device))
