"""Name registries for the workload models, and their round trip through JSON.

Every arrival process, popularity law, length model and rank rule is a small frozen dataclass
with a class attribute ``name``; a `Registry` maps names to classes, so the command line and
``meta.json`` select one by name without if/elif chains, and ``meta.json`` can rebuild the
exact object that generated a trace (`to_dict` / `from_dict`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Generic, TypeVar

import numpy as np

from manylora.traces.errors import TraceConfigError

T = TypeVar("T")


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _tupled(value: Any) -> Any:
    # JSON has no tuples; the config classes declare tuple fields so that they stay hashable.
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value


class Registry(Generic[T]):
    """Classes of one kind (e.g. "arrival process") keyed by their ``name``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        name = cls.name  # type: ignore[attr-defined]
        if name in self._classes:
            raise TypeError(f"{self.kind} {name!r} registered twice")
        self._classes[name] = cls
        return cls

    def names(self) -> tuple[str, ...]:
        return tuple(self._classes)

    def get(self, name: str) -> type[T]:
        try:
            return self._classes[name]
        except KeyError:
            raise TraceConfigError(f"unknown {self.kind} {name!r}; choose one of "
                                   f"{', '.join(self._classes)}") from None

    def to_dict(self, obj: T) -> dict[str, Any]:
        """``{"name": ..., field: value, ...}`` with tuples as lists (JSON-ready)."""
        fields = dataclasses.fields(obj)  # type: ignore[arg-type]
        return {"name": obj.name, **{f.name: _jsonable(getattr(obj, f.name)) for f in fields}}  # type: ignore[attr-defined]

    def from_dict(self, data: dict[str, Any]) -> T:
        """Inverse of `to_dict`; unknown names or fields raise `TraceConfigError`."""
        if not isinstance(data, dict) or "name" not in data:
            raise TraceConfigError(f"{self.kind} must be an object with a 'name', got {data!r}")
        cls = self.get(data["name"])
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known - {"name"})
        if unknown:
            raise TraceConfigError(f"{self.kind} {data['name']!r} has no parameter "
                                   f"{unknown[0]!r}; known: {', '.join(sorted(known))}")
        return cls(**{k: _tupled(v) for k, v in data.items() if k != "name"})
