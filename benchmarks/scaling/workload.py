"""The one workload every variant serves: a random checkpoint, adapter folders, traces, prompts.

Everything is written once into a work folder and reused while its stamp (the preset's model,
dtype, ranks and seed) matches. The checkpoint is a random Llama-family model in the real HF
format (``make_tiny.write_model``, stored in the preset's dtype). Adapters are real PEFT
folders ``adapters/<id>`` with ids 0..N-1, adapter i of rank ``ranks[i % len(ranks)]`` and
lora_alpha 2 x rank on the preset's targets (the trace catalog's ``cycle`` rule, so the
folders agree with every trace's adapters.csv). To keep 2,000 Llama-7B-sized adapters off the
disk, each folder's ``adapter_model.safetensors`` links to one of ``distinct_weights`` random
weight files of its rank; every variant reads and copies each adapter on its own, so sharing
files changes no variant's work. A trace holds ``num_requests`` requests drawn with the trace
generator (S-LoRA popularity with alpha 1, i.e. uniform over the adapters, and uniform
lengths), all arriving at t = 0: throughput is measured at saturation. Prompt token ids come
from one seeded Generator in request order, so every variant gets the same prompts.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from manylora.engine.make_tiny import adapter_config_json, write_adapter, write_model
from manylora.engine.model_config import ModelConfig, hf_weight_shapes, parse_model_config
from manylora.engine.peft_loader import CONFIG_FILE, WEIGHTS_FILE
from manylora.traces import (CatalogConfig, CycleRanks, PerRankAlpha, PoissonArrivals,
                             SLoRAPopularity, Trace, TraceConfig, UniformLengths,
                             generate_trace, read_trace, write_trace)

from scaling.presets import ScalingPreset

STAMP = "benchmark-stamp.json"
GENERATOR = "benchmarks/engine_scaling.py"
ALPHA_PER_RANK = 2.0


def model_config(preset: ScalingPreset) -> ModelConfig:
    return parse_model_config(_config_json(preset), name=f"random-{preset.name}")


def weights_bytes(preset: ScalingPreset) -> int:
    """Bytes of one copy of the model weights in the preset's dtype."""
    itemsize = getattr(torch, preset.dtype).itemsize
    return sum(int(np.prod(s)) for s in hf_weight_shapes(model_config(preset)).values()) \
        * itemsize


def _config_json(preset: ScalingPreset) -> dict:
    return {**preset.model.config_json(), "torch_dtype": preset.dtype}


def _stamp(preset: ScalingPreset, part: str) -> dict:
    stamp = {"part": part, "model": asdict(preset.model), "dtype": preset.dtype,
             "seed": preset.seed}
    if part == "adapters":
        stamp.update(ranks=list(preset.ranks), targets=list(preset.targets),
                     distinct_weights=preset.distinct_weights)
    return stamp


def _fresh(folder: Path, stamp: dict, count: int = 0) -> bool:
    """True when ``folder`` already holds what ``stamp`` describes (and >= count adapters)."""
    path = folder / STAMP
    if not path.is_file():
        return False
    held = json.loads(path.read_text())
    return held.pop("count", 0) >= count and held == stamp


def _seeds(preset: ScalingPreset) -> tuple[np.random.SeedSequence, ...]:
    # fixed order: model weights, adapter weights, prompts; the extra word keeps these apart
    # from the trace generator's streams, which spawn from the bare seed
    return tuple(np.random.SeedSequence([preset.seed, 0x5CA1E]).spawn(3))


def write_checkpoint(folder: Path, preset: ScalingPreset) -> Path:
    """config.json + safetensors of a random model in the preset's dtype, drawn and written a
    shard at a time (``make_tiny.write_model``: a Llama-7B shape never sits in memory whole)."""
    stamp = _stamp(preset, "model")
    if _fresh(folder, stamp):
        return folder
    (folder / STAMP).unlink(missing_ok=True)  # written back once the checkpoint is complete
    write_model(folder, replace(preset.model, dtype=preset.dtype), seed=_seeds(preset)[0])
    (folder / STAMP).write_text(json.dumps(stamp))
    return folder


def adapter_rank(preset: ScalingPreset, adapter_id: int) -> int:
    return preset.ranks[adapter_id % len(preset.ranks)]


def write_adapters(folder: Path, preset: ScalingPreset, count: int) -> Path:
    """PEFT folders ``folder/<id>`` for ids 0..count-1."""
    stamp = _stamp(preset, "adapters")
    if _fresh(folder, stamp, count):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STAMP).unlink(missing_ok=True)  # written back once the set is complete
    config = model_config(preset)
    rng = np.random.default_rng(_seeds(preset)[1])
    for rank in preset.ranks:
        for k in range(preset.distinct_weights):
            write_adapter(folder / "_weights" / f"r{rank}-{k}", config,
                          adapter_config_json(rank, ALPHA_PER_RANK * rank, preset.targets), rng)
    for adapter_id in range(count):
        rank = adapter_rank(preset, adapter_id)
        k = (adapter_id // len(preset.ranks)) % preset.distinct_weights
        out = folder / str(adapter_id)
        out.mkdir(exist_ok=True)
        cfg = adapter_config_json(rank, ALPHA_PER_RANK * rank, preset.targets,
                                  base_model=config.name)
        (out / CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n")
        link = out / WEIGHTS_FILE
        link.unlink(missing_ok=True)
        os.symlink(Path("..") / "_weights" / f"r{rank}-{k}" / WEIGHTS_FILE, link)
    (folder / STAMP).write_text(json.dumps({**stamp, "count": count}))
    return folder


def make_trace(preset: ScalingPreset, num_adapters: int, num_requests: int) -> Trace:
    """``num_requests`` requests over ``num_adapters`` adapters, all arriving at t = 0."""
    config = TraceConfig(
        num_adapters=num_adapters, arrivals=PoissonArrivals(rate=1.0),
        popularity=SLoRAPopularity(alpha=1.0),
        lengths=UniformLengths(preset.input_range, preset.output_range),
        catalog=CatalogConfig(ranks=CycleRanks(preset.ranks),
                              alpha=PerRankAlpha(ALPHA_PER_RANK), targets=preset.targets),
        duration_s=None, num_requests=num_requests, seed=preset.seed)
    drawn = generate_trace(config)
    requests = drawn.requests.assign(arrival_s=0.0)
    meta = {"generator": GENERATOR, "arrivals": "all at t=0", "drawn_with": drawn.meta,
            "seed": preset.seed}
    return Trace(requests, drawn.adapters, meta)


def write_traces(folder: Path, preset: ScalingPreset, counts: list[int],
                 num_requests: int) -> dict[int, Path]:
    """One trace folder per number of adapters: ``folder/n<count>``."""
    out = {}
    for count in counts:
        out[count] = write_trace(make_trace(preset, count, num_requests), folder / f"n{count}")
    return out


def load_trace(folder: Path) -> Trace:
    return read_trace(folder)


def prompts(preset: ScalingPreset, trace: Trace) -> list[np.ndarray]:
    """Prompt token ids per request, in request order: [prompt_len] int64 each."""
    rng = np.random.default_rng(_seeds(preset)[2])
    vocab = preset.model.vocab
    return [rng.integers(0, vocab, int(n), dtype=np.int64) for n in trace.column("prompt_len")]
