"""The sweep file: a TOML description of a grid of simulations, parsed and checked.

``load_sweep_config(path)`` reads it (``tomllib``) into a frozen :class:`SweepConfig`; every
problem is a :class:`SweepConfigError` naming the file, the TOML key and the value. Sections::

    name = "early-abort-vs-cv"     # optional (default: the file name), used in titles
    keep_runs = false              # keep each point's run folder under DIR/runs/

    [workload]                     # what manylora.traces.TraceConfig is built from
    arrivals = "gamma"             # a name, or a table {name = "...", fixed params...}
    popularity = "slora"           # the grid's alpha is its alpha (zipf: its exponent)
    lengths = {name = "uniform", input_range = [8, 512], output_range = [8, 512]}
    catalog = {ranks = {name = "cycle", ranks = [8, 16, 32, 64]}}
    duration_s = 300               # or num_requests = ...

    [options]                      # shared by every point: simulate and policy options
    hardware = "a100-80gb"
    model-shape = "llama-2-13b"

    [policies.fcfs]                # one table per policy (the table's `policy` column)
    queue = "fcfs"

    [grid]                         # the axes; a scalar is a one-value axis
    rate = [1.0, 2.0]              # arrival rate (req/s)
    cv = [1, 2, 4]                 # arrival cv
    num_adapters = [100, 1000]
    alpha = [1.0]                  # popularity exponent
    seed = [0, 1, 2]               # trace seed
    max-batch-adapters = [1, 8]    # any other option name: an extra key column

    [metrics]                      # how each run is scored (analysis.metrics)
    ttft_slo_s = 6.0
    tpot_slo_s = 0.2
    slo_scales = [1.0]
    warmup_frac = 0.0              # and cooldown_frac, warmup_s, cooldown_s

    [[plots]]                      # figures drawn from the results table
    figure = "attainment-vs-cv"    # a manylora plot kind
    where = ["slo_scale=1"]        # optional filters, as `manylora plot --where`
    metric = "throughput_rps"      # optional metric override
    x = "max_batch_adapters"       # optional: another key column on x
    name = "throughput-vs-cv"      # optional file name

Option names (in ``[options]``, policies and extra grid axes) are checked against the
registry the caller passes in (:class:`OptionNames`), so this module knows no option itself.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from manylora.analysis.metrics import SUMMARY_COLUMNS
from manylora.analysis.plot_specs import SWEEP_PLOTS
from manylora.analysis.slo import SLO
from manylora.analysis.window import Window

WORKLOAD_AXES = ("rate", "cv", "num_adapters", "alpha", "seed")
"""Grid axes that shape the trace; every other axis names an option."""
TOP_LEVEL = ("name", "description", "keep_runs", "workload", "options", "policies", "grid",
             "metrics", "plots")
WORKLOAD_KEYS = ("arrivals", "popularity", "lengths", "catalog", "duration_s",
                 "num_requests", "num_adapters")
WINDOW_KEYS = ("warmup_s", "cooldown_s", "warmup_frac", "cooldown_frac")
PLOT_KEYS = ("figure", "where", "metric", "name", "x")
DEFAULT_POLICY = "default"


class SweepConfigError(ValueError):
    """A sweep file that cannot be read or holds a bad key or value."""


@dataclass(frozen=True)
class OptionNames:
    """The option names a sweep may set, with the function that canonicalises each name
    (``"max-batch-adapters"`` and ``"max_batch_adapters"`` are one option)."""

    canonical: Callable[[str], str | None]   # None: not an option
    known: tuple[str, ...]                   # for error messages

    def resolve(self, name: str, where: str) -> str:
        canonical = self.canonical(name)
        if canonical is None:
            raise SweepConfigError(f"{where}: unknown option {name!r}; known: "
                                   f"{', '.join(self.known)}")
        return canonical


@dataclass(frozen=True)
class MetricsSpec:
    """How every point's run is scored."""

    slo: SLO = SLO()
    slo_scales: tuple[float, ...] = (1.0,)
    window: Window = Window()

    def __post_init__(self) -> None:
        if not self.slo_scales or not all(
                isinstance(s, (int, float)) and math.isfinite(s) and s > 0
                for s in self.slo_scales):
            raise ValueError(f"MetricsSpec.slo_scales must be a non-empty list of numbers > 0, "
                             f"got {list(self.slo_scales)!r}")
        if len(set(self.slo_scales)) != len(self.slo_scales):
            raise ValueError(f"MetricsSpec.slo_scales has a repeated value: "
                             f"{list(self.slo_scales)!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"ttft_slo_s": self.slo.ttft_s, "tpot_slo_s": self.slo.tpot_s,
                "slo_scales": list(self.slo_scales),
                **{k: getattr(self.window, k) for k in WINDOW_KEYS}}


