"""The profiler: times the real engine over a grid of step shapes and adapter loads.

``profile_engine`` loads a checkpoint exactly as the engine does (same loader, kernel backends,
dtype, device and pool layout), then

- times one step per grid point (profile_grid.py) the way ``Engine.step`` runs one: the
  runner builds the step's BatchMeta, runs the model and the sampler picks one token per
  request (which also waits for the device). Passes over the grid are interleaved in a fresh
  random order each time, so a slow spell of a shared machine spreads over all points instead
  of biasing a few; the first ``warmup`` passes are discarded;
- times adapter loads through the engine's own AdapterStore: disk -> host is reading and
  packing the PEFT folder (the file is dropped from the OS page cache first, where the OS
  allows, so the disk is really read), host -> pool is the copy into pool pages;
- replays a few short seeded traces on the engine itself (profile_serving.py) and records
  every step, so the fit also sees what real serving steps cost.

The result is a dict in the profile format of docs/internals.md, without ``fit``: fitting is
the simulator's (``manylora profile`` does both). Data plane: imports torch.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from tqdm import tqdm

from manylora.engine.adapter_store import (AdapterStore, adapter_folders,
                                           representative_targets)
from manylora.engine.catalog import AdapterCatalog
from manylora.engine.engine_config import EngineConfig
from manylora.engine.hf_loader import load_checkpoint
from manylora.engine.make_tiny import adapter_config_json, write_adapter
from manylora.engine.model import LlamaModel
from manylora.engine.model_config import ModelConfig
from manylora.engine.model_shape import TARGETS, PoolLayout
from manylora.engine.peft_loader import WEIGHTS_FILE
from manylora.engine.pool_tensors import PoolTensors
from manylora.engine.profile_grid import GridConfig, GridPoint, build_grid
from manylora.engine.profile_serving import run_serving_probes
from manylora.engine.serving_probes import ServingProbeConfig
from manylora.engine.runner import (Runner, fill_synthetic_adapters, synchronize,
                                   synthetic_rows)
from manylora.engine.sampling import Sampler, SamplingParams

FORMAT = "manylora-profile"
FORMAT_VERSION = 1
_GENERATED_RANKS = (8, 16, 32, 64)  # adapters written for load timing when none are given


@dataclass(frozen=True)
class ProfilerConfig:
    """How much to measure. ``quick`` shrinks everything for tests and smoke runs."""

    grid: GridConfig = field(default_factory=GridConfig)
    warmup: int = 1                 # passes over the grid discarded before timing
    repeats: int = 5                # timed passes over the grid
    load_repeats: int = 5           # timed loads per adapter and tier
    max_load_adapters: int = 16     # adapters whose loads are timed
    lora_targets: tuple[str, ...] = ()  # targets of the grid's adapters; () = see below
    serving: ServingProbeConfig | None = field(default_factory=ServingProbeConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        for name, least in (("warmup", 0), ("repeats", 1), ("load_repeats", 1),
                            ("max_load_adapters", 1)):
            if getattr(self, name) < least:
                raise ValueError(f"ProfilerConfig.{name} must be >= {least}, got "
                                 f"{getattr(self, name)}")
        unknown = [t for t in self.lora_targets if t not in TARGETS]
        if unknown:
            raise ValueError(f"ProfilerConfig.lora_targets: unknown target {unknown[0]!r}; "
                             f"expected some of {', '.join(TARGETS)}")

    @classmethod
    def quick(cls, seed: int = 0) -> ProfilerConfig:
        return cls(grid=GridConfig.quick(), warmup=1, repeats=2, load_repeats=2,
                   max_load_adapters=4, serving=ServingProbeConfig.quick(), seed=seed)


def time_points(runner: Runner, sampler: Sampler, layout: PoolLayout, num_pages: int,
                points: list[GridPoint], targets: tuple[str, ...], vocab: int, warmup: int,
                repeats: int, rng: np.random.Generator,
                tick: Callable[[], None] = lambda: None) -> list[list[float]]:
    """Seconds of each of ``repeats`` timed runs of every point, as ``Engine.step`` runs a
    step (BatchMeta, model, sampler); passes over the points in a fresh random order each
    time, the first ``warmup`` passes discarded."""
    rows = []
    for point in points:
        r = synthetic_rows(layout, num_pages, point.prefill_lens, point.context_lens,
                           point.request_slots, point.slot_ranks, targets, vocab, rng)
        fill_synthetic_adapters(runner.pool, r, rng)
        rows.append(r)
    greedy = SamplingParams()
    times: list[list[float]] = [[] for _ in points]
    for p in range(warmup + repeats):
        for i in rng.permutation(len(points)):
            params = [greedy] * rows[i].num_requests
            synchronize(runner.device)
            start = time.perf_counter()
            sampler.sample(runner.run(rows[i]), params, [None] * len(params))
            elapsed = time.perf_counter() - start
            if p >= warmup:
                times[i].append(elapsed)
            tick()
    return times


def _drop_from_page_cache(path: Path) -> None:
    """Best effort: without posix_fadvise the read comes from the page cache."""
    if hasattr(os, "posix_fadvise"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _timed_loads(store: AdapterStore, catalog: AdapterCatalog, pool: PoolTensors,
                 config: ProfilerConfig, tick: Callable[[], None]) -> list[dict[str, Any]]:
    loads = []
    for adapter_id in sorted(store.adapters)[:config.max_load_adapters]:
        adapter = store.adapters[adapter_id]
        pages = np.arange(pool.num_pages - catalog.pages[adapter_id], pool.num_pages,
                          dtype=np.int32)
        disk, host = [], []
        for _ in range(config.load_repeats + 1):  # the first of each is a warm-up
            store.host.pop(adapter_id, None)
            _drop_from_page_cache(adapter.path / WEIGHTS_FILE)
            start = time.perf_counter()
            store.packed(adapter_id)
            disk.append(time.perf_counter() - start)
            synchronize(store.device)
            start = time.perf_counter()
            store.copy_to_pool(adapter_id, pages, pool, blocking=True)
            synchronize(store.device)
            host.append(time.perf_counter() - start)
            tick()
        loads.append({"rank": catalog.rank[adapter_id],
                      "targets": [t for t in TARGETS if t in adapter.ranks],
                      "bytes": catalog.num_bytes[adapter_id],
                      "host_to_pool_s": host[1:], "disk_to_host_s": disk[1:]})
    return loads


def write_load_adapters(folder: Path, config: ModelConfig, seed: int) -> dict[int, Path]:
    """Random PEFT adapters of several ranks and target sets, for load timing."""
    rng = np.random.default_rng(seed)
    sets = (("q", "v"), ("q", "k", "v", "o"), TARGETS)
    folders = {}
    for i, (rank, targets) in enumerate((r, t) for t in sets for r in _GENERATED_RANKS):
        folders[i] = folder / str(i)
        write_adapter(folders[i], config, adapter_config_json(rank, float(rank), targets), rng)
    return folders


def hardware_info(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    accelerator = getattr(torch, device.type, None)
    name = accelerator.get_device_name(device) if device.type != "cpu" and hasattr(
        accelerator, "get_device_name") else None
    return {"device": str(device), "device_name": name, "cpu_model": cpu,
            "cpu_cores": os.cpu_count(), "cpu_affinity": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform()}


def versions() -> dict[str, str | None]:
    found = {}
    for package in ("manylora", "torch", "triton", "numpy"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    found["python"] = platform.python_version()
    return found


def _grid_and_loads(model_dir: str | Path, adapters: str | Path | Mapping[int, Path] | None,
                    engine: EngineConfig, config: ProfilerConfig, scratch: Path,
                    progress: bool) -> dict[str, Any]:
    """Grid step times and adapter loads over a model and pool of the profiler's own (freed
    on return, before the serving probes load the engine)."""
    device, dtype = torch.device(engine.device), engine.torch_dtype
    model_config, weights = load_checkpoint(model_dir, dtype, device)
    model = LlamaModel(model_config, weights, engine.lora(device), engine.attention(device))
    shape = model_config.shape(dtype_bytes=torch.tensor([], dtype=dtype).element_size())
    layout = PoolLayout(shape, engine.control.memory.tokens_per_page)
    rng = np.random.default_rng(config.seed)
    folders = adapter_folders(adapters) if adapters is not None else \
        write_load_adapters(scratch, model_config, config.seed)
    store = AdapterStore(model_config, layout, dtype, device)
    store.register_all(folders)
    if not store.adapters:
        folders = write_load_adapters(scratch, model_config, config.seed)
        store.register_all(folders)
    catalog = AdapterCatalog(layout, store.catalog_specs())
    targets = config.lora_targets or representative_targets(store)
    points = build_grid(config.grid, model_config.max_context_len, rng)
    # Measure over a pool that holds the largest grid point; record the engine's own.
    engine_pages = engine.pool_pages(layout)
    num_pages = max(max(sum(layout.kv_pages(n) for n in p.prefill_lens + p.context_lens)
                        + len(p.slot_ranks) * layout.adapter_pages(
                            max(p.slot_ranks, default=1), targets) for p in points),
                    max(catalog.pages.values()), engine_pages)
    pool = PoolTensors(layout, num_pages, dtype, device)
    runner = Runner(model, pool)
    loaded = min(len(store.adapters), config.max_load_adapters)
    total = len(points) * (config.warmup + config.repeats) + loaded * (config.load_repeats + 1)
    with tqdm(total=total, desc="profile", unit="step", disable=not progress,
              file=sys.stderr) as bar:
        times = time_points(runner, Sampler(device), layout, num_pages, points, targets,
                            model_config.vocab_size, config.warmup, config.repeats, rng,
                            bar.update)
        loads = _timed_loads(store, catalog, pool, config, bar.update)
    return {
        "model": asdict(shape),
        "pool": {"tokens_per_page": layout.tokens_per_page, "num_pages": engine_pages,
                 "page_bytes": layout.page_bytes, "profiled_pages": num_pages},
        "settings": {"dtype": engine.dtype, "lora_backend": model.lora_backend.name,
                     "attention_backend": model.attention_backend.name,
                     "warmup": config.warmup, "repeats": config.repeats,
                     "load_repeats": config.load_repeats, "seed": config.seed,
                     "lora_targets": list(targets), "grid": asdict(config.grid),
                     "adapters": "given" if adapters is not None else "generated"},
        "steps": [dict(p.shape()._asdict(), duration_s=t) for p, t in zip(points, times)],
        "adapter_loads": loads,
    }


def profile_engine(model_dir: str | Path, adapters: str | Path | Mapping[int, Path] | None,
                   engine: EngineConfig = EngineConfig(),
                   config: ProfilerConfig = ProfilerConfig(), progress: bool = False
                   ) -> dict[str, Any]:
    """Measure step and adapter-load times of the engine on this machine (no ``fit``): the
    grid, the adapter loads and, unless ``config.serving`` is None, the serving probes."""
    if engine.threads:
        torch.set_num_threads(engine.threads)  # as Engine does: measure it as it will run
    with tempfile.TemporaryDirectory(prefix="manylora-profile-") as scratch:
        measured = _grid_and_loads(model_dir, adapters, engine, config, Path(scratch) / "load",
                                   progress)
        serving = None
        if config.serving is not None:
            targets = measured["settings"]["lora_targets"]
            serving = run_serving_probes(model_dir, engine, config.serving, targets,
                                         Path(scratch) / "serving", config.seed)
    settings = dict(measured.pop("settings"),
                    serving=None if config.serving is None else config.serving.to_dict())
    return {"format": FORMAT, "format_version": FORMAT_VERSION,
            "hardware": hardware_info(torch.device(engine.device)), **measured,
            "versions": versions(), "settings": settings, "serving": serving, "fit": None}
