"""Next-token sampling: greedy, and temperature / top-p with a seeded generator per request.

Each sampled request owns a ``torch.Generator`` seeded from its own seed and draws exactly one
uniform number per generated token, so its output depends only on its logits and its seed, not
on which other requests share the batch or on preemption. Greedy rows draw nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class SamplingParams:
    """How one request picks its tokens and when it stops."""

    max_tokens: int = 16         # stop after this many generated tokens
    temperature: float = 0.0     # 0 = greedy (argmax)
    top_p: float = 1.0           # nucleus: smallest set of tokens with this much mass
    seed: int = 0                # seeds the request's generator (ignored when greedy)
    ignore_eos: bool = False     # True: run to max_tokens even past EOS (trace replay)

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"SamplingParams.max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"SamplingParams.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {self.top_p}")
        if self.seed < 0:
            raise ValueError(f"SamplingParams.seed must be >= 0, got {self.seed}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def make_generator(self) -> torch.Generator | None:
        """A fresh CPU generator for one request (None when greedy)."""
        if self.greedy:
            return None
        gen = torch.Generator(device="cpu")
        gen.manual_seed(self.seed)
        return gen


def sample_top_p(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
                 uniform: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling from the top-p set of softmax(logits / temperature).

    logits: [N, V]; temperature, top_p, uniform: [N] fp32 (uniform in [0, 1)). Returns [N] int64.
    """
    probs = torch.softmax(logits.float() / temperature[:, None], dim=-1)  # [N, V]
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)      # [N, V]
    cumulative = torch.cumsum(sorted_probs, dim=-1)
    # keep a token while the mass before it is below top_p; the most likely token always stays
    keep = (cumulative - sorted_probs) < top_p[:, None]
    kept = sorted_probs * keep
    kept_cdf = torch.cumsum(kept, dim=-1)                                  # [N, V]
    target = uniform[:, None] * kept_cdf[:, -1:]                           # [N, 1]
    choice = torch.searchsorted(kept_cdf, target, right=True)              # [N, 1]
    choice = torch.minimum(choice, keep.sum(dim=-1, keepdim=True) - 1)
    return order.gather(1, choice).squeeze(1)


class Sampler:
    """Samples one token per row for a batch of requests with mixed sampling settings."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def sample(self, logits: torch.Tensor, params: Sequence[SamplingParams],
               generators: Sequence[torch.Generator | None]) -> torch.Tensor:
        """logits: [N, V] for N requests in ``params`` order. Returns tokens [N] int64 on CPU."""
        tokens = torch.argmax(logits, dim=-1)  # [N]
        sampled = [i for i, p in enumerate(params) if not p.greedy]
        if sampled:
            rows = torch.tensor(sampled, device=logits.device)
            temperature = torch.tensor([params[i].temperature for i in sampled],
                                       dtype=torch.float32)
            top_p = torch.tensor([params[i].top_p for i in sampled], dtype=torch.float32)
            uniform = torch.cat([torch.rand(1, generator=generators[i]) for i in sampled])
            picks = sample_top_p(logits[rows], temperature.to(logits.device),
                                 top_p.to(logits.device), uniform.to(logits.device))
            tokens[rows] = picks
        return tokens.cpu()
