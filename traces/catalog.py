"""The adapter catalog: each adapter's rank, lora_alpha and target modules (adapters.csv).

This module owns the canonical LoRA target names (``TARGETS``, in the order the pool packs
them) because traces sit below the engine: the engine validates against the same list.

Ranks come from a rule in a registry: ``cycle`` (adapter i gets ``ranks[i % len(ranks)]``, as
S-LoRA cycles its adapter folders), ``draw`` (uniform draw from the list) or ``mix`` (weighted
draw, e.g. 8:0.4,16:0.3,32:0.2,64:0.1). lora_alpha is ``fixed`` or ``per-rank`` (a multiple of
the rank, so the scale alpha/rank is the same for every adapter).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, Iterable, Mapping

import numpy as np
import pandas as pd

from manylora.traces.errors import TraceConfigError, check
from manylora.traces.registry import Registry

# Canonical target order (adapters.csv short names) and the PEFT module names beside them.
TARGETS: tuple[str, ...] = ("q", "k", "v", "o", "gate", "up", "down")
HF_MODULE_NAMES: Mapping[str, str] = MappingProxyType({
    "q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj",
    "gate": "gate_proj", "up": "up_proj", "down": "down_proj",
})
_SHORT_NAMES = MappingProxyType({**{t: t for t in TARGETS},
                                 **{hf: t for t, hf in HF_MODULE_NAMES.items()}})
DEFAULT_TARGETS: tuple[str, ...] = ("q", "k", "v", "o")


def canonical_target(name: str) -> str:
    """Short name of a target given as ``"q"`` or ``"q_proj"``; `TraceConfigError` (a
    ValueError) names an unknown one."""
    try:
        return _SHORT_NAMES[name]
    except KeyError:
        raise TraceConfigError(f"unknown LoRA target module {name!r}; expected some of "
                               f"{';'.join(TARGETS)} or {', '.join(HF_MODULE_NAMES.values())}"
                               ) from None


def parse_targets(targets: str | Iterable[str]) -> tuple[str, ...]:
    """Short target names in canonical order from ``"q;k;v;o"``, ``"q_proj,v_proj"`` or a list;
    duplicates are merged, unknown names raise `TraceConfigError`."""
    names = targets.replace(",", ";").split(";") if isinstance(targets, str) else list(targets)
    short = {canonical_target(n.strip()) for n in names if n.strip()}
    if not short:
        raise TraceConfigError("no LoRA target modules given")
    return tuple(t for t in TARGETS if t in short)


class RankRule(ABC):
    """Gives every adapter a rank."""

    name: ClassVar[str]

    @abstractmethod
    def assign(self, rng: np.random.Generator, num_adapters: int) -> np.ndarray:
        """Rank per adapter id, int64 ``[num_adapters]``."""


RANK_RULES: Registry[RankRule] = Registry("rank rule")


def _check_ranks(owner: str, ranks: tuple[int, ...]) -> None:
    check(len(ranks) > 0 and all(isinstance(r, (int, np.integer)) and r >= 1 for r in ranks),
          owner, "ranks", ranks, "a non-empty list of integers >= 1")


@RANK_RULES.register
@dataclass(frozen=True)
class CycleRanks(RankRule):
    """Adapter i gets ``ranks[i % len(ranks)]``."""

    name: ClassVar[str] = "cycle"
    ranks: tuple[int, ...] = (8, 16, 32, 64)

    def __post_init__(self) -> None:
        _check_ranks("CycleRanks", self.ranks)

    def assign(self, rng: np.random.Generator, num_adapters: int) -> np.ndarray:
        return np.resize(np.asarray(self.ranks, dtype=np.int64), num_adapters)


@RANK_RULES.register
@dataclass(frozen=True)
class DrawnRanks(RankRule):
    """Each adapter's rank drawn uniformly from the list."""

    name: ClassVar[str] = "draw"
    ranks: tuple[int, ...] = (8, 16, 32, 64)

    def __post_init__(self) -> None:
        _check_ranks("DrawnRanks", self.ranks)

    def assign(self, rng: np.random.Generator, num_adapters: int) -> np.ndarray:
        choice = rng.integers(0, len(self.ranks), num_adapters)
        return np.asarray(self.ranks, dtype=np.int64)[choice]


