"""Adapter popularity: which adapter each request uses, as a registry of small frozen configs.

- ``slora``: S-LoRA's rule, adapter index ``int(power(alpha) * n)`` where ``power(alpha)`` has
  CDF ``x**alpha`` on [0, 1]. ``alpha = 1`` is uniform; smaller alpha favours low indices.
  So ``P(i) = ((i + 1) / n)**alpha - (i / n)**alpha``.
- ``zipf``: a true, finite Zipf law, ``P(i)`` proportional to ``1 / (i + 1)**exponent``.
- ``uniform``: every adapter equally likely.

Adapter 0 is the most popular under ``slora`` (alpha < 1) and ``zipf``.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from manylora.traces.errors import check
from manylora.traces.registry import Registry


class Popularity(ABC):
    """Draws adapter ids in ``[0, num_adapters)`` and knows their exact probabilities."""

    name: ClassVar[str]

    @abstractmethod
    def sample(self, rng: np.random.Generator, num_requests: int,
               num_adapters: int) -> np.ndarray:
        """Adapter id per request, int64 ``[num_requests]``."""

    @abstractmethod
    def probabilities(self, num_adapters: int) -> np.ndarray:
        """Exact probability of each adapter id, float64 ``[num_adapters]``, summing to 1."""


POPULARITY: Registry[Popularity] = Registry("popularity")


@POPULARITY.register
@dataclass(frozen=True)
class SLoRAPopularity(Popularity):
    """S-LoRA's ``int(numpy power(alpha) * n)``."""

    name: ClassVar[str] = "slora"
    alpha: float = 1.0

    def __post_init__(self) -> None:
        check(self.alpha > 0 and math.isfinite(self.alpha), "SLoRAPopularity", "alpha",
              self.alpha, "a positive finite number")

    def sample(self, rng: np.random.Generator, num_requests: int,
               num_adapters: int) -> np.ndarray:
        index = (rng.power(self.alpha, num_requests) * num_adapters).astype(np.int64)
        # power() can round to exactly 1.0 (probability ~1e-16), which S-LoRA would turn into
        # an index one past the end.
        return np.minimum(index, num_adapters - 1)

    def probabilities(self, num_adapters: int) -> np.ndarray:
        edges = (np.arange(num_adapters + 1) / num_adapters) ** self.alpha
        return np.diff(edges)


@POPULARITY.register
@dataclass(frozen=True)
class ZipfPopularity(Popularity):
    """Finite Zipf law over ``num_adapters``: ``P(i) ~ 1 / (i + 1)**exponent``."""

    name: ClassVar[str] = "zipf"
    exponent: float = 1.0

    def __post_init__(self) -> None:
        check(self.exponent >= 0 and math.isfinite(self.exponent), "ZipfPopularity",
              "exponent", self.exponent, "a finite number >= 0")

    def sample(self, rng: np.random.Generator, num_requests: int,
               num_adapters: int) -> np.ndarray:
        cdf = np.cumsum(self.probabilities(num_adapters))
        index = np.searchsorted(cdf, rng.random(num_requests) * cdf[-1], side="right")
        return np.minimum(index, num_adapters - 1).astype(np.int64)

    def probabilities(self, num_adapters: int) -> np.ndarray:
        weights = np.arange(1, num_adapters + 1, dtype=np.float64) ** -self.exponent
        return weights / weights.sum()


@POPULARITY.register
@dataclass(frozen=True)
class UniformPopularity(Popularity):
    """Every adapter equally likely."""

    name: ClassVar[str] = "uniform"

    def sample(self, rng: np.random.Generator, num_requests: int,
               num_adapters: int) -> np.ndarray:
        return rng.integers(0, num_adapters, num_requests, dtype=np.int64)

    def probabilities(self, num_adapters: int) -> np.ndarray:
        return np.full(num_adapters, 1.0 / num_adapters)
