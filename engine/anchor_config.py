"""What a speed anchor times (engine/anchor.py runs it): torch-free, so that command-line
parsing, the profile file and the simulator can name it without importing the data plane.

A shared machine drifts: on this project's 2-core VM the engine's steps ran 3-10% faster or
slower than when it was profiled, for minutes at a time and uniformly over step shapes, and
near saturation continuous batching turns that into 20-50% of latency. A replay with an
anchor pauses its clock every ``every_s`` seconds and times one pass over a few fixed steps
(decode batches, prefills beside decodes) on a small pool of its own, right after an untimed
one (``settle_passes``, AnchorConfig says why); the serving probes the
cost model is calibrated on do the same. A replay's passes over the probes' mean pass
(``mean_pass``) say how much slower or faster the machine ran at each moment of the replay
than during calibration, measured by steps that are not the replay's own.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from manylora.engine.profile_grid import GridPoint


TRIM = 0.1  # share of passes cut from each end before averaging (scipy.stats.trim_mean)


class AnchorMismatchError(ValueError):
    """Two anchors that timed different steps cannot be compared."""


@dataclass(frozen=True)
class AnchorConfig:
    """The anchor's steps and how often a replay times them. One pass takes about 0.16 s on
    the tiny CPU model and single passes scatter by ~4%, so a pass every second gives the mean
    of a 1-minute replay to about 0.5%.

    A pass times what the machine does to these steps now, but also what ran just before:
    right after the engine's large steps (batches of 250 with prefills) a pass took 1.0-2.6%
    longer than right after small ones (its decode steps of 1-4 requests 9-16% longer; three
    tries on the 2-core CPU), which misjudged a heavily loaded replay by that much. So each
    timed pass follows ``settle_passes`` untimed ones, and starts from the state the anchor's
    own steps leave (the same difference: 0.2-0.4%). Wall time grows by ~32%, the replay's
    clock by nothing."""

    decode_batches: tuple[int, ...] = (1, 4, 16, 64, 128)
    decode_context: int = 48                  # tokens of context per decode request
    prefills: tuple[tuple[int, int], ...] = ((1, 32), (4, 48), (8, 64))  # (requests, tokens)
    mixed_decodes: int = 16                   # decode requests beside each prefill
    ranks: tuple[int, ...] = (8, 16, 32, 64)  # adapter ranks, cycled over the slots
    max_adapters: int = 32                    # distinct adapters in one step, at most
    every_s: float = 1.0                      # replay-clock seconds between passes
    settle_passes: int = 1                    # untimed passes right before each timed one
    smooth_passes: int = 5                    # a pass's speed: the median of this many
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.decode_batches and not self.prefills:
            raise ValueError("AnchorConfig needs decode_batches or prefills")
        sizes = [*self.decode_batches, *(n for n, _ in self.prefills),
                 *(t for _, t in self.prefills), self.decode_context, self.max_adapters]
        if min(sizes) < 1 or self.mixed_decodes < 0 or not self.ranks or min(self.ranks) < 1:
            raise ValueError(f"AnchorConfig sizes and ranks must be >= 1, got {self}")
        if not (math.isfinite(self.every_s) and self.every_s > 0):
            raise ValueError(f"AnchorConfig.every_s must be > 0, got {self.every_s!r}")
        if self.settle_passes < 0:
            raise ValueError(f"AnchorConfig.settle_passes must be >= 0, got "
                             f"{self.settle_passes!r}")
        if self.smooth_passes < 1:
            raise ValueError(f"AnchorConfig.smooth_passes must be >= 1, got "
                             f"{self.smooth_passes!r}")

    def to_dict(self) -> dict[str, Any]:
        return {k: [list(x) if isinstance(x, tuple) else x for x in v]
                if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def anchor_points(config: AnchorConfig) -> list[GridPoint]:
    """The anchor's steps: each decode batch alone, then each prefill beside
    ``mixed_decodes`` decodes; requests spread over up to ``max_adapters`` adapters."""
    def point(prefill: tuple[int, ...], decodes: int) -> GridPoint:
        requests = len(prefill) + decodes
        adapters = min(requests, config.max_adapters)
        ranks = tuple(config.ranks[i % len(config.ranks)] for i in range(adapters))
        return GridPoint(prefill_lens=prefill,
                         context_lens=(config.decode_context,) * decodes,
                         request_slots=tuple(i % adapters for i in range(requests)),
                         slot_ranks=ranks)
    return ([point((), b) for b in config.decode_batches]
            + [point((tokens,) * n, config.mixed_decodes) for n, tokens in config.prefills])


def anchor_steps(config: AnchorConfig) -> list[dict[str, int]]:
    """The anchor's step shapes as recorded (StepShape fields)."""
    return [dict(p.shape()._asdict()) for p in anchor_points(config)]


