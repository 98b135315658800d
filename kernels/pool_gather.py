"""Reading adapter weights out of the paged pool (the layout of docs/internals.md).

An adapter's per-layer weights are one flat element space spread over its page list: flat
element ``e`` lives on page ``pages[e // page_elems]`` at offset ``e % page_elems``. A target's
``A`` is ``[rank, d_in]`` at ``a_offset`` and its ``B^T`` is ``[rank, d_out]`` at ``b_offset``.
``pool_offsets`` (any element) and ``pool_tile_offsets`` (a tile of row chunks no wider than a
page: two page-table reads per row instead of one per element) compute element addresses inside
Triton kernels; ``gather_rows`` copies one such matrix out of the pool with plain torch for the
references and baselines.
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


def gather_padded(pool_layer: torch.Tensor, adapter_pages: torch.Tensor, offsets: torch.Tensor,
                  ranks: torch.Tensor, max_rank: int, cols: int) -> torch.Tensor:
    """Every slot's ``[rank, cols]`` matrix at once, zero-padded to ``max_rank`` rows.

    adapter_pages: [S, max_pages] int; offsets, ranks: [S] int. Returns [S, max_rank, cols] in
    the pool's dtype, gathered element by element (this is the padded baseline's data movement).
    """
    page_elems = pool_layer.shape[1]
    num_slots = adapter_pages.shape[0]
    row = torch.arange(max_rank, device=pool_layer.device)
    col = torch.arange(cols, device=pool_layer.device)
    e = offsets.long()[:, None, None] + row[None, :, None] * cols + col[None, None, :]
    live = (row[None, :] < ranks.long()[:, None])[:, :, None].expand_as(e)
    e = torch.where(live, e, 0)  # [S, max_rank, cols]
    pages = torch.gather(adapter_pages.long(), 1, (e // page_elems).reshape(num_slots, -1))
    addr = pages.view_as(e) * page_elems + e % page_elems
    values = pool_layer.reshape(-1)[addr]
    return torch.where(live, values, torch.zeros((), dtype=values.dtype, device=values.device))