@RANK_RULES.register
@dataclass(frozen=True)
class MixedRanks(RankRule):
    """Each adapter's rank drawn with the given weights (normalised to sum to 1)."""

    name: ClassVar[str] = "mix"
    ranks: tuple[int, ...] = (8, 16, 32, 64)
    weights: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)

    def __post_init__(self) -> None:
        _check_ranks("MixedRanks", self.ranks)
        check(len(self.weights) == len(self.ranks)
              and all(w >= 0 and math.isfinite(w) for w in self.weights)
              and sum(self.weights) > 0, "MixedRanks", "weights", self.weights,
              "one finite weight >= 0 per rank, not all 0")

    def probabilities(self) -> np.ndarray:
        weights = np.asarray(self.weights, dtype=np.float64)
        return weights / weights.sum()

    def assign(self, rng: np.random.Generator, num_adapters: int) -> np.ndarray:
        cdf = np.cumsum(self.probabilities())
        choice = np.searchsorted(cdf, rng.random(num_adapters) * cdf[-1], side="right")
        return np.asarray(self.ranks, dtype=np.int64)[np.minimum(choice, len(cdf) - 1)]


class AlphaRule(ABC):
    """Gives every adapter its lora_alpha from its rank."""

    name: ClassVar[str]

    @abstractmethod
    def alphas(self, ranks: np.ndarray) -> np.ndarray:
        """lora_alpha per adapter, float64, same shape as ``ranks``."""


ALPHA_RULES: Registry[AlphaRule] = Registry("lora_alpha rule")


@ALPHA_RULES.register
@dataclass(frozen=True)
class FixedAlpha(AlphaRule):
    """The same lora_alpha for every adapter (scale alpha/rank shrinks with the rank)."""

    name: ClassVar[str] = "fixed"
    value: float = 16.0

    def __post_init__(self) -> None:
        check(self.value > 0 and math.isfinite(self.value), "FixedAlpha", "value", self.value,
              "a positive finite number")

    def alphas(self, ranks: np.ndarray) -> np.ndarray:
        return np.full(ranks.shape, float(self.value))


@ALPHA_RULES.register
@dataclass(frozen=True)
class PerRankAlpha(AlphaRule):
    """lora_alpha = factor * rank (the common 2r recipe), so every adapter has scale factor."""

    name: ClassVar[str] = "per-rank"
    factor: float = 2.0

    def __post_init__(self) -> None:
        check(self.factor > 0 and math.isfinite(self.factor), "PerRankAlpha", "factor",
              self.factor, "a positive finite number")

    def alphas(self, ranks: np.ndarray) -> np.ndarray:
        return ranks.astype(np.float64) * self.factor


@dataclass(frozen=True)
class CatalogConfig:
    """How adapters.csv is filled: rank rule, lora_alpha rule, target modules."""

    ranks: RankRule = field(default_factory=CycleRanks)
    alpha: AlphaRule = field(default_factory=PerRankAlpha)
    targets: tuple[str, ...] = DEFAULT_TARGETS

    def __post_init__(self) -> None:
        check(isinstance(self.ranks, RankRule), "CatalogConfig", "ranks", self.ranks,
              f"a rank rule ({', '.join(RANK_RULES.names())})")
        check(isinstance(self.alpha, AlphaRule), "CatalogConfig", "alpha", self.alpha,
              f"a lora_alpha rule ({', '.join(ALPHA_RULES.names())})")
        try:
            canonical = parse_targets(self.targets)
        except TraceConfigError as exc:
            raise TraceConfigError(f"CatalogConfig.targets: {exc}") from None
        object.__setattr__(self, "targets", canonical)

    def to_dict(self) -> dict:
        return {"ranks": RANK_RULES.to_dict(self.ranks), "alpha": ALPHA_RULES.to_dict(self.alpha),
                "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, data: dict) -> "CatalogConfig":
        return cls(ranks=RANK_RULES.from_dict(data["ranks"]),
                   alpha=ALPHA_RULES.from_dict(data["alpha"]), targets=tuple(data["targets"]))


def build_catalog(config: CatalogConfig, num_adapters: int,
                  rng: np.random.Generator) -> pd.DataFrame:
    """adapters.csv as a frame: ``adapter_id, rank, alpha, targets`` for ids 0..n-1."""
    ranks = config.ranks.assign(rng, num_adapters)
    return pd.DataFrame({
        "adapter_id": np.arange(num_adapters, dtype=np.int64),
        "rank": ranks,
        "alpha": config.alpha.alphas(ranks),
        "targets": np.full(num_adapters, ";".join(config.targets), dtype=object),
    })
