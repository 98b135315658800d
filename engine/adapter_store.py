"""The data side of adapters: folders by id, packed host copies, copies into pool pages.

Registration reads only each folder's adapter_config.json and safetensors header
(``peft_loader.read_adapter``), so thousands of adapters register in seconds; a folder that
fails validation is remembered as broken with the ``AdapterError`` message, and only that
adapter's requests are rejected. Weights are read (memory-mapped) and packed into pool layout
the first time the scheduler loads the adapter; the packed copy stays in host memory (pinned
on an accelerator) for as long as the control plane's host tier (``host_cache``) keeps it.
Copies into the pool run on the compute stream when they block a step and, on an accelerator,
on a side stream with an event when they are prefetches, so they overlap compute.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
import torch

from manylora.engine.catalog import AdapterSpec
from manylora.engine.model_config import ModelConfig
from manylora.engine.model_shape import TARGETS, PoolLayout
from manylora.engine.peft_loader import AdapterError, PeftAdapter, pack_adapter, read_adapter
from manylora.engine.pool_tensors import PoolTensors

SlotRow = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[float, ...]]


class AdapterStore:
    """Validated adapter folders and their packed host copies."""

    def __init__(self, config: ModelConfig, layout: PoolLayout, dtype: torch.dtype,
                 device: torch.device) -> None:
        self.config = config
        self.layout = layout
        self.dtype = dtype
        self.device = device
        self.adapters: dict[int, PeftAdapter] = {}
        self.broken: dict[int, str] = {}          # adapter id -> why it cannot serve
        self.host: dict[int, torch.Tensor] = {}   # adapter id -> [L, pages, page_elems]
        self._rows: dict[int, SlotRow] = {}
        # pinned host copies and a side stream only where CUDA drives the device
        self._pin = device.type != "cpu" and torch.cuda.is_available()
        self._side = torch.cuda.Stream(device) if self._pin else None
        self._inflight: list[tuple[int, torch.Tensor, torch.cuda.Event | None]] = []
        self.disk_reads = 0
        self.pool_copies = 0

    def register(self, adapter_id: int, folder: str | Path) -> None:
        """Validate one folder; a broken one is recorded, not raised."""
        try:
            self.adapters[adapter_id] = read_adapter(folder, self.config)
        except AdapterError as exc:
            self.broken[adapter_id] = str(exc)

    def mark_broken(self, adapter_id: int, reason: str) -> None:
        """An adapter known to be unusable (e.g. no folder at all)."""
        self.adapters.pop(adapter_id, None)
        self.broken[adapter_id] = reason

    def register_all(self, folders: Mapping[int, str | Path]) -> None:
        for adapter_id, folder in folders.items():
            self.register(adapter_id, folder)

    def catalog_specs(self) -> list[AdapterSpec]:
        """What the control plane's catalog needs: per-target ranks of every good adapter."""
        return [AdapterSpec(aid, dict(a.ranks), a.alpha, a.use_rslora, str(a.path))
                for aid, a in self.adapters.items()]

    def slot_row(self, adapter_id: int) -> SlotRow:
        """Per target (canonical order): rank, A offset, B offset and scale, for BatchMeta."""
        row = self._rows.get(adapter_id)
        if row is None:
            adapter = self.adapters[adapter_id]
            slices = {s.target: s for s in self.layout.adapter_layout(adapter.ranks).slices}
            row = (tuple(slices[t].rank if t in slices else 0 for t in TARGETS),
                   tuple(slices[t].a_offset if t in slices else 0 for t in TARGETS),
                   tuple(slices[t].b_offset if t in slices else 0 for t in TARGETS),
                   tuple(adapter.scales.get(t, 0.0) for t in TARGETS))
            self._rows[adapter_id] = row
        return row

    def packed(self, adapter_id: int) -> torch.Tensor:
        """The host copy in pool layout, read from disk if it is not held. AdapterError if the
        weights cannot be read; the adapter is then recorded as broken."""
        packed = self.host.get(adapter_id)
        if packed is None:
            try:
                packed = pack_adapter(self.adapters[adapter_id], self.layout, self.dtype,
                                      pin_memory=self._pin)
            except AdapterError as exc:
                self.broken[adapter_id] = str(exc)
                del self.adapters[adapter_id]
                raise
            self.host[adapter_id] = packed
            self.disk_reads += 1
        return packed

    def preload(self, adapter_ids: Iterable[int]) -> None:
        """Read and pack these adapters into host memory now; broken ones are recorded."""
        for adapter_id in adapter_ids:
            if adapter_id in self.adapters:
                try:
                    self.packed(adapter_id)
                except AdapterError:
                    pass  # recorded in ``broken``: its requests are rejected when they come

    def copy_to_pool(self, adapter_id: int, pages: np.ndarray, pool: PoolTensors,
                     blocking: bool) -> None:
        """Copy the adapter into ``pages`` [n] int32. Blocking copies finish before the next
        kernel on the compute stream; prefetches on an accelerator run on the side stream and
        show up in ``finished_prefetches`` once done."""
        packed = self.packed(adapter_id)
        index = torch.from_numpy(pages.astype(np.int64)).to(self.device)
        self.pool_copies += 1
        if blocking or self._side is None:
            pool.write_adapter(index, packed, non_blocking=self._pin)
            if not blocking:
                self._inflight.append((adapter_id, packed, None))
            return
        self._side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._side):
            pool.write_adapter(index, packed, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self._side)
        self._inflight.append((adapter_id, packed, event))

    def finished_prefetches(self) -> list[int]:
        """Prefetch copies that have completed since the last call (all of them on CPU)."""
        done, pending = [], []
        for item in self._inflight:
            (done if item[2] is None or item[2].query() else pending).append(item)
        self._inflight = pending
        return [adapter_id for adapter_id, _, _ in done]

    def retain(self, keep: Callable[[int], bool]) -> None:
        """Drop host copies of adapters the host tier no longer holds (and not in flight)."""
        busy = {aid for aid, _, _ in self._inflight}
        for adapter_id in [a for a in self.host if not keep(a) and a not in busy]:
            del self.host[adapter_id]