@dataclass(frozen=True)
class PlotSpec:
    """One figure to draw from the results table (a sweep kind of ``manylora plot``)."""

    figure: str
    where: tuple[str, ...] = ()
    metric: str | None = None
    name: str | None = None
    x: str | None = None            # a key column of the table; checked when drawn

    def __post_init__(self) -> None:
        if self.x is not None and (not isinstance(self.x, str) or not self.x):
            raise ValueError(f"PlotSpec.x must be a key column name, got {self.x!r}")
        if self.figure not in SWEEP_PLOTS:
            raise ValueError(f"PlotSpec.figure: unknown {self.figure!r}; choose one of "
                             f"{', '.join(SWEEP_PLOTS)}")
        if self.metric is not None and self.metric not in SUMMARY_COLUMNS:
            raise ValueError(f"PlotSpec.metric: unknown {self.metric!r}; choose one of "
                             f"{', '.join(SUMMARY_COLUMNS)}")
        if any("=" not in w for w in self.where):
            raise ValueError(f"PlotSpec.where must be COLUMN=VALUE strings, got "
                             f"{list(self.where)!r}")

    @property
    def file_name(self) -> str:
        if self.name:
            return self.name
        return "-".join([self.figure, *([self.metric] if self.metric else []),
                         *([f"by-{self.x}"] if self.x else [])])


@dataclass(frozen=True)
class SweepConfig:
    """A parsed sweep file. Mappings are read-only; option names are canonical."""

    name: str
    workload: Mapping[str, Any]
    options: Mapping[str, Any]
    policies: Mapping[str, Mapping[str, Any]]
    grid: Mapping[str, tuple[Any, ...]]      # WORKLOAD_AXES first, then extra option axes
    metrics: MetricsSpec = MetricsSpec()
    plots: tuple[PlotSpec, ...] = ()
    keep_runs: bool = False
    description: str = ""
    source: str = "sweep file"

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("SweepConfig.name must not be empty")
        if not self.policies:
            raise ValueError("SweepConfig.policies must name at least one policy")
        for axis, values in self.grid.items():
            if not values:
                raise ValueError(f"SweepConfig.grid.{axis} has no values")
        keys = ("policy", *WORKLOAD_AXES, "slo_scale", *self.extra_axes)
        for i, plot in enumerate(self.plots, start=1):
            if plot.x is not None and plot.x not in keys:
                raise ValueError(f"[[plots]] #{i}: x = {plot.x!r} is not a key column of "
                                 f"this sweep's table; choose one of {', '.join(keys)}")

    @property
    def extra_axes(self) -> tuple[str, ...]:
        return tuple(a for a in self.grid if a not in WORKLOAD_AXES)

    @property
    def num_points(self) -> int:
        return len(self.policies) * math.prod(len(v) for v in self.grid.values())


def _fail(source: object, key: str, value: Any, why: str) -> SweepConfigError:
    return SweepConfigError(f"{source}: {key} = {value!r}: {why}")


