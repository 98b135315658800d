"""Every Triton kernel compiles for NVIDIA GPUs, checked here without one.

The interpreter runs the kernels' arithmetic but not the compiler. ``cuda_compile.py`` compiles
each kernel ahead of time (sm_90 fp16, sm_80 fp32) in a process without the interpreter; this
checks that all compile, fit the architecture's shared memory, and that the decode LoRA kernels
read pool tiles with 16-byte vector loads when pages and offsets are aligned and fall back to
narrower loads when they are not.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import triton

pytestmark = pytest.mark.skipif("nvidia" not in triton.backends.backends,
                                reason="Triton has no NVIDIA backend here")

SHARED_BYTES = {"sm80": 163 * 1024, "sm90": 227 * 1024}  # per block: A100, H100/H200
KERNELS = ["shrink_decode", "expand_decode", "shrink_prefill", "expand_prefill",
           "paged_decode_split", "paged_decode_direct", "paged_decode_reduce",
           "prefill_attention", "kv_store"]


@pytest.fixture(scope="module")
def report() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = Path(__file__).with_name("cuda_compile.py")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("variant", ["sm90-fp16", "sm80-fp32"])
@pytest.mark.parametrize("name", KERNELS)
def test_kernel_compiles_within_shared_memory(report, name, variant):
    entry = report[f"{name}/{variant}"]
    assert entry["shared"] <= SHARED_BYTES[variant.split("-")[0]]


@pytest.mark.parametrize("name", ["shrink_decode", "expand_decode"])
def test_decode_lora_reads_the_pool_with_vector_loads(report, name):
    assert report[f"{name}/sm90-fp16"]["v4_loads"] > 0
    assert report[f"{name}/sm90-fp16-unaligned"]["v4_loads"] == 0
