"""The profile file (`manylora profile` output): reading, validating and writing it.

A profile is JSON (docs/internals.md, "Profile"): where it was measured (``hardware``,
``versions``, ``model``, ``pool``, ``settings``), the measured step times over a grid of step
shapes (``steps``), adapter load timings per tier (``adapter_loads``), the steps of short
real replays (``serving``, optional: one column list per field and probe) and, once fitted,
the cost model fitted from them with its cross-validated error (``fit``). The profiler in the
engine's data plane writes it; the fitted cost model reads it. Torch-free.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from manylora.engine.model_shape import TARGETS, ModelShape
from manylora.engine.anchor_config import anchor_passes, mean_pass
from manylora.engine.serving_probes import SATURATION_PROBE
from manylora.engine.step_shape import STEP_SHAPE_FIELDS, StepShape
from manylora.simulator.cost_base import CostModelError
from manylora.traces.atomic_io import atomic_write_text

FORMAT = "manylora-profile"
FORMAT_VERSION = 1


class ProfileError(CostModelError):
    """A profile file that cannot be read or does not follow the format; names where."""


@dataclass(frozen=True)
class StepTiming:
    """Measured durations (one per repeat, seconds) of steps of one shape."""

    shape: StepShape
    duration_s: tuple[float, ...]


@dataclass(frozen=True)
class LoadTiming:
    """Measured load times (one per repeat, seconds) of one adapter, per tier."""

    rank: int
    targets: tuple[str, ...]
    bytes: int
    host_to_pool_s: tuple[float, ...]
    disk_to_host_s: tuple[float, ...]


@dataclass(frozen=True, eq=False)
class ServingProbe:
    """The steps of one short replay on the engine: shapes and tiled durations."""

    name: str
    offered_rps: float
    requests: int
    shapes: np.ndarray       # [n, len(STEP_SHAPE_FIELDS)] float64, StepShape field order
    duration_s: np.ndarray   # [n] seconds
    anchor: Mapping[str, Any] | None = None  # speed anchor's record (engine/anchor_config.py)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ServingProbe) and (self.name, self.offered_rps, self.requests)
                == (other.name, other.offered_rps, other.requests)
                and np.array_equal(self.shapes, other.shapes)
                and np.array_equal(self.duration_s, other.duration_s)
                and self.anchor == other.anchor)

    def to_dict(self) -> dict[str, Any]:
        steps = {f: self.shapes[:, i].astype(np.int64).tolist()
                 for i, f in enumerate(STEP_SHAPE_FIELDS)}
        out = {"probe": self.name, "offered_rps": self.offered_rps, "requests": self.requests,
               "steps": {**steps, "duration_s": self.duration_s.tolist()}}
        if self.anchor is not None:
            out["anchor"] = dict(self.anchor)
        return out


@dataclass(frozen=True)
class Serving:
    """Every serving probe, and the saturation throughput the probes' rates derive from."""

    saturation_rps: float
    probes: tuple[ServingProbe, ...]

    def calibration(self) -> "Serving | None":
        """The probes a cost model is fitted on: the open-loop ones (``SATURATION_PROBE``
        measures throughput only); None when there are none."""
        kept = tuple(p for p in self.probes if p.name != SATURATION_PROBE)
        return replace(self, probes=kept) if kept else None

    def anchor(self) -> tuple[list[dict[str, int]], list[float]] | None:
        """The speed anchor's steps and every pass timed during these probes (None unless
        every probe timed one, and the same steps)."""
        if not self.probes or any(p.anchor is None for p in self.probes):
            return None
        steps, passes = anchor_passes(self.probes[0].anchor, "probe")
        for probe in self.probes[1:]:
            more_steps, more = anchor_passes(probe.anchor, "probe")
            if more_steps != steps:
                return None
            passes += more
        return steps, passes

    def probe_speeds(self) -> dict[str, float] | None:
        """How many times slower than the calibration's mean each probe's machine ran: its
        mean anchor pass over the mean pass of every probe (``mean_pass``, the reference
        validate rescales replays by); None unless every probe timed the same anchor."""
        anchor = self.anchor()
        if anchor is None:
            return None
        reference = mean_pass(anchor[1])
        return {p.name: mean_pass(anchor_passes(p.anchor, f"probe {p.name}")[1]) / reference
                for p in self.probes}

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Shapes [n, fields], durations [n] and each step's probe index [n]."""
        return (np.concatenate([p.shapes for p in self.probes]),
                np.concatenate([p.duration_s for p in self.probes]),
                np.concatenate([np.full(len(p.duration_s), i)
                                for i, p in enumerate(self.probes)]))


