"""Trace replay on the real engine: requests arrive at their trace times, the run is recorded.

Each request of a trace folder is submitted when the (scaled) wall clock reaches its
``arrival_s``, with synthetic prompt token ids of its ``prompt_len`` drawn from a seeded
Generator, greedy decoding and exactly ``output_len`` tokens (EOS ignored, as traces need).
Adapter folders come from the trace's ``path`` column or ``ADAPTERS_DIR/<adapter_id>``;
adapters with neither can be materialised as random PEFT adapters of the trace's rank, alpha
and targets (written to a temporary folder beside the output), else their requests are
rejected with the reason. The run folder (requests.csv, steps.csv, meta.json) is written
through ``run_folder`` with times on the trace clock: wall seconds / ``time_scale``.
"""
from __future__ import annotations

import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from manylora.engine.adapter_store import representative_targets
from manylora.engine.anchor import AnchorRunner
from manylora.engine.anchor_config import AnchorConfig, anchor_record
from manylora.engine.engine import Engine, StepRecord
from manylora.engine.engine_config import EngineConfig
from manylora.engine.make_tiny import adapter_config_json, write_adapter
from manylora.engine.model_config import ModelConfig, load_model_config
from manylora.engine.run_folder import StepLog, versions, write_run_folder
from manylora.engine.sampling import SamplingParams
from manylora.traces import Trace, read_trace

T = TypeVar("T")

_IDLE_POLL_S = 0.05  # longest sleep while waiting for the next arrival


@dataclass(frozen=True)
class ReplayConfig:
    """How a trace is replayed (the engine's own settings are in EngineConfig)."""

    time_scale: float = 1.0          # trace seconds per wall second (10 = ten times faster)
    materialize_missing: bool = False
    seed: int = 0                    # prompt token ids and materialised adapters
    progress: bool = False           # tqdm bar on stderr
    anchor: AnchorConfig | None = None  # speed anchors, clock paused (engine/anchor_config.py)

    def __post_init__(self) -> None:
        if not self.time_scale > 0:
            raise ValueError(f"ReplayConfig.time_scale must be > 0, got {self.time_scale}")
        if self.seed < 0:
            raise ValueError(f"ReplayConfig.seed must be >= 0, got {self.seed}")


def _path_column(trace: Trace) -> dict[int, str]:
    if "path" not in trace.adapters.columns:
        return {}
    out = {}
    for aid, path in zip(trace.adapters["adapter_id"], trace.adapters["path"]):
        if isinstance(path, str) and path.strip():
            out[int(aid)] = path.strip()
    return out


def locate_adapters(trace: Trace, trace_dir: Path, adapters_dir: Path | None
                    ) -> tuple[dict[int, Path], list[int]]:
    """Folders of the adapters the trace's requests use, and those with no folder."""
    used = sorted({int(a) for a in np.unique(trace.column("adapter_id")) if a >= 0})
    paths = _path_column(trace)
    found, missing = {}, []
    for aid in used:
        if aid in paths:
            found[aid] = trace_dir / paths[aid]  # an absolute path replaces trace_dir
        elif adapters_dir is not None and (adapters_dir / str(aid)).is_dir():
            found[aid] = adapters_dir / str(aid)
        else:
            missing.append(aid)
    return found, missing


def materialize_adapters(trace: Trace, adapter_ids: list[int], config: ModelConfig,
                         folder: Path, seed: int) -> dict[int, Path]:
    """Random PEFT adapter folders ``folder/<id>`` with the trace catalog's rank, alpha and
    targets; the same seed gives the same weights."""
    table = trace.adapters.set_index("adapter_id")
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    out = {}
    for aid in adapter_ids:
        row = table.loc[aid]
        cfg = adapter_config_json(int(row["rank"]), float(row["alpha"]),
                                  str(row["targets"]).split(";"), base_model=config.name)
        out[aid] = folder / str(aid)
        write_adapter(out[aid], config, cfg, rng)
    return out


def _meta(trace: Trace, engine: Engine, engine_config: EngineConfig,
          replay: ReplayConfig) -> dict[str, Any]:
    scheduler = engine.scheduler
    found = versions()
    found["torch"] = torch.__version__
    control = engine_config.control.to_dict()
    return {
        "source": "engine",
        "trace": trace.meta,
        "model": {**asdict(engine.layout.shape), "checkpoint": engine.model_dir.resolve().name,
                  "arch": engine.model_config.arch},
        "pool": {"kind": scheduler.pool.kind, "num_pages": scheduler.pool.num_pages,
                 "tokens_per_page": engine.layout.tokens_per_page,
                 "page_bytes": engine.layout.page_bytes,
                 "free_pages_at_end": scheduler.pool.free_pages},
        "scheduler": control["scheduler"],
        "policies": {"queue": control["queue"], "memory": control["memory"]},
        "engine": {"device": engine.device.type, "dtype": engine_config.dtype,
                   "lora_backend": engine.model.lora_backend.name,
                   "attention_backend": engine.model.attention_backend.name,
                   "time_scale": replay.time_scale},
        "seed": replay.seed,
        "versions": found,
    }


def _log_step(log: StepLog, record: StepRecord, aborted: int, end_s: float) -> None:
    log.add(0, record.plan, record.start_s, end_s - record.start_s, aborted)


def anchor_runner(engine: Engine, config: AnchorConfig) -> AnchorRunner:
    """The anchor's batches beside ``engine``'s model, on the targets of its adapters."""
    return AnchorRunner(engine.model, engine.layout, engine.dtype, config,
                        representative_targets(engine.store))


