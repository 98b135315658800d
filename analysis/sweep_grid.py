"""Grid points of a sweep: expanding a :class:`SweepConfig` into tasks with stable ids.

Each :class:`PointTask` carries everything a worker needs to run one simulation without
reading any file: the trace config (the worker generates the trace from it and its seed),
the control-plane config, the simulate options and how to score the run. Its ``point_id``
is a hash of exactly those (canonical JSON, so ``1`` and ``1.0`` hash alike and key order
does not matter): rerunning a sweep finds a finished point by its id, and changing anything
that would change its result gives it a new id. Points come out in a fixed order (policy,
then the axes as in ``WORKLOAD_AXES`` and extras in file order, seed innermost), which is
also the row order of the results table.

Every point is validated while expanding, before anything runs: a bad rate or policy option
is a :class:`SweepConfigError` naming the grid value or table that produced it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from manylora.analysis.sweep_config import SweepConfig, SweepConfigError, MetricsSpec
from manylora.engine.scheduler_config import ControlConfig
from manylora.traces import TraceConfig
from manylora.traces.arrivals import ARRIVALS
from manylora.traces.catalog import ALPHA_RULES, RANK_RULES, CatalogConfig
from manylora.traces.lengths import LENGTHS
from manylora.traces.popularity import POPULARITY

ID_LENGTH = 16          # hex digits of sha256: 64 bits, no collision in any realistic sweep
FORMAT_VERSION = 1      # bump when a point's result would change for the same parameters
# Which model field a workload axis sets; the first field the model has wins (S-LoRA's
# popularity calls its exponent alpha, a Zipf law calls it exponent).
AXIS_FIELDS = {"rate": ("arrivals", ("rate",)), "cv": ("arrivals", ("cv",)),
               "alpha": ("popularity", ("alpha", "exponent"))}
REGISTRIES = {"arrivals": ARRIVALS, "popularity": POPULARITY, "lengths": LENGTHS}
DEFAULT_MODELS = {"arrivals": "gamma", "popularity": "slora", "lengths": "uniform"}
CATALOG_KEYS = ("ranks", "alpha", "targets")


@dataclass(frozen=True)
class PointTask:
    """One simulation of a sweep and how to score it (plain, picklable values only)."""

    index: int                       # position in the grid: the results table's row order
    point_id: str
    keys: dict[str, Any]             # sweep-table key columns (without slo_scale)
    trace: TraceConfig
    control: ControlConfig
    simulate: dict[str, Any]         # simulate options other than the control plane's
    metrics: MetricsSpec
    keep_run: bool = False


class OptionResolver(Protocol):
    """Turns a point's merged options into what its worker runs (sweep_options.py)."""

    def split(self, options: Mapping[str, Any]) -> tuple[ControlConfig, dict[str, Any]]:
        """``(control config, simulate options)``; ValueError names a bad value."""

    def identity(self, control: ControlConfig, simulate: Mapping[str, Any]) -> dict[str, Any]:
        """What, besides the trace and control config, decides the simulation's result."""