def anchor_record(config: AnchorConfig,
                  passes: Sequence[tuple[float, float | Sequence[float]]]) -> dict[str, Any]:
    """What a run records of its anchor: the settings, the steps, and each pass (clock time
    it began, and the seconds it took, or each step's seconds in ``steps`` order: then
    ``seconds`` is their sum and ``step_seconds`` lists them)."""
    def entry(at: float, timed: float | Sequence[float]) -> dict[str, Any]:
        if isinstance(timed, (int, float)):
            return {"at_s": float(at), "seconds": float(timed)}
        return {"at_s": float(at), "seconds": float(sum(timed)),
                "step_seconds": [float(x) for x in timed]}
    return {"config": config.to_dict(), "steps": anchor_steps(config),
            "passes": [entry(at, timed) for at, timed in passes]}


def check_same_steps(steps: Sequence[Mapping[str, int]],
                     reference_steps: Sequence[Mapping[str, int]]) -> None:
    """AnchorMismatchError unless two anchors timed the same steps (only then do their
    passes compare)."""
    if [dict(s) for s in steps] != [dict(s) for s in reference_steps]:
        raise AnchorMismatchError("the two anchors timed different steps; profile and replay "
                                  "with the same anchor settings")


def mean_pass(passes_s: Sequence[float]) -> float:
    """The calibration's pass time: the mean pass trimmed of its 10% slowest and fastest
    (a pass that met a neighbour's burst says little of the machine's speed)."""
    from scipy.stats import trim_mean  # here: scipy is slow to import for argument parsing

    if not len(passes_s):
        raise ValueError("mean_pass: an anchor without timed passes")
    return float(trim_mean(passes_s, TRIM))


def _pass_value(entry: Any, key: str, where: str, i: int, low: float, strict: bool) -> float:
    value = entry.get(key) if isinstance(entry, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            (low < value if strict else low <= value) and value < math.inf):
        raise ValueError(f"{where}.passes[{i}].{key}: expected seconds {'>' if strict else '>='}"
                         f" {low:g}, got {value!r}")
    return float(value)


def anchor_passes(record: Any, where: str) -> tuple[list[dict[str, int]], list[float]]:
    """The steps and pass seconds of an anchor record (``anchor_record``'s form), checked;
    ValueError naming ``where`` and the field otherwise."""
    if not isinstance(record, Mapping):
        raise ValueError(f"{where}: expected an anchor record (object), got {record!r}")
    steps, passes = record.get("steps"), record.get("passes")
    if not isinstance(steps, list) or not steps or not all(
            isinstance(step, Mapping) for step in steps):
        raise ValueError(f"{where}.steps: expected a non-empty list of step shapes, got "
                         f"{steps!r}")
    if not isinstance(passes, list) or not passes:
        raise ValueError(f"{where}.passes: expected a non-empty list, got {passes!r}")
    seconds = [_pass_value(entry, "seconds", where, i, 0.0, True)
               for i, entry in enumerate(passes)]
    return [dict(step) for step in steps], seconds


def anchor_times(record: Mapping[str, Any], where: str) -> list[float]:
    """The clock time each pass of an anchor record began (seconds >= 0, in order)."""
    times: list[float] = []
    for i, entry in enumerate(record.get("passes") or []):
        times.append(_pass_value(entry, "at_s", where, i, times[-1] if times else 0.0, False))
    return times
