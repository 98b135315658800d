"""The terms a fitted cost model is built from, and the candidate forms (sets of terms).

A term is one physically meaningful piece of a step's time: a fixed cost per step, work per
prefill token (weights x tokens), quadratic causal attention, KV reads per decode context
token, LoRA weight reads per distinct adapter and per rank, LoRA work per token and rank. Each
term is one column of the step's shape (or the constant 1, or the step's token count), times a
gate that selects the steps it applies to. A form is the list of terms a fit may use; the
fitted model is ``sum(coefficient[i] * term[i](shape))`` with non-negative coefficients.

Forms are registered by name. ``piecewise`` gives prefill-bearing steps and decode-only steps
their own coefficients (a CPU or GPU runs the two regimes at different efficiencies);
``linear`` shares them; ``lean`` drops the terms that are nearly collinear on a small grid.
The profiler fits every form and keeps the one with the lowest cross-validated error.

``term_columns`` and ``term_gates`` are written once over an object with the StepShape
attributes using only ``+ - *`` and min, so they give the same bits on a shape of ints as on a
shape of float64 columns (cost_base.py).
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable, Mapping, NamedTuple

from manylora.engine.step_shape import STEP_SHAPE_FIELDS, StepShape

# Columns a term can read: the StepShape fields, then two derived ones.
COLUMNS: tuple[str, ...] = STEP_SHAPE_FIELDS + ("tokens", "step")
GATES: tuple[str, ...] = ("all", "prefill_step", "decode_step")


class Term(NamedTuple):
    """``gate(shape) * column(shape)``; gate and column are indexes into GATES and COLUMNS."""

    gate: int
    column: int


def term_columns(s: StepShape) -> tuple[Any, ...]:
    """Values of COLUMNS for a shape (ints) or a shape of float64 columns."""
    return tuple(s) + (s.prefill_tokens + s.decode_requests, 1)


def term_gates(s: StepShape, minimum: Callable) -> tuple[Any, Any, Any]:
    """Values of GATES: 1 for every step; 1 for steps with prefill tokens; 1 for the others."""
    prefill = minimum(s.prefill_tokens, 1)
    return 1, prefill, 1 - prefill


def _form(gate: str, *columns: str) -> dict[str, Term]:
    prefix = "" if gate == "all" else f"{gate}."
    return {prefix + c: Term(GATES.index(gate), COLUMNS.index(c)) for c in columns}


_ALL_TERMS = ("step", "prefill_tokens", "prefill_requests", "prefill_sq_tokens",
              "decode_requests", "decode_context_tokens", "distinct_adapters", "sum_ranks",
              "lora_token_ranks")
_DECODE_TERMS = ("step", "decode_requests", "decode_context_tokens", "distinct_adapters",
                 "sum_ranks", "lora_token_ranks")

FORMS: Mapping[str, Mapping[str, Term]] = MappingProxyType({
    "linear": MappingProxyType(_form("all", *_ALL_TERMS)),
    "piecewise": MappingProxyType({**_form("prefill_step", *_ALL_TERMS),
                                   **_form("decode_step", *_DECODE_TERMS)}),
    "lean": MappingProxyType(_form("all", "step", "tokens", "prefill_sq_tokens",
                                   "decode_context_tokens", "distinct_adapters",
                                   "lora_token_ranks")),
})


class UnknownFormError(ValueError):
    """A cost-model form name that is not registered."""


def form_terms(name: str) -> Mapping[str, Term]:
    try:
        return FORMS[name]
    except KeyError:
        raise UnknownFormError(f"unknown cost-model form {name!r}; known: "
                               f"{', '.join(FORMS)}") from None