def drive(engine: Engine, trace: Trace, replay: ReplayConfig,
          log: StepLog) -> list[tuple[float, list[float]]]:
    """Submit requests at their arrival times and step the engine until all are done; the
    speed anchor's passes as (clock time, each anchor step's seconds), none without
    ``replay.anchor``.

    Each iteration reads the clock once: requests due by then are submitted and the step
    starts then. A step's row is written when the next iteration begins, with the duration up
    to that moment (the loop's own bookkeeping included), so back-to-back steps tile the
    replay's time the way a simulator's steps do; a step followed by an idle wait ends when
    the wait begins. With an anchor, an iteration that finds ``every_s`` passed since the last
    pass first times one (before the clock reads, after the last step ended) and the clock
    leaves the pass out: the trace and the engine's steps run as if it never happened.
    """
    arrival = trace.column("arrival_s")
    ids, adapters = trace.column("request_id"), trace.column("adapter_id")
    prompt_len, output_len = trace.column("prompt_len"), trace.column("output_len")
    rng = np.random.default_rng(np.random.SeedSequence(replay.seed).spawn(2)[0])
    vocab = engine.model_config.vocab_size
    n, i, aborts = len(arrival), 0, 0
    pending: tuple[StepRecord, int] | None = None  # the last step run and its drops' count
    engine.stage_host_tier()    # before the clock starts, like the simulator's host tier
    engine.warmup(replay.seed)  # before the clock starts: one-time costs are not a step's
    anchor = anchor_runner(engine, replay.anchor) if replay.anchor is not None else None
    passes: list[tuple[float, list[float]]] = []
    if anchor is not None:
        anchor.timed_pass()  # one-time costs of the anchor's own batches
    t0, paused = time.perf_counter(), 0.0
    engine.clock = lambda: (time.perf_counter() - t0 - paused) * replay.time_scale
    next_pass = 0.0
    bar = tqdm(total=n, unit="req", desc="replay", disable=not replay.progress)
    while i < n or engine.busy:
        if anchor is not None and engine.clock() >= next_pass:
            started, at = time.perf_counter(), engine.clock()
            passes.append((at, anchor.timed_pass()))
            paused += time.perf_counter() - started
            next_pass = at + anchor.config.every_s * replay.time_scale
        now = engine.clock()
        if pending is not None:
            _log_step(log, *pending, end_s=now)
            pending = None
        while i < n and arrival[i] <= now:
            engine.add_request(rng.integers(0, vocab, int(prompt_len[i])), int(adapters[i]),
                               SamplingParams(max_tokens=int(output_len[i]), ignore_eos=True),
                               request_id=int(ids[i]), arrival_s=float(arrival[i]))
            i += 1
        if not engine.busy:
            if i < n:
                time.sleep(min(_IDLE_POLL_S, (arrival[i] - now) / replay.time_scale))
            bar.update(len(engine.requests) - engine.scheduler.num_outstanding - bar.n)
            continue
        record = engine.step(now)
        aborts += len(record.plan.aborted)
        if record.plan.runs:
            pending = (record, aborts)
            aborts = 0
        elif i >= n:
            engine.check_progress(record)
        bar.update(len(engine.requests) - engine.scheduler.num_outstanding - bar.n)
    if pending is not None:
        _log_step(log, *pending, end_s=engine.clock())
    if anchor is not None:
        passes.append((engine.clock(), anchor.timed_pass()))
    bar.close()
    engine.scheduler.unload_adapters()
    engine.scheduler.pool.check()
    return passes


def replay_trace(trace_dir: str | Path, model_dir: str | Path, adapters_dir: str | Path | None,
                 out_dir: str | Path, engine_config: EngineConfig = EngineConfig(),
                 replay: ReplayConfig = ReplayConfig()) -> Path:
    """Replay a trace folder on the engine and write the run folder; returns its path."""
    trace_dir, out_dir = Path(trace_dir), Path(out_dir)
    trace = read_trace(trace_dir)
    adapters_root = Path(adapters_dir) if adapters_dir is not None else None
    found, missing = locate_adapters(trace, trace_dir, adapters_root)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".manylora-adapters-") as tmp:
        if missing and replay.materialize_missing:
            found.update(materialize_adapters(trace, missing, load_model_config(model_dir),
                                              Path(tmp), replay.seed))
            missing = []
        engine = Engine(model_dir, found, engine_config)
        for aid in missing:
            engine.store.mark_broken(aid, f"adapter {aid} has no folder: no path in "
                                          f"adapters.csv and no {adapters_root or 'ADAPTERS_DIR'}"
                                          f"/{aid} (see --materialize-missing-adapters)")
        log = StepLog()
        passes = drive(engine, trace, replay, log)
    meta = _meta(trace, engine, engine_config, replay)
    if replay.anchor is not None:
        meta["anchor"] = anchor_record(replay.anchor, passes)
    return write_run_folder(out_dir, engine.requests.values(), log, meta)


def in_fresh_process(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a new Python process of its own (spawned: nothing inherited but the
    environment), so that a measurement is not coloured by what this process did before. On a
    2-core CPU a second replay of one trace in one process ran its steps ~10% slower than the
    first (5.4 -> 6.0 ms at batch 6, three times over), while replays in fresh processes
    agreed within ~4% (5.26-5.47 ms)."""
    with ProcessPoolExecutor(max_workers=1,
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def replay_trace_fresh(trace_dir: str | Path, model_dir: str | Path,
                       adapters_dir: str | Path | None, out_dir: str | Path,
                       engine_config: EngineConfig = EngineConfig(),
                       replay: ReplayConfig = ReplayConfig()) -> Path:
    """``replay_trace`` in a fresh process (``in_fresh_process``): what validate and demo
    compare with the simulator."""
    return in_fresh_process(replay_trace, trace_dir, model_dir, adapters_dir, out_dir,
                            engine_config, replay)
