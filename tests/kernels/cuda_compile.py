"""Compile every Triton kernel ahead of time for NVIDIA GPUs; run as a script, prints JSON.

Run in a fresh process without TRITON_INTERPRET (under the interpreter ``triton.jit`` gives
interpreted functions that cannot be compiled). Each kernel is compiled as a launch would
specialize it (pointers 16-byte aligned, ints divisible by 16) with the constexprs its wrapper
picks for Llama-7B shapes; the output lists shared memory and 16-byte global loads per case.
"""
from __future__ import annotations

import json
import os
import sys

assert os.environ.get("TRITON_INTERPRET") != "1", "run without the Triton interpreter"

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from manylora.kernels import (kv_store, lora_expand_decode, lora_expand_prefill,  # noqa: E402
                              lora_shrink_decode, lora_shrink_prefill, paged_decode_attention,
                              prefill_attention)

INDEX_PTRS = {"token_slots_ptr", "pages_ptr", "ranks_ptr", "a_offsets_ptr", "b_offsets_ptr",
              "seg_starts_ptr", "seg_slots_ptr", "page_table_ptr", "context_lens_ptr",
              "cu_seqlens_ptr", "slots_ptr"}
F32_PTRS = {"h_ptr", "scales_ptr", "part_acc_ptr", "part_ml_ptr"}
PE = 2 * 4096  # Llama-7B page, one token per page
KV = dict(TOKENS_PER_PAGE=16, PAGE_ELEMS=2 * 16 * 8 * 128, KV_WIDTH=8 * 128, NUM_HEADS=32,
          HEAD_DIM=128, GROUP=4, BLOCK_G=16, BLOCK_N=64, BLOCK_D=128)
KERNELS = {
    "shrink_decode": (lora_shrink_decode._lora_shrink_decode_kernel,
                      dict(PAGE_ELEMS=PE, BLOCK_R=16, BLOCK_K=256, VEC=16)),
    "expand_decode": (lora_expand_decode._lora_expand_decode_kernel,
                      dict(PAGE_ELEMS=PE, BLOCK_R=16, BLOCK_N=256, VEC=16)),
    "shrink_prefill": (lora_shrink_prefill._lora_shrink_prefill_kernel,
                       dict(PAGE_ELEMS=PE, BLOCK_M=64, BLOCK_R=64, BLOCK_K=64, VEC=16)),
    "expand_prefill": (lora_expand_prefill._lora_expand_prefill_kernel,
                       dict(PAGE_ELEMS=PE, BLOCK_M=64, BLOCK_R=32, BLOCK_N=64, VEC=16)),
    "paged_decode_split": (paged_decode_attention._paged_decode_attention_kernel,
                           dict(KV, DIRECT=False)),
    "paged_decode_direct": (paged_decode_attention._paged_decode_attention_kernel,
                            dict(KV, DIRECT=True)),
    "paged_decode_reduce": (paged_decode_attention._paged_decode_reduce_kernel,
                            dict(NUM_HEADS=32, HEAD_DIM=128, BLOCK_S=16, BLOCK_D=128)),
    "prefill_attention": (prefill_attention._prefill_attention_kernel,
                          dict(GROUP=4, HEAD_DIM=128, BLOCK_M=64, BLOCK_N=64, BLOCK_D=128)),
    "kv_store": (kv_store._kv_store_kernel,
                 dict(TOKENS_PER_PAGE=16, PAGE_ELEMS=2 * 16 * 8 * 128, KV_HEADS=8, HEAD_DIM=128,
                      BLOCK_H=8, BLOCK_D=128)),
}
# what the wrappers change for fp32
FP32_OVERRIDES = {"prefill_attention": dict(BLOCK_M=32, BLOCK_N=32)}
VARIANTS = ((90, "fp16"), (80, "fp32"))


def compile_kernel(fn, constexprs: dict, dtype: str, arch: int):
    constexprs = dict(constexprs)
    if "PRECISION" in fn.arg_names:
        constexprs["PRECISION"] = "ieee" if dtype == "fp32" else "tf32"
    signature, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in constexprs:
            signature[name] = "constexpr"
        elif name == "scale":
            signature[name] = "fp32"
        elif name.endswith("_ptr"):
            signature[name] = ("*i32" if name in INDEX_PTRS else "*fp32" if name in F32_PTRS
                               else f"*{dtype}")
            attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            signature[name] = "i32"
            if name != "num_splits":
                attrs[(i,)] = [["tt.divisibility", 16]]
    source = ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    return triton.compile(source, target=GPUTarget("cuda", arch, 32))


def vector_loads(compiled) -> int:
    return sum(1 for line in compiled.asm["ptx"].splitlines()
               if "ld.global" in line and ".v4" in line)


def main() -> None:
    report = {}
    for name, (fn, constexprs) in KERNELS.items():
        for arch, dtype in VARIANTS:
            overrides = FP32_OVERRIDES.get(name, {}) if dtype == "fp32" else {}
            compiled = compile_kernel(fn, dict(constexprs, **overrides), dtype, arch)
            report[f"{name}/sm{arch}-{dtype}"] = {"shared": compiled.metadata.shared,
                                                  "v4_loads": vector_loads(compiled)}
        if "VEC" in constexprs:
            compiled = compile_kernel(fn, dict(constexprs, VEC=1), "fp16", 90)
            report[f"{name}/sm90-fp16-unaligned"] = {"shared": compiled.metadata.shared,
                                                     "v4_loads": vector_loads(compiled)}
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