def adapter_folders(adapters: str | Path | Mapping[int, str | Path] | Iterable[str | Path]
                    ) -> dict[int, Path]:
    """Adapter ids and folders from a mapping, a list (ids 0..N-1), or a folder of
    ``<adapter_id>/`` subfolders."""
    if isinstance(adapters, Mapping):
        return {int(k): Path(v) for k, v in adapters.items()}
    if isinstance(adapters, (str, Path)):
        root = Path(adapters)
        if not root.is_dir():
            raise AdapterError(f"{root}: no such adapter folder")
        return {int(p.name): p for p in sorted(root.iterdir(), key=lambda p: p.name)
                if p.is_dir() and p.name.isdigit()}
    return {i: Path(p) for i, p in enumerate(adapters)}


def representative_targets(store: AdapterStore) -> tuple[str, ...]:
    """The adapters' target set whose LoRA width (sum of d_in + d_out) is nearest their mean.

    Step shapes count ranks, not targets, so the grid's synthetic adapters all use one target
    set; this one makes the per-rank LoRA cost of a mixed folder right on average.
    """
    shape = store.layout.shape
    sets = Counter(tuple(t for t in TARGETS if t in a.ranks) for a in store.adapters.values())
    if not sets:
        return ("q", "k", "v", "o")

    def width(targets: tuple[str, ...]) -> int:
        return sum(sum(shape.target_dims(t)) for t in targets)
    mean = sum(width(s) * n for s, n in sets.items()) / sum(sets.values())
    return min(sorted(sets), key=lambda s: (abs(width(s) - mean), -len(s)))
