"""How many KV pages a running request holds: reservation policies by name
(``KV_RESERVATIONS``).

- ``lookahead`` (default, S-LoRA): at admission, reserve pages for the prompt plus the whole
  output (prompt + output - 1 KV entries: the last token is never fed back). A running request
  then never needs another page, so the pool never runs out mid-run and page ids are handed
  out once per request, not per step.
- ``incremental`` (vLLM): reserve only what the prefill writes, take one more page whenever a
  decode step crosses a page boundary, and preempt the newest-admitted requests when the pool
  runs dry.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from types import MappingProxyType
from typing import ClassVar, Mapping

from manylora.engine.model_shape import PoolLayout
from manylora.engine.request import Request


class KVReservation(ABC):
    name: ClassVar[str]
    grows: ClassVar[bool]  # whether running requests take pages after admission

    @abstractmethod
    def admit_pages(self, layout: PoolLayout, req: Request) -> int:
        """KV pages to allocate when ``req`` is admitted."""

    @abstractmethod
    def next_growth_step(self, layout: PoolLayout, req: Request, after: int) -> int | None:
        """First global step > ``after`` in which ``req`` writes into a page it does not hold
        yet (None if it never does)."""


class LookAheadReservation(KVReservation):
    name: ClassVar[str] = "lookahead"
    grows: ClassVar[bool] = False

    def admit_pages(self, layout: PoolLayout, req: Request) -> int:
        return layout.kv_pages(req.kv_tokens_total)

    def next_growth_step(self, layout: PoolLayout, req: Request, after: int) -> int | None:
        return None


class IncrementalReservation(KVReservation):
    name: ClassVar[str] = "incremental"
    grows: ClassVar[bool] = True

    def admit_pages(self, layout: PoolLayout, req: Request) -> int:
        return layout.kv_pages(req.prefill_len)

    def next_growth_step(self, layout: PoolLayout, req: Request, after: int) -> int | None:
        # Decode step prefill_step + j writes position prefill_len + j - 1; a new page starts
        # at every multiple of tokens_per_page. The last position written is kv_tokens_total-1.
        tpp = layout.tokens_per_page
        first_written = req.prefill_len + (after - req.prefill_step)
        position = -(-first_written // tpp) * tpp
        if position > req.kv_tokens_total - 1:
            return None
        return req.prefill_step + position - req.prefill_len + 1


KV_RESERVATIONS: Mapping[str, type[KVReservation]] = MappingProxyType({
    cls.name: cls for cls in (LookAheadReservation, IncrementalReservation)
})
