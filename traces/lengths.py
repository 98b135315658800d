"""Prompt and output lengths, as a registry of small frozen configs.

- ``uniform``: S-LoRA's input_range/output_range, here inclusive at both ends (S-LoRA's
  ``randint`` leaves the upper end out; pass ``hi - 1`` to match it draw for draw in range).
- ``lognormal``: ``median * exp(sigma * z)`` rounded to whole tokens and clipped to a range.
- ``resample``: (prompt, output) pairs drawn jointly, with replacement, from a real trace
  (Azure format; ``azure-code`` / ``azure-conv`` are the shipped ones), optionally keeping only
  pairs within length ranges (as S-LoRA drops conversations that would not fit).

Every model draws row by row (request i's draws come before request i+1's), so the first k
requests get the same lengths whatever the total count: a longer trace, or one at another
rate, extends the lengths of a shorter one instead of redrawing them.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from manylora.traces.azure_source import load_azure
from manylora.traces.errors import TraceConfigError, check
from manylora.traces.registry import Registry


class LengthModel(ABC):
    """Draws (prompt_len, output_len) per request."""

    name: ClassVar[str]

    @abstractmethod
    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """prompt_len, output_len: int64 ``[n]`` each, all >= 1."""


LENGTHS: Registry[LengthModel] = Registry("length model")


def _check_range(owner: str, field: str, bounds: tuple[int, int]) -> None:
    check(len(bounds) == 2 and all(isinstance(b, (int, np.integer)) for b in bounds)
          and 1 <= bounds[0] <= bounds[1], owner, field, bounds,
          "two whole numbers LO HI with 1 <= LO <= HI")


@LENGTHS.register
@dataclass(frozen=True)
class UniformLengths(LengthModel):
    """Uniform integers in ``input_range`` and ``output_range``, both ends included."""

    name: ClassVar[str] = "uniform"
    input_range: tuple[int, int] = (8, 512)
    output_range: tuple[int, int] = (8, 512)

    def __post_init__(self) -> None:
        _check_range("UniformLengths", "input_range", self.input_range)
        _check_range("UniformLengths", "output_range", self.output_range)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        low = [self.input_range[0], self.output_range[0]]
        high = [self.input_range[1], self.output_range[1]]
        pairs = rng.integers(low, high, size=(n, 2), endpoint=True, dtype=np.int64)  # [n, 2]
        return pairs[:, 0].copy(), pairs[:, 1].copy()


@LENGTHS.register
@dataclass(frozen=True)
class LognormalLengths(LengthModel):
    """Lognormal lengths given by median and sigma (of the log), clipped to ranges."""

    name: ClassVar[str] = "lognormal"
    prompt_median: float = 512.0
    prompt_sigma: float = 1.0
    output_median: float = 128.0
    output_sigma: float = 1.0
    input_range: tuple[int, int] = (1, 8192)
    output_range: tuple[int, int] = (1, 4096)

    def __post_init__(self) -> None:
        for field in ("prompt_median", "output_median"):
            value = getattr(self, field)
            check(value >= 1 and math.isfinite(value), "LognormalLengths", field, value,
                  "a finite number >= 1")
        for field in ("prompt_sigma", "output_sigma"):
            value = getattr(self, field)
            check(value >= 0 and math.isfinite(value), "LognormalLengths", field, value,
                  "a finite number >= 0")
        _check_range("LognormalLengths", "input_range", self.input_range)
        _check_range("LognormalLengths", "output_range", self.output_range)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        mean = [math.log(self.prompt_median), math.log(self.output_median)]
        sigma = [self.prompt_sigma, self.output_sigma]
        pairs = np.rint(rng.lognormal(mean, sigma, size=(n, 2)))  # [n, 2]
        prompt = np.clip(pairs[:, 0], *self.input_range).astype(np.int64)
        output = np.clip(pairs[:, 1], *self.output_range).astype(np.int64)
        return prompt, output


@LENGTHS.register
@dataclass(frozen=True)
class ResampledLengths(LengthModel):
    """(prompt, output) pairs drawn jointly from a real trace's requests."""

    name: ClassVar[str] = "resample"
    source: str = "azure-conv"
    input_range: tuple[int, int] | None = None
    output_range: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        check(isinstance(self.source, str) and bool(self.source), "ResampledLengths", "source",
              self.source, "a shipped trace name (azure-code, azure-conv) or a CSV path")
        for field in ("input_range", "output_range"):
            if getattr(self, field) is not None:
                _check_range("ResampledLengths", field, getattr(self, field))

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The pool of (prompt, output) pairs drawn from: the source's requests whose lengths
        lie within the ranges."""
        table = load_azure(self.source)
        keep = np.ones(len(table), dtype=bool)
        for values, bounds in ((table.prompt_len, self.input_range),
                               (table.output_len, self.output_range)):
            if bounds is not None:
                keep &= (values >= bounds[0]) & (values <= bounds[1])
        if not keep.any():
            raise TraceConfigError(f"ResampledLengths: no request of {self.source} has lengths "
                                   f"within input_range={self.input_range}, "
                                   f"output_range={self.output_range}")
        return table.prompt_len[keep], table.output_len[keep]

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        prompt, output = self.pairs()
        index = rng.integers(0, len(prompt), n)
        return prompt[index], output[index]
