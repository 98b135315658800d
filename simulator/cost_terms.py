"""The terms a fitted cost model is built from, and the candidate forms (sets of terms).

A term is one physically meaningful piece of a step's time, as a function of its shape: a
fixed cost per step, work per prefill token (weights x tokens), quadratic causal attention,
KV reads per decode context token, LoRA weight reads per distinct adapter and per rank, LoRA
work per token and rank. A form is the list of terms a fit may use; the fitted model is
``sum(coefficient[i] * term[i](shape))`` with non-negative coefficients.

Forms are registered by name. ``piecewise`` gives prefill-bearing steps and decode-only steps
their own coefficients (a CPU or GPU runs the two regimes at different efficiencies); ``linear``
shares them; ``lean`` drops the terms that are nearly collinear on a small grid. The profiler
fits every form and keeps the one with the lowest cross-validated error.

Terms are written once over an object with the StepShape attributes and use only ``+ - *`` and
min, so that they give the same bits on a shape of ints as on a shape of float64 columns
(cost_base.py).
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable, Mapping

from manylora.engine.step_shape import StepShape

Term = Callable[[StepShape, Callable], Any]
"""term(shape, minimum) -> value; ``minimum`` is builtin min for ints, np.minimum for columns."""


def _prefill(s: StepShape, minimum: Callable) -> Any:
    """1 for a step with prefill tokens, else 0."""
    return minimum(s.prefill_tokens, 1)


def _decode_only(s: StepShape, minimum: Callable) -> Any:
    return 1 - minimum(s.prefill_tokens, 1)


_SHAPE_TERMS: dict[str, Term] = {
    "step": lambda s, mn: 1,
    "prefill_tokens": lambda s, mn: s.prefill_tokens,
    "prefill_requests": lambda s, mn: s.prefill_requests,
    "prefill_sq_tokens": lambda s, mn: s.prefill_sq_tokens,
    "decode_requests": lambda s, mn: s.decode_requests,
    "decode_context_tokens": lambda s, mn: s.decode_context_tokens,
    "distinct_adapters": lambda s, mn: s.distinct_adapters,
    "sum_ranks": lambda s, mn: s.sum_ranks,
    "lora_token_ranks": lambda s, mn: s.lora_token_ranks,
    "tokens": lambda s, mn: s.prefill_tokens + s.decode_requests,
}


def _gated(gate: Term, term: Term) -> Term:
    return lambda s, mn: gate(s, mn) * term(s, mn)


def _form(*names: str) -> dict[str, Term]:
    return {n: _SHAPE_TERMS[n] for n in names}


def _piecewise() -> dict[str, Term]:
    prefill = ("step", "prefill_tokens", "prefill_requests", "prefill_sq_tokens",
               "decode_requests", "decode_context_tokens", "distinct_adapters", "sum_ranks",
               "lora_token_ranks")
    decode = ("step", "decode_requests", "decode_context_tokens", "distinct_adapters",
              "sum_ranks", "lora_token_ranks")
    terms = {f"prefill_step.{n}": _gated(_prefill, _SHAPE_TERMS[n]) for n in prefill}
    terms.update({f"decode_step.{n}": _gated(_decode_only, _SHAPE_TERMS[n]) for n in decode})
    return terms


FORMS: Mapping[str, Mapping[str, Term]] = MappingProxyType({
    "linear": MappingProxyType(_form(
        "step", "prefill_tokens", "prefill_requests", "prefill_sq_tokens", "decode_requests",
        "decode_context_tokens", "distinct_adapters", "sum_ranks", "lora_token_ranks")),
    "piecewise": MappingProxyType(_piecewise()),
    "lean": MappingProxyType(_form(
        "step", "tokens", "prefill_sq_tokens", "decode_context_tokens", "distinct_adapters",
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
