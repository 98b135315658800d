"""GPU presets for the roofline cost model: peak rates and the fractions of them software reaches.

A preset is what the roofline model needs to know about a device it has never seen: dense bf16
tensor-core FLOP/s, HBM bandwidth, the host-to-device link, and how much of each a serving
engine actually gets. Peak figures are the vendors' datasheet numbers; the efficiency factors
are typical achieved fractions reported by public microbenchmarks and papers (cited per field
below). They are estimates, not measurements of this project's engine: profile the engine on
the device (`manylora profile`) and use the fitted model when you can.

Sources:

- [A100] NVIDIA A100 Tensor Core GPU datasheet (80GB SXM4): 80 GB, 312 TFLOP/s bf16 dense,
  2,039 GB/s HBM2e, PCIe Gen4 x16 (32 GB/s per direction nominal).
- [H100] NVIDIA H100 Tensor Core GPU datasheet (SXM5): 80 GB, 989 TFLOP/s bf16 dense (1,979 with
  sparsity), 3.35 TB/s HBM3, PCIe Gen5 x16 (64 GB/s per direction nominal).
- [H200] NVIDIA H200 Tensor Core GPU datasheet (SXM): 989 TFLOP/s bf16 dense, 4.8 TB/s HBM3e,
  141 GB, PCIe Gen5 x16.
- [GEMM] cuBLAS bf16 GEMMs of LLM-serving sizes (K = 4096..14336, M = 1..8192) reach about
  70% of dense peak on A100 and 60-70% on H100 (NVIDIA "Matrix Multiplication Background"
  performance guide; public cuBLAS sweeps).
- [FA2] FlashAttention-2 (Dao, 2023): forward pass up to 73% of peak on A100 (~230 TFLOP/s);
  FlashAttention-3 (Shah et al., 2024) measures FlashAttention-2 at ~35-40% of peak on H100.
- [HBM] BabelStream / STREAM-style copy kernels reach 85-90% of datasheet HBM bandwidth on
  A100, H100 and H200.
- [PCIe] Pinned-memory cudaMemcpy reaches ~80% of the nominal PCIe rate (about 25 GB/s on
  Gen4, 50 GB/s on Gen5; NVIDIA nvbandwidth), plus ~10 us per copy call.
- [overhead] Without CUDA graphs each decoder layer launches ~8-10 kernels (norms, QKV/O/MLP
  GEMMs, LoRA shrink/expand, attention) at ~5 us each; scheduling, sampling and the per-step
  host-to-device metadata copy add about a millisecond per step in a Python engine. The NVIDIA
  NeMo Llama-2-7B inference table (A100 80GB, batch 1, 128 in / 20 out: 234 ms per request)
  implies ~11-12 ms per decode step, against 6.6 ms of pure weight streaming.
- [disk] A node-local NVMe SSD reads 2-7 GB/s sequentially; we assume 3 GB/s effective for
  safetensors reads into host memory and 1 ms per adapter for opening and parsing the file.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Mapping

from manylora.simulator.cost_base import CostModelError


@dataclass(frozen=True)
class GpuSpec:
    """One device: peaks in SI units (FLOP/s, bytes/s), efficiencies as fractions of them."""

    name: str
    memory_bytes: float          # device memory (datasheet)
    peak_flops: float            # dense bf16 tensor-core FLOP/s
    hbm_bytes_per_s: float       # device memory bandwidth
    h2d_bytes_per_s: float       # host -> device link, nominal per direction
    disk_bytes_per_s: float      # disk -> host memory (node NVMe)
    gemm_efficiency: float       # of peak_flops, for the linear layers and LoRA
    attention_efficiency: float  # of peak_flops, for prefill attention
    memory_efficiency: float     # of hbm_bytes_per_s, for weight, KV and adapter reads
    h2d_efficiency: float        # of h2d_bytes_per_s, pinned copies
    h2d_latency_s: float         # per adapter copy into the pool
    disk_latency_s: float        # per adapter read from disk
    step_overhead_s: float       # per step: scheduling, sampling, metadata copy
    layer_overhead_s: float      # per decoder layer per step: kernel launches

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("GpuSpec.name must not be empty")
        for f in fields(self):
            if f.name == "name":
                continue
            value = getattr(self, f.name)
            if f.name.endswith("_efficiency"):
                if not 0.0 < value <= 1.0:
                    raise ValueError(f"GpuSpec.{f.name} must be in (0, 1], got {value}")
            elif f.name.endswith("_s"):
                if not value >= 0.0:
                    raise ValueError(f"GpuSpec.{f.name} must be >= 0, got {value}")
            elif not value > 0.0:
                raise ValueError(f"GpuSpec.{f.name} must be > 0, got {value}")

    def to_dict(self) -> dict[str, float | str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# Host-side costs depend on the engine and the CPU, not the GPU: shared by every preset.
_NVME = dict(disk_bytes_per_s=3e9, disk_latency_s=1e-3)                 # [disk]
_HOST_OVERHEADS = dict(step_overhead_s=1e-3, layer_overhead_s=40e-6)  # [overhead]

A100_80GB = GpuSpec(
    name="a100-80gb", memory_bytes=80e9, peak_flops=312e12, hbm_bytes_per_s=2.039e12,  # [A100]
    h2d_bytes_per_s=32e9, h2d_efficiency=0.8, h2d_latency_s=10e-6,  # [PCIe]
    gemm_efficiency=0.7, attention_efficiency=0.6,                  # [GEMM] [FA2]
    memory_efficiency=0.85,                                         # [HBM]
    **_NVME, **_HOST_OVERHEADS)
H100_SXM = GpuSpec(
    name="h100-sxm", memory_bytes=80e9, peak_flops=989e12, hbm_bytes_per_s=3.35e12,    # [H100]
    h2d_bytes_per_s=64e9, h2d_efficiency=0.8, h2d_latency_s=10e-6,  # [PCIe]
    gemm_efficiency=0.65, attention_efficiency=0.4,                 # [GEMM] [FA2]
    memory_efficiency=0.85,                                         # [HBM]
    **_NVME, **_HOST_OVERHEADS)
H200 = GpuSpec(
    name="h200", memory_bytes=141e9, peak_flops=989e12, hbm_bytes_per_s=4.8e12,         # [H200]
    h2d_bytes_per_s=64e9, h2d_efficiency=0.8, h2d_latency_s=10e-6,  # [PCIe]
    gemm_efficiency=0.65, attention_efficiency=0.4,                 # [GEMM] [FA2]
    memory_efficiency=0.85,                                         # [HBM]
    **_NVME, **_HOST_OVERHEADS)

HARDWARE_PRESETS: Mapping[str, GpuSpec] = MappingProxyType({
    g.name: g for g in (A100_80GB, H100_SXM, H200)
})


class UnknownHardwareError(CostModelError):
    """A hardware name that is not a preset."""


def hardware_preset(name: str) -> GpuSpec:
    """The preset called ``name``; the error lists the known ones."""
    try:
        return HARDWARE_PRESETS[name.lower()]
    except KeyError:
        raise UnknownHardwareError(
            f"unknown hardware {name!r}; presets: {', '.join(HARDWARE_PRESETS)}") from None