def _canonical(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if dataclasses.is_dataclass(value):
        return _canonical(dataclasses.asdict(value))
    if hasattr(value, "item"):          # numpy scalars
        return _canonical(value.item())
    raise TypeError(f"cannot hash a parameter of type {type(value).__name__}: {value!r}")


def point_id(identity: Mapping[str, Any]) -> str:
    """Stable id of a point: sha256 of its canonical JSON, shortened."""
    text = json.dumps(_canonical({"format": FORMAT_VERSION, **identity}), sort_keys=True,
                      separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:ID_LENGTH]


def _model_spec(config: SweepConfig, kind: str) -> dict[str, Any]:
    spec = config.workload.get(kind, DEFAULT_MODELS[kind])
    if isinstance(spec, str):
        return {"name": spec}
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise SweepConfigError(f"{config.source}: [workload] {kind} = {spec!r}: expected a "
                               f"name or a table with a name")
    return dict(spec)


def _catalog(config: SweepConfig) -> CatalogConfig:
    given = config.workload.get("catalog", {})
    if not isinstance(given, Mapping) or set(given) - set(CATALOG_KEYS):
        raise SweepConfigError(f"{config.source}: [workload] catalog = {given!r}: expected a "
                               f"table with some of {', '.join(CATALOG_KEYS)}")
    given = dict(given)
    for key, registry in (("ranks", RANK_RULES), ("alpha", ALPHA_RULES)):
        if isinstance(given.get(key), str):
            given[key] = {"name": given[key]}
        if key in given and not isinstance(given[key], Mapping):
            raise SweepConfigError(f"{config.source}: [workload] catalog.{key} = "
                                   f"{given[key]!r}: expected a name or a table with a name")
    return CatalogConfig.from_dict({**CatalogConfig().to_dict(), **given})


def _fields(kind: str, spec: Mapping[str, Any]) -> set[str]:
    cls = REGISTRIES[kind].get(spec["name"])
    return {f.name for f in dataclasses.fields(cls)}


class _TraceBuilder:
    """Builds each point's TraceConfig from the workload table and the point's axis values."""

    def __init__(self, config: SweepConfig) -> None:
        self.config = config
        self.specs = {kind: _model_spec(config, kind) for kind in REGISTRIES}
        for axis, (kind, names) in AXIS_FIELDS.items():
            if axis in config.grid and not _fields(kind, self.specs[kind]) & set(names):
                raise SweepConfigError(
                    f"{config.source}: [grid] {axis}: the {kind} model "
                    f"{self.specs[kind]['name']!r} has no {' or '.join(names)} to sweep")
        self.lengths = LENGTHS.from_dict(self.specs["lengths"])
        self.catalog = _catalog(config)
        workload = config.workload
        if "num_requests" in workload and "duration_s" in workload:
            raise SweepConfigError(f"{config.source}: [workload]: give duration_s or "
                                   f"num_requests, not both")
        self.size = ({"num_requests": workload["num_requests"], "duration_s": None}
                     if "num_requests" in workload
                     else {"duration_s": workload.get("duration_s", 300.0)})

    def build(self, values: Mapping[str, Any]) -> TraceConfig:
        models = {}
        for kind in ("arrivals", "popularity"):
            spec = dict(self.specs[kind])
            present = _fields(kind, spec)
            for axis, (axis_kind, names) in AXIS_FIELDS.items():
                if axis_kind == kind and axis in values:
                    spec[next(n for n in names if n in present)] = values[axis]
            models[kind] = REGISTRIES[kind].from_dict(spec)
        num_adapters = values.get("num_adapters",
                                  self.config.workload.get("num_adapters", 200))
        return TraceConfig(num_adapters=num_adapters, arrivals=models["arrivals"],
                           popularity=models["popularity"], lengths=self.lengths,
                           catalog=self.catalog, seed=values.get("seed", 0), **self.size)


def workload_keys(trace: TraceConfig) -> dict[str, Any]:
    """The sweep-table workload keys of a trace config; NaN where the model has no such
    parameter (a Poisson process has cv 1 by definition)."""
    arrivals, popularity = trace.arrivals, trace.popularity
    cv = getattr(arrivals, "cv", 1.0 if arrivals.name == "poisson" else math.nan)
    alpha = getattr(popularity, "alpha", getattr(popularity, "exponent", math.nan))
    return {"rate": float(getattr(arrivals, "rate", math.nan)), "cv": float(cv),
            "num_adapters": int(trace.num_adapters), "alpha": float(alpha),
            "seed": int(trace.seed)}


def _where(policy: str, values: Mapping[str, Any]) -> str:
    return ", ".join([f"policy={policy}", *(f"{k}={v!r}" for k, v in values.items())])


def expand_grid(config: SweepConfig, resolver: OptionResolver) -> list[PointTask]:
    """Every point of the grid, validated, in table order. ``resolver`` turns a point's
    merged options (``[options]``, its policy, its extra axes) into its configs."""
    try:
        builder = _TraceBuilder(config)
    except ValueError as exc:
        if isinstance(exc, SweepConfigError):
            raise
        raise SweepConfigError(f"{config.source}: [workload]: {exc}") from None
    axes = [a for a in ("rate", "cv", "num_adapters", "alpha") if a in config.grid]
    axes += [*config.extra_axes, *(["seed"] if "seed" in config.grid else [])]
    tasks: list[PointTask] = []
    for policy, settings in config.policies.items():
        for combo in itertools.product(*(config.grid[a] for a in axes)):
            values = dict(zip(axes, combo))
            extras = {a: values[a] for a in config.extra_axes}
            try:
                trace = builder.build(values)
                control, simulate = resolver.split({**config.options, **settings, **extras})
                setup = resolver.identity(control, simulate)
            except ValueError as exc:
                raise SweepConfigError(f"{config.source}: grid point "
                                       f"{_where(policy, values)}: {exc}") from None
            keys = {"policy": policy, **workload_keys(trace), **extras}
            identity = {"keys": keys, "trace": {"params": trace.to_dict(),
                                                "seed": int(trace.seed)},
                        "control": control.to_dict(), "setup": setup,
                        "metrics": config.metrics.to_dict()}
            tasks.append(PointTask(len(tasks), point_id(identity), keys, trace, control,
                                   simulate, config.metrics, config.keep_runs))
    ids = {t.point_id for t in tasks}
    if len(ids) != len(tasks):
        raise SweepConfigError(f"{config.source}: two grid points have the same parameters (an "
                               f"axis lists one value twice, e.g. 1 and 1.0)")
    return tasks
