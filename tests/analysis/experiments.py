"""A synthetic profile for experiment tests: step times from a known linear law, so tests run
the simulator with a real fitted cost model without profiling the engine first."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from manylora.engine.make_tiny import TinyModelSpec
from manylora.engine.model_config import parse_model_config
from manylora.simulator.fitted_cost_model import fit_profile
from manylora.simulator.profile_file import FORMAT, FORMAT_VERSION, profile_from_dict, write_profile

# seconds = 2 ms + 0.1 ms per token + 2 us per decode context token + 0.2 ms per adapter
BASE_S, TOKEN_S, CONTEXT_S, ADAPTER_S = 2e-3, 1e-4, 2e-6, 2e-4


def step_seconds(prefill: int, decode: int, context: int, adapters: int) -> float:
    return BASE_S + TOKEN_S * (prefill + decode) + CONTEXT_S * context + ADAPTER_S * adapters


def write_synthetic_profile(path: Path, threads: int = 1) -> Path:
    shape = parse_model_config(TinyModelSpec().config_json(), name="tiny").shape(dtype_bytes=4)
    steps = []
    for prefill in (0, 8, 64, 256):
        for decode in (0, 1, 8, 32, 64):
            for adapters in (1, 4, 16):
                if prefill + decode == 0:
                    continue
                context = decode * 48
                steps.append({"prefill_tokens": prefill, "prefill_requests": 1 if prefill else 0,
                              "prefill_sq_tokens": prefill * prefill, "decode_requests": decode,
                              "decode_context_tokens": context, "distinct_adapters": adapters,
                              "sum_ranks": 16 * adapters,
                              "lora_token_ranks": 16 * (prefill + decode),
                              "duration_s": [step_seconds(prefill, decode, context, adapters)] * 2})
    loads = [{"rank": r, "targets": ["q", "k", "v", "o"], "bytes": 8192 * r,
              "host_to_pool_s": [1e-4 + 8192 * r / 5e9] * 2,
              "disk_to_host_s": [1e-3 + 8192 * r / 5e8] * 2} for r in (8, 16, 32, 64)]
    data = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "hardware": {"device": "cpu", "torch_threads": threads},
            "model": dataclasses.asdict(shape),
            "pool": {"tokens_per_page": 1, "num_pages": 65536}, "versions": {}, "settings": {},
            "steps": steps, "adapter_loads": loads, "fit": None}
    profile = profile_from_dict(data, str(path))
    write_profile(profile.with_fit(fit_profile(profile)), path)
    return path