@dataclass(frozen=True)
class Profile:
    hardware: Mapping[str, Any]
    model: ModelShape
    pool: Mapping[str, Any]
    versions: Mapping[str, Any]
    settings: Mapping[str, Any]
    steps: tuple[StepTiming, ...]
    adapter_loads: tuple[LoadTiming, ...]
    fit: Mapping[str, Any] | None = field(default=None)
    serving: Serving | None = field(default=None)

    def with_fit(self, fit: Mapping[str, Any]) -> Profile:
        return replace(self, fit=fit)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "hardware": dict(self.hardware), "model": asdict(self.model), "pool": dict(self.pool),
            "versions": dict(self.versions), "settings": dict(self.settings),
            "steps": [{**s.shape._asdict(), "duration_s": list(s.duration_s)}
                      for s in self.steps],
            "adapter_loads": [{"rank": a.rank, "targets": list(a.targets), "bytes": a.bytes,
                               "host_to_pool_s": list(a.host_to_pool_s),
                               "disk_to_host_s": list(a.disk_to_host_s)}
                              for a in self.adapter_loads],
            "serving": None if self.serving is None else {
                "saturation_rps": self.serving.saturation_rps,
                "probes": [p.to_dict() for p in self.serving.probes]},
            "fit": None if self.fit is None else dict(self.fit),
        }


def _int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ProfileError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _times(value: Any, where: str) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise ProfileError(f"{where}: expected a non-empty list of seconds, got {value!r}")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < math.inf):
            raise ProfileError(f"{where}[{i}]: expected seconds > 0, got {v!r}")
    return tuple(float(v) for v in value)


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 < value < math.inf):
        raise ProfileError(f"{where}: expected a number > 0, got {value!r}")
    return float(value)


def _column(steps: Mapping[str, Any], name: str, where: str, length: int) -> np.ndarray:
    """One step field's values [length] as float64 (integers >= 0)."""
    values, here = steps.get(name), f"{where}.{name}"
    if not isinstance(values, list) or len(values) != length:
        raise ProfileError(f"{here}: expected a list of {length} values (one per step), got "
                           f"{len(values) if isinstance(values, list) else repr(values)}")
    return np.array([_int(v, f"{here}[{i}]", 0) for i, v in enumerate(values)],
                    dtype=np.float64)


def _probe(entry: Any, where: str) -> ServingProbe:
    if not isinstance(entry, dict):
        raise ProfileError(f"{where}: expected an object, got {entry!r}")
    if not isinstance(entry.get("probe"), str):
        raise ProfileError(f"{where}.probe: expected a name, got {entry.get('probe')!r}")
    steps = entry.get("steps")
    if not isinstance(steps, dict):
        raise ProfileError(f"{where}.steps: expected an object of columns, got {steps!r}")
    unknown = set(steps) - set(STEP_SHAPE_FIELDS) - {"duration_s"}
    if unknown:
        raise ProfileError(f"{where}.steps: unknown field {sorted(unknown)[0]!r}")
    seconds = np.array(_times(steps.get("duration_s"), f"{where}.steps.duration_s"))
    shapes = np.stack([_column(steps, f, f"{where}.steps", len(seconds))
                       for f in STEP_SHAPE_FIELDS], axis=1)  # [n, fields]
    anchor = entry.get("anchor")
    if anchor is not None:
        try:
            anchor_passes(anchor, f"{where}.anchor")
        except ValueError as exc:
            raise ProfileError(str(exc)) from None
    return ServingProbe(entry["probe"], _positive(entry.get("offered_rps"),
                                                  f"{where}.offered_rps"),
                        _int(entry.get("requests"), f"{where}.requests", 1), shapes, seconds,
                        anchor)


def _serving(data: Any, where: str) -> Serving | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: expected an object or null, got {data!r}")
    probes = data.get("probes")
    if not isinstance(probes, list) or not probes:
        raise ProfileError(f"{where}.probes: expected a non-empty list")
    return Serving(_positive(data.get("saturation_rps"), f"{where}.saturation_rps"),
                   tuple(_probe(p, f"{where}.probes[{i}]") for i, p in enumerate(probes)))


