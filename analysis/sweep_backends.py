"""Where a sweep's points run: in this process, on a local process pool, or on Ray.

A backend takes a point function (a module-level function, so that it can be sent to another
process by reference) and the tasks, and yields each task's result as soon as it is ready, in
completion order. The caller stores results as they come, so the order never reaches the
results table: the same grid gives the same table on every backend and worker count.

- ``serial``: one process, one point after another (debugging, profiling, ``--workers 1``).
- ``process``: a ``multiprocessing`` pool of ``workers`` processes started with ``spawn``
  (a clean interpreter per worker: no state forked from the caller, the same on every OS).
  Workers ignore SIGINT, so Ctrl-C reaches only the caller, which terminates the pool.
- ``ray``: one Ray task per point on the cluster at ``address`` (``"auto"`` or
  ``"ray://host:10001"``), or on a local Ray instance with ``workers`` CPUs when no address is
  given; a Ray session that is already initialised is used as it is. Ray is imported only when
  this backend is chosen: it is an optional dependency (``pip install 'manylora[ray]'``) and
  importing it costs about a second. Workers need manylora installed.
"""
from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

from manylora.analysis.sweep_store import PointResult

PointFunction = Callable[[Any], PointResult]


class BackendError(ValueError):
    """A backend that cannot be used as asked (Ray not installed, bad worker count)."""


class Backend(Protocol):
    name: str

    def run(self, fn: PointFunction, tasks: Sequence[Any]) -> Iterator[PointResult]: ...


def default_workers() -> int:
    """CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def _check_workers(workers: int) -> int:
    if not isinstance(workers, int) or workers < 1:
        raise BackendError(f"workers must be a whole number >= 1, got {workers!r}")
    return workers


class SerialBackend:
    name = "serial"

    def __init__(self, workers: int = 1, address: str | None = None) -> None:
        if address is not None:
            raise BackendError("the serial backend takes no address")

    def run(self, fn: PointFunction, tasks: Sequence[Any]) -> Iterator[PointResult]:
        for task in tasks:
            yield fn(task)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ProcessBackend:
    name = "process"

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        if address is not None:
            raise BackendError("the process backend takes no address (use Ray for a cluster)")
        self.workers = _check_workers(workers if workers is not None else default_workers())

    def run(self, fn: PointFunction, tasks: Sequence[Any]) -> Iterator[PointResult]:
        if not tasks:
            return
        context = multiprocessing.get_context("spawn")
        pool = context.Pool(min(self.workers, len(tasks)), initializer=_ignore_sigint)
        try:
            yield from pool.imap_unordered(fn, tasks, chunksize=1)
            pool.close()
        finally:
            # Reached early on an error, Ctrl-C or an abandoned generator: stop the workers
            # now rather than letting them finish points nobody will store.
            pool.terminate()
            pool.join()


class RayBackend:
    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        try:
            self.ray = importlib.import_module("ray")
        except ImportError:
            raise BackendError("the Ray backend needs the ray package: "
                               "pip install 'manylora[ray]'") from None
        self.address = address
        self.workers = _check_workers(workers if workers is not None else default_workers())

    def _connect(self) -> bool:
        """Initialise Ray unless it already is; True when this backend started it."""
        ray = self.ray
        if ray.is_initialized():
            return False
        if self.address is not None:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False)
        return True

    def run(self, fn: PointFunction, tasks: Sequence[Any]) -> Iterator[PointResult]:
        if not tasks:
            return
        ray = self.ray
        started = self._connect()
        remote = ray.remote(num_cpus=1, max_retries=0)(fn)
        pending = [remote.remote(task) for task in tasks]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()


BACKENDS: Mapping[str, Callable[..., Backend]] = MappingProxyType({
    cls.name: cls for cls in (SerialBackend, ProcessBackend, RayBackend)
})


def make_backend(name: str, workers: int | None = None,
                 address: str | None = None) -> Backend:
    """The backend called ``name`` (``BACKENDS``)."""
    try:
        build = BACKENDS[name]
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}"
                           ) from None
    return build(workers=workers, address=address)
