"""Where engine_scaling's throughput goes, one decode step at a time: manylora's step with no,
one or many distinct adapters in the batch, against an HF + PEFT decode step, by batch size.

    python benchmarks/engine_step_times.py [--model-shape small] [--repeats 20]

Every case is one decode step over a fixed context (``--context`` tokens per request) on the
engine_scaling preset's model and adapter ranks: for manylora the runner builds the step's
metadata, runs the model over the pool and the sampler picks the tokens (what ``Engine.step``
times, less the scheduler); for HF + PEFT, ``model(...)`` on one new token per row over a KV
cache of the same length, with one adapter active (what each step of the PEFT baseline's
``generate`` costs); the padded-LoRA ablation at the largest batch. Cases are interleaved in a
fresh random order on each repeat, so a busy spell of a shared machine spreads over all of
them; the table quotes medians. Two ratios decide engine_scaling's targets: manylora's step
with a batch of many distinct adapters against one with a single adapter (throughput at 2,000
adapters against 1), and the cost per token of a batch of 32 against a batch of one (how much
grouping requests by adapter, which leaves PEFT batches of one or two, can lose).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

# benchmarks/ goes last on sys.path, where Python put it first: scaling/ is imported from beside
# this file, but benchmarks/kernels.py must not shadow Hugging Face's `kernels`, which
# transformers 5.x imports
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _HERE] + [str(_HERE)]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from peft import PeftModel  # noqa: E402
from transformers import AutoModelForCausalLM, DynamicCache  # noqa: E402

from manylora.engine.hf_loader import load_checkpoint  # noqa: E402
from manylora.engine.model import LlamaModel  # noqa: E402
from manylora.engine.model_shape import PoolLayout  # noqa: E402
from manylora.engine.pool_tensors import PoolTensors  # noqa: E402
from manylora.engine.runner import Runner, fill_synthetic_adapters, synthetic_rows  # noqa: E402
from manylora.engine.sampling import Sampler, SamplingParams  # noqa: E402
from manylora.kernels.backends import attention_backend, lora_backend  # noqa: E402

from scaling.presets import preset  # noqa: E402
from scaling.workload import write_adapters, write_checkpoint  # noqa: E402

BATCHES = (1, 8, 32)


def manylora_cases(model_dir: Path, name: str, context: int, rng: np.random.Generator
                   ) -> dict[str, Callable[[], None]]:
    """Decode steps over the pool: batches of 1, 8 and 32 with no adapter, one, or one per
    request (ranks cycling through the preset's), and 32 adapters all of the smallest rank."""
    chosen = preset(name)
    dtype = getattr(torch, chosen.dtype)
    device = torch.device("cpu")
    config, weights = load_checkpoint(model_dir, dtype, device)
    layout = PoolLayout(config.shape(dtype_bytes=dtype.itemsize))
    pages = max(BATCHES) * layout.kv_pages(context) + max(BATCHES) * layout.adapter_pages(
        max(chosen.ranks), chosen.targets)
    pool = PoolTensors(layout, pages, dtype, device)
    sampler = Sampler(device)
    cases = {}
    shapes = [(batch, adapters, chosen.ranks) for batch in BATCHES
              for adapters in sorted({0, 1, batch})]
    shapes.append((max(BATCHES), max(BATCHES), (min(chosen.ranks),)))  # many, all smallest
    variants = (("torch", attention_backend("torch")), ("padded", attention_backend("torch")))
    for backend, attention in variants:
        runner = Runner(LlamaModel(config, weights, lora_backend(backend.split(",")[0]),
                                   attention), pool)
        for batch, adapters, ranks in shapes:
            if backend != "torch" and batch != max(BATCHES):
                continue  # keep the table short: the variants matter at the largest batch
            if backend == "padded" and (adapters < 2 or len(ranks) == 1):
                continue  # one adapter, or one rank: padded computes the same thing
            slots = [i % adapters if adapters else -1 for i in range(batch)]
            slot_ranks = [ranks[s % len(ranks)] for s in range(adapters)]
            rows = synthetic_rows(layout, pages, [], [context] * batch, slots, slot_ranks,
                                  chosen.targets, config.vocab_size, rng)
            fill_synthetic_adapters(pool, rows, rng)
            greedy = [SamplingParams()] * batch

            def step(runner=runner, rows=rows, greedy=greedy) -> None:
                sampler.sample(runner.run(rows), greedy, [None] * len(greedy))
            label = "/".join(map(str, sorted(set(slot_ranks)))) if adapters else "-"
            cases[f"manylora {backend}, batch {batch}, {adapters} adapters, ranks {label}"] = \
                step
    return cases


def peft_cases(model_dir: Path, adapter: Path, name: str, context: int,
               rng: np.random.Generator) -> dict[str, Callable[[], None]]:
    """HF + PEFT decode steps (one new token per row over a cached context) by batch."""
    chosen = preset(name)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, chosen.dtype))
    model = PeftModel.from_pretrained(base.eval(), adapter, adapter_name="0").eval()
    adapter_rank = chosen.ranks[0]  # adapter 0
    cases = {}
    for batch in BATCHES:
        prompt = torch.from_numpy(rng.integers(0, chosen.model.vocab, (batch, context)))
        cache = DynamicCache()
        with torch.inference_mode():
            model(input_ids=prompt, past_key_values=cache, use_cache=True)
        token = prompt[:, -1:]
        mask = torch.ones(batch, context + 1, dtype=torch.int64)
        positions = torch.full((batch, 1), context, dtype=torch.int64)

        def step(cache=cache, token=token, mask=mask, positions=positions) -> None:
            with torch.inference_mode():
                logits = model(input_ids=token, attention_mask=mask, position_ids=positions,
                               past_key_values=cache, use_cache=True).logits
                logits[:, -1].argmax(-1).tolist()
            cache.crop(-1)  # drop the new token again: every call sees the same context
        cases[f"HF + PEFT, batch {batch}, 1 adapter, rank {adapter_rank}"] = step
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-shape", default="small")
    parser.add_argument("--work-dir", default="out/engine-scaling-work")
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chosen = preset(args.model_shape)
    work = Path(args.work_dir) / chosen.name
    model_dir = write_checkpoint(work / "model", chosen)
    adapters = write_adapters(work / "adapters", chosen, 1)
    rng = np.random.default_rng(chosen.seed)
    cases = {**manylora_cases(model_dir, chosen.name, args.context, rng),
             **peft_cases(model_dir, adapters / "0", chosen.name, args.context, rng)}
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for repeat in range(args.repeats + 1):  # the first pass warms up
        for i in rng.permutation(len(names)):
            start = time.perf_counter()
            cases[names[i]]()
            if repeat:
                times[names[i]].append(time.perf_counter() - start)
    print(f"decode step, context {args.context}, {args.threads} thread(s), median of "
          f"{args.repeats} interleaved repeats")
    print(f"{'case':<84} {'ms/step':>9} {'ms/token':>9}")
    for name in names:
        batch = int(name.split("batch ")[1].split(",")[0])
        ms = 1e3 * statistics.median(times[name])
        print(f"{name:<84} {ms:>9.2f} {ms / batch:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
