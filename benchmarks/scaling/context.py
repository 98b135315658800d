"""What one measured cell (a variant serving the trace for one number of adapters) gets and
gives back: ``CellSpec`` (JSON, from the parent process), ``CellContext`` (the loaded workload
and the memory budget) and ``Served`` (what the variant measured).

Time is seconds since the requests were submitted (they all arrive at t = 0), so a request's
finish time is its latency. The process's CPU time over the same span is kept too: on a shared
machine, other people's work stretches wall time but not this process's CPU time. Setup
(loading the model, registering and reading adapters, building merged copies) happens before
that and is reported apart.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from manylora.engine.hf_loader import load_checkpoint
from manylora.engine.model_config import ModelConfig, load_model_config
from manylora.traces import Trace

from scaling.presets import ScalingPreset, preset, with_limits
from scaling.workload import load_trace, prompts, weights_bytes

GPU_MEMORY_SHARE = 0.9  # of a GPU's memory, the most the budget may claim

# checkpoints read in this process, by (folder, dtype): cells run in one process (--in-process)
# and the merged baseline's copies read the model from disk once
_CHECKPOINTS: dict[tuple[str, str], tuple[ModelConfig, dict[str, torch.Tensor]]] = {}


@dataclass(frozen=True)
class CellSpec:
    """One cell to run, as the parent hands it to a child process."""

    variant: str
    num_adapters: int
    repeat: int
    preset: str
    device: str
    threads: int
    model_dir: str
    adapters_dir: str
    trace_dir: str
    budget_s: float          # serving stops after this (partial throughput)
    peft_load_limit_s: float
    profile: bool = False    # cProfile the variant's run; the result carries the top entries
    memory_multiple: float = 0.0  # device memory in copies of the weights; 0 = the preset's
    max_batch_size: int = 0  # running requests per engine step (and PEFT batch); 0 = preset's
    token_budget: int = 0    # prefill + decode tokens per engine step; 0 = the preset's

    def __post_init__(self) -> None:
        if self.num_adapters < 1:
            raise ValueError(f"CellSpec.num_adapters must be >= 1, got {self.num_adapters}")
        if self.threads < 0:
            raise ValueError(f"CellSpec.threads must be >= 0, got {self.threads}")
        if not self.budget_s > 0:
            raise ValueError(f"CellSpec.budget_s must be > 0, got {self.budget_s}")
        if self.memory_multiple < 0:
            raise ValueError(f"CellSpec.memory_multiple must be >= 0, got "
                             f"{self.memory_multiple}")
        for name in ("max_batch_size", "token_budget"):
            if getattr(self, name) < 0:
                raise ValueError(f"CellSpec.{name} must be >= 0, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def key(self) -> str:
        return f"{self.variant}-n{self.num_adapters}-r{self.repeat}"


@dataclass
class Served:
    """What a variant measured. ``skipped`` set: it did not run, and says why."""

    finish_s: dict[int, float] = field(default_factory=dict)   # request id -> latency
    tokens: dict[int, list[int]] = field(default_factory=dict)  # request id -> output ids
    elapsed_s: float = 0.0     # serving time: until the last request finished, or the stop
    cpu_s: float = 0.0         # CPU time this process spent over elapsed_s (all threads)
    setup_s: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)
    skipped: str = ""


class CellContext:
    """The workload of one cell, loaded, and the device memory the variant may use."""

    def __init__(self, spec: CellSpec) -> None:
        self.spec = spec
        self.preset: ScalingPreset = with_limits(preset(spec.preset), spec.max_batch_size,
                                                 spec.token_budget)
        self.device = torch.device(spec.device)
        self.dtype: torch.dtype = getattr(torch, self.preset.dtype)
        self.model_dir = Path(spec.model_dir)
        self.model_config: ModelConfig = load_model_config(self.model_dir)
        self.trace: Trace = load_trace(Path(spec.trace_dir))
        self.prompts = prompts(self.preset, self.trace)
        self.request_ids = [int(r) for r in self.trace.column("request_id")]
        self.adapter_ids = [int(a) for a in self.trace.column("adapter_id")]
        self.output_lens = [int(n) for n in self.trace.column("output_len")]
        self.used_adapters = sorted({a for a in self.adapter_ids if a >= 0})
        root = Path(spec.adapters_dir)
        self.adapter_folders = {i: root / str(i) for i in range(spec.num_adapters)}
        self.weights_bytes = weights_bytes(self.preset)
        self.budget_bytes = self._budget()
        self._start = 0.0
        self._cpu_start = 0.0

    def checkpoint(self) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
        """The model's config and weights in host memory, in the preset's dtype, read from
        disk once per process; engines are built from it (``Engine.from_weights``): on the CPU
        they share its tensors, on a GPU each copies them to the device."""
        key = (str(self.model_dir), self.preset.dtype)
        if key not in _CHECKPOINTS:
            _CHECKPOINTS[key] = load_checkpoint(self.model_dir, self.dtype, torch.device("cpu"))
        return _CHECKPOINTS[key]

    def _budget(self) -> int:
        budget = (self.spec.memory_multiple or self.preset.memory_multiple) * self.weights_bytes
        if self.device.type == "cuda":
            total = torch.cuda.get_device_properties(self.device).total_memory
            budget = min(budget, GPU_MEMORY_SHARE * total)
        return int(budget)

    @property
    def pool_bytes(self) -> int:
        """manylora's pool: the budget less one copy of the weights and the reserve."""
        return int(self.budget_bytes - (1 + self.preset.reserve_multiple) * self.weights_bytes)

    def merged_copies(self) -> tuple[int, int]:
        """(how many merged copies fit, pool bytes each) for the merged baseline."""
        copies = max(1, int(self.preset.merged_weight_share * self.budget_bytes
                            // self.weights_bytes))
        left = self.budget_bytes - (copies + self.preset.reserve_multiple) * self.weights_bytes
        return copies, int(left // copies)

    # ------------------------------------------------------------------ the serving clock
    def start_clock(self) -> None:
        """t = 0: every request arrives now."""
        self.synchronize()
        self._start = time.perf_counter()
        self._cpu_start = time.process_time()

    def clock(self) -> float:
        return time.perf_counter() - self._start

    def stop(self, served: Served) -> None:
        """Serving is over: record its wall and CPU time."""
        self.synchronize()
        served.elapsed_s = self.clock()
        served.cpu_s = time.process_time() - self._cpu_start

    def over_budget(self) -> bool:
        return self.clock() > self.spec.budget_s

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