def _table(source: object, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(source, key, value, "expected a table")
    return value


def _no_unknown(source: object, section: str, table: Mapping[str, Any],
                known: tuple[str, ...]) -> None:
    for key in table:
        if key not in known:
            where = f"[{section}] {key}" if section else key
            raise SweepConfigError(f"{source}: {where}: unknown key; expected one of "
                                   f"{', '.join(known)}")


def _options(source: object, section: str, table: Mapping[str, Any],
             names: OptionNames) -> dict[str, Any]:
    resolved: dict[str, Any] = {}
    for key, value in table.items():
        canonical = names.resolve(key, f"{source}: [{section}]")
        if canonical in resolved:
            raise _fail(source, f"[{section}] {key}", value, "this option is given twice")
        resolved[canonical] = value
    return resolved


def _axis_values(source: object, axis: str, value: Any) -> tuple[Any, ...]:
    values = tuple(value) if isinstance(value, list) else (value,)
    if not values:
        raise _fail(source, f"[grid] {axis}", value, "an axis needs at least one value")
    if any(isinstance(v, (dict, list)) for v in values):
        raise _fail(source, f"[grid] {axis}", value, "axis values must be numbers, strings "
                    "or booleans")
    if len(set(map(repr, values))) != len(values):
        raise _fail(source, f"[grid] {axis}", value, "an axis value is repeated")
    return values


def _grid(source: object, table: Mapping[str, Any], names: OptionNames,
          taken: Mapping[str, str]) -> dict[str, tuple[Any, ...]]:
    workload = {a: _axis_values(source, a, table[a]) for a in WORKLOAD_AXES if a in table}
    extras: dict[str, tuple[Any, ...]] = {}
    for key, value in table.items():
        if key in WORKLOAD_AXES:
            continue
        canonical = names.resolve(key, f"{source}: [grid]")
        if canonical in taken or canonical in extras:
            raise _fail(source, f"[grid] {key}", value, f"this option is also set in "
                        f"{taken.get(canonical, '[grid]')}; set it in one place only")
        extras[canonical] = _axis_values(source, key, value)
    return {**workload, **extras}


def _metrics(source: object, table: Mapping[str, Any]) -> MetricsSpec:
    _no_unknown(source, "metrics", table, ("ttft_slo_s", "tpot_slo_s", "slo_scales",
                                           *WINDOW_KEYS))
    scales = table.get("slo_scales", [1.0])
    try:
        slo = SLO(ttft_s=table.get("ttft_slo_s", SLO().ttft_s),
                  tpot_s=table.get("tpot_slo_s", SLO().tpot_s))
        window = Window(**{k: table[k] for k in WINDOW_KEYS if k in table})
        return MetricsSpec(slo, tuple(scales) if isinstance(scales, list) else (scales,),
                           window)
    except (TypeError, ValueError) as exc:
        raise SweepConfigError(f"{source}: [metrics]: {exc}") from None


def _plots(source: object, entries: Any) -> tuple[PlotSpec, ...]:
    if not isinstance(entries, list):
        raise _fail(source, "plots", entries, "expected [[plots]] tables")
    plots = []
    for i, entry in enumerate(entries, start=1):
        entry = _table(source, f"[[plots]] #{i}", entry)
        _no_unknown(source, f"[[plots]] #{i}", entry, PLOT_KEYS)
        if "figure" not in entry:
            raise SweepConfigError(f"{source}: [[plots]] #{i}: missing key figure")
        where = entry.get("where", [])
        try:
            plots.append(PlotSpec(entry["figure"], tuple(where) if isinstance(where, list)
                                  else (where,), entry.get("metric"), entry.get("name"),
                                  entry.get("x")))
        except (TypeError, ValueError) as exc:
            raise SweepConfigError(f"{source}: [[plots]] #{i}: {exc}") from None
    names = [p.file_name for p in plots]
    if len(set(names)) != len(names):
        raise SweepConfigError(f"{source}: two [[plots]] would write the same file; give "
                               f"them different names ({', '.join(names)})")
    return tuple(plots)


def parse_sweep_config(data: Mapping[str, Any], names: OptionNames,
                       source: str = "sweep file", default_name: str = "sweep") -> SweepConfig:
    """A :class:`SweepConfig` from the TOML document ``data`` (see the module docstring)."""
    _no_unknown(source, "", data, TOP_LEVEL)
    workload = _table(source, "[workload]", data.get("workload", {}))
    _no_unknown(source, "workload", workload, WORKLOAD_KEYS)
    options = _options(source, "options", _table(source, "[options]",
                                                 data.get("options", {})), names)
    raw_policies = _table(source, "[policies]", data.get("policies", {DEFAULT_POLICY: {}}))
    policies: dict[str, Mapping[str, Any]] = {}
    for policy, table in raw_policies.items():
        table = _table(source, f"[policies.{policy}]", table)
        settings = _options(source, f"policies.{policy}", table, names)
        for key, value in table.items():
            if names.canonical(key) in options:
                raise _fail(source, f"[policies.{policy}] {key}", value,
                            "this option is also set in [options]; set it in one place only")
        policies[str(policy)] = MappingProxyType(settings)
    taken = {**{k: "[options]" for k in options},
             **{k: f"[policies.{p}]" for p, s in policies.items() for k in s}}
    grid = _grid(source, _table(source, "[grid]", data.get("grid", {})), names, taken)
    if "num_adapters" in grid and "num_adapters" in workload:
        raise _fail(source, "[workload] num_adapters", workload["num_adapters"],
                    "num_adapters is also a [grid] axis; set it in one place only")
    keep_runs = data.get("keep_runs", False)
    if not isinstance(keep_runs, bool):
        raise _fail(source, "keep_runs", keep_runs, "expected true or false")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise _fail(source, "name", name, "expected a non-empty string")
    try:
        return SweepConfig(name=name, workload=MappingProxyType(dict(workload)),
                           options=MappingProxyType(options),
                           policies=MappingProxyType(policies), grid=MappingProxyType(grid),
                           metrics=_metrics(source, _table(source, "[metrics]",
                                                           data.get("metrics", {}))),
                           plots=_plots(source, data.get("plots", [])), keep_runs=keep_runs,
                           description=str(data.get("description", "")), source=source)
    except ValueError as exc:
        if isinstance(exc, SweepConfigError):
            raise
        raise SweepConfigError(f"{source}: {exc}") from None


def load_sweep_config(path: str | Path, names: OptionNames) -> SweepConfig:
    """Read and parse a sweep file; :class:`SweepConfigError` says what is wrong and where."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepConfigError(f"{path}: no such sweep file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepConfigError(f"{path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SweepConfigError(f"{path}: not valid TOML ({exc})") from None
    return parse_sweep_config(data, names, str(path), path.stem)
