"""The adapters a deployment can serve: id, per-target ranks, alpha, and their pool footprint.

``AdapterCatalog`` answers, for an adapter id, how many pool pages it takes
(``PoolLayout.adapter_layout``), how many weight bytes a load moves, and its rank as the cost
model sees it (the largest rank over its targets). The scheduler asks these on its hot path,
so they are precomputed into plain dicts. Adapter id -1 (base model) is not in the catalog.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping

from manylora.engine.model_shape import AdapterLayout, PoolLayout, canonical_target

BASE_MODEL = -1


@dataclass(frozen=True)
class AdapterSpec:
    """One adapter: ranks per target (short or PEFT names), lora_alpha, optional weights path."""

    adapter_id: int
    ranks: Mapping[str, int]
    alpha: float
    use_rslora: bool = False
    path: str = ""
    _canonical: tuple[tuple[str, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.adapter_id < 0:
            raise ValueError(f"AdapterSpec.adapter_id must be >= 0, got {self.adapter_id}")
        ranks = {canonical_target(t): int(r) for t, r in dict(self.ranks).items()}
        if not ranks or any(r < 1 for r in ranks.values()):
            raise ValueError(f"AdapterSpec.ranks must give each target a rank >= 1, got "
                             f"{dict(self.ranks)} (adapter {self.adapter_id})")
        object.__setattr__(self, "ranks", MappingProxyType(ranks))
        object.__setattr__(self, "_canonical", tuple(sorted(ranks.items())))

    @property
    def rank(self) -> int:
        """The largest rank over targets (what step shapes and cost models count)."""
        return max(self.ranks.values())

    @property
    def scale(self) -> float:
        """Per-target scale is alpha / r (or alpha / sqrt(r) with rslora); this is at ``rank``."""
        return self.alpha / (self.rank ** 0.5 if self.use_rslora else self.rank)


class UnknownAdapterError(KeyError):
    """An adapter id that the catalog does not hold."""


class AdapterCatalog:
    """Adapter specs plus each adapter's pages, bytes and rank under one pool layout."""

    def __init__(self, layout: PoolLayout, specs: Iterable[AdapterSpec]) -> None:
        self.layout = layout
        self.specs: dict[int, AdapterSpec] = {}
        self.pages: dict[int, int] = {}
        self.num_bytes: dict[int, int] = {}
        self.rank: dict[int, int] = {BASE_MODEL: 0}
        layouts: dict[tuple[tuple[str, int], ...], AdapterLayout] = {}
        bytes_per_elem = layout.shape.num_layers * layout.shape.dtype_bytes
        for spec in specs:
            if spec.adapter_id in self.specs:
                raise ValueError(f"adapter {spec.adapter_id} appears twice in the catalog")
            key = spec._canonical
            if key not in layouts:
                layouts[key] = layout.adapter_layout(dict(key))
            self.specs[spec.adapter_id] = spec
            self.pages[spec.adapter_id] = layouts[key].num_pages
            self.num_bytes[spec.adapter_id] = layouts[key].num_elems * bytes_per_elem
            self.rank[spec.adapter_id] = spec.rank

    def __contains__(self, adapter_id: int) -> bool:
        return adapter_id in self.specs

    def __len__(self) -> int:
        return len(self.specs)

    def spec(self, adapter_id: int) -> AdapterSpec:
        try:
            return self.specs[adapter_id]
        except KeyError:
            raise UnknownAdapterError(f"adapter {adapter_id} is not in the catalog") from None

    def adapter_layout(self, adapter_id: int) -> AdapterLayout:
        """Where each target's A and B sit in the adapter's pages (for the data plane)."""
        return self.layout.adapter_layout(dict(self.spec(adapter_id).ranks))

    @classmethod
    def from_columns(cls, layout: PoolLayout, adapter_ids: Iterable[int], ranks: Iterable[int],
                     alphas: Iterable[float], targets: Iterable[str | Iterable[str]],
                     paths: Iterable[str] | None = None) -> "AdapterCatalog":
        """From adapters.csv columns; ``targets`` as ``"q;k;v;o"`` strings or name lists."""
        ids = list(adapter_ids)
        path_list = list(paths) if paths is not None else [""] * len(ids)
        specs = []
        for aid, rank, alpha, tgt, path in zip(ids, ranks, alphas, targets, path_list):
            names = tgt.split(";") if isinstance(tgt, str) else list(tgt)
            # pandas gives NaN (a float) where an optional path cell is empty
            specs.append(AdapterSpec(int(aid), {t: int(rank) for t in names if t}, float(alpha),
                                     path=path if isinstance(path, str) else ""))
        return cls(layout, specs)