def _mapping(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ProfileError(f"{where}: field {key!r}: expected an object, got {value!r}")
    return value


def _step(entry: Any, where: str) -> StepTiming:
    if not isinstance(entry, dict):
        raise ProfileError(f"{where}: expected an object, got {entry!r}")
    unknown = set(entry) - set(STEP_SHAPE_FIELDS) - {"duration_s"}
    if unknown:
        raise ProfileError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    shape = StepShape(**{f: _int(entry.get(f, 0), f"{where}.{f}", 0) for f in STEP_SHAPE_FIELDS})
    if shape.tokens == 0:
        raise ProfileError(f"{where}: a step needs prefill_tokens or decode_requests > 0")
    return StepTiming(shape, _times(entry.get("duration_s"), f"{where}.duration_s"))


def _load(entry: Any, where: str) -> LoadTiming:
    if not isinstance(entry, dict):
        raise ProfileError(f"{where}: expected an object, got {entry!r}")
    targets = entry.get("targets")
    if not isinstance(targets, list) or not targets or any(t not in TARGETS for t in targets):
        raise ProfileError(f"{where}.targets: expected a list of {', '.join(TARGETS)}, "
                           f"got {targets!r}")
    return LoadTiming(_int(entry.get("rank"), f"{where}.rank", 1), tuple(targets),
                      _int(entry.get("bytes"), f"{where}.bytes", 1),
                      _times(entry.get("host_to_pool_s"), f"{where}.host_to_pool_s"),
                      _times(entry.get("disk_to_host_s"), f"{where}.disk_to_host_s"))


def profile_from_dict(data: Any, source: str) -> Profile:
    """Validate a decoded profile; errors start with ``source`` and name the entry and field."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ProfileError(f"{source}: not a manylora profile (field 'format' must be {FORMAT!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise ProfileError(f"{source}: field 'format_version': expected {FORMAT_VERSION}, got "
                           f"{data.get('format_version')!r}")
    model = _mapping(data, "model", source)
    names = {f.name for f in fields(ModelShape)}
    if set(model) != names:
        raise ProfileError(f"{source}: field 'model': expected keys {sorted(names)}, got "
                           f"{sorted(model)}")
    try:
        shape = ModelShape(**model)
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"{source}: field 'model': {exc}") from None
    steps, loads = data.get("steps"), data.get("adapter_loads")
    if not isinstance(steps, list) or not steps:
        raise ProfileError(f"{source}: field 'steps': expected a non-empty list")
    if not isinstance(loads, list) or not loads:
        raise ProfileError(f"{source}: field 'adapter_loads': expected a non-empty list")
    fit = data.get("fit")
    if fit is not None and not isinstance(fit, dict):
        raise ProfileError(f"{source}: field 'fit': expected an object or null, got {fit!r}")
    return Profile(
        hardware=_mapping(data, "hardware", source), model=shape,
        pool=_mapping(data, "pool", source), versions=_mapping(data, "versions", source),
        settings=_mapping(data, "settings", source),
        steps=tuple(_step(e, f"{source}: steps[{i}]") for i, e in enumerate(steps)),
        adapter_loads=tuple(_load(e, f"{source}: adapter_loads[{i}]")
                            for i, e in enumerate(loads)),
        fit=fit, serving=_serving(data.get("serving"), f"{source}: serving"))


def parse_profile(raw: bytes, source: str) -> Profile:
    """Decode and validate the bytes of a profile file; ``source`` names it in errors."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if hasattr(exc, "lineno") else ""
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else exc.reason
        raise ProfileError(f"{source}: not valid JSON{where}: {reason}") from None
    return profile_from_dict(data, source)


def read_raw(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read profile: {exc.strerror or exc}") from None


def read_profile(path: str | os.PathLike[str]) -> Profile:
    return parse_profile(read_raw(path), str(path))


def write_profile(profile: Profile, path: str | os.PathLike[str]) -> None:
    """Write atomically: a temporary file in the same folder renamed into place."""
    atomic_write_text(path, json.dumps(profile.to_dict(), indent=1, allow_nan=False) + "\n")
