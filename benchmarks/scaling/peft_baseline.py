"""The HF PEFT baseline: every adapter loaded into one ``PeftModel``, requests grouped by
adapter and run with static batching, which is the best a PEFT user can do with it.

For each adapter in order of its first request, ``set_adapter`` selects it and its requests
run as batches of at most ``max_batch_size`` through ``generate`` (greedy, EOS ignored like
the trace asks): prompts sorted by length within the group so batches pad little, padded on
the left with an attention mask (``generate`` derives positions from it). A batch runs until
its longest output is done, and every request in it finishes then; each request keeps its own
``output_len`` tokens.

Loading adapters into one PeftModel slows down as it fills (each ``load_adapter`` walks every
module, and the modules grow with the adapters already loaded). The load time is projected
from a straight-line fit of per-adapter load times as they come in; when the projection for
all of them exceeds the limit, the cell is not run and says so with the figures.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, GenerationConfig

from scaling.context import CellContext, Served

PAD_TOKEN = 0
FIRST_PROJECTION = 32   # adapters loaded before the first projection
PROJECT_EVERY = 16


def projected_load_s(times: list[float], total: int) -> float:
    """Seconds to load ``total`` adapters, given the first ``len(times)`` load times: a
    least-squares line through them (slope >= 0) carried on to adapter ``total - 1`` (from a
    single time: that time for each)."""
    done = len(times)
    if done >= total:
        return float(sum(times))
    if done == 1:
        return times[0] * total
    index = np.arange(done, dtype=np.float64)
    slope, intercept = np.polyfit(index, np.asarray(times), 1)
    slope = max(float(slope), 0.0)
    rest = np.arange(done, total, dtype=np.float64)
    return float(sum(times) + np.sum(np.maximum(intercept + slope * rest, 0.0)))


def load_adapters(base: torch.nn.Module, folders: Mapping[int, Path], limit_s: float
                  ) -> tuple[PeftModel | None, str, list[float]]:
    """(model, "", load times) or (None, why not, load times so far)."""
    model: PeftModel | None = None
    times: list[float] = []
    total = len(folders)
    for aid, folder in folders.items():
        t0 = time.perf_counter()
        if model is None:
            model = PeftModel.from_pretrained(base, folder, adapter_name=str(aid),
                                              low_cpu_mem_usage=True)
        else:
            model.load_adapter(folder, adapter_name=str(aid), low_cpu_mem_usage=True)
        times.append(time.perf_counter() - t0)
        done = len(times)
        check = done >= FIRST_PROJECTION and done % PROJECT_EVERY == 0
        if done < total and (check or sum(times) > limit_s):
            projected = projected_load_s(times, total)
            if projected > limit_s:
                return None, (f"not run: loading {total} adapters into one PeftModel is "
                              f"projected at {projected:.0f} s, over the {limit_s:.0f} s "
                              f"limit (the first {done} took {sum(times):.1f} s, the last "
                              f"{min(done, PROJECT_EVERY)} {np.mean(times[-PROJECT_EVERY:]):.3f}"
                              f" s each)"), times
    return model, "", times


def adapter_groups(ctx: CellContext) -> list[tuple[int, list[int]]]:
    """(adapter, request indices sorted by prompt length) in order of first request."""
    groups: dict[int, list[int]] = {}
    for i, aid in enumerate(ctx.adapter_ids):
        groups.setdefault(aid, []).append(i)
    return [(aid, sorted(idx, key=lambda i: len(ctx.prompts[i]))) for aid, idx in groups.items()]


def left_padded(ctx: CellContext, batch: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask [B, longest prompt], padding on the left."""
    width = max(len(ctx.prompts[i]) for i in batch)
    ids = torch.full((len(batch), width), PAD_TOKEN, dtype=torch.int64)
    mask = torch.zeros((len(batch), width), dtype=torch.int64)
    for row, i in enumerate(batch):
        n = len(ctx.prompts[i])
        ids[row, width - n:] = torch.from_numpy(ctx.prompts[i])
        mask[row, width - n:] = 1
    return ids.to(ctx.device), mask.to(ctx.device)


class PeftBaseline:
    name = "peft"
    label = "HF PEFT: all adapters in one PeftModel, grouped by adapter, static batches"

    def run(self, ctx: CellContext) -> Served:
        t0 = time.perf_counter()
        base = AutoModelForCausalLM.from_pretrained(ctx.model_dir, dtype=ctx.dtype)
        base = base.to(ctx.device).eval()
        # the trace fixes every output length: EOS must not end a row early
        base.generation_config.eos_token_id = None
        model, skipped, times = load_adapters(base, ctx.adapter_folders,
                                              ctx.spec.peft_load_limit_s)
        notes = {"adapter_load_s": round(sum(times), 3),
                 "adapters_loaded": len(times) if model is not None else 0}
        if model is None:
            return Served(setup_s=time.perf_counter() - t0, notes=notes, skipped=skipped)
        model.eval()
        served = Served(setup_s=time.perf_counter() - t0, notes=notes)
        ctx.start_clock()
        batches = 0
        for aid, indices in adapter_groups(ctx):
            if ctx.over_budget():
                break
            batches += self._serve_group(ctx, model, aid, indices, served)
        ctx.stop(served)
        served.notes["batches"] = batches
        return served

    def _serve_group(self, ctx: CellContext, model: PeftModel, adapter_id: int,
                     indices: list[int], served: Served) -> int:
        size = ctx.preset.max_batch_size
        scope = model.disable_adapter() if adapter_id < 0 else contextlib.nullcontext()
        if adapter_id >= 0:
            model.set_adapter(str(adapter_id))
        batches = 0
        with scope, torch.inference_mode():
            for start in range(0, len(indices), size):
                if ctx.over_budget():
                    break
                batch = indices[start:start + size]
                ids, mask = left_padded(ctx, batch)
                longest = max(ctx.output_lens[i] for i in batch)
                config = GenerationConfig(max_new_tokens=longest, do_sample=False,
                                          pad_token_id=PAD_TOKEN)
                out = model.generate(input_ids=ids, attention_mask=mask,
                                     generation_config=config)  # [B, width + longest]
                new = out[:, ids.shape[1]:].tolist()
                now = ctx.clock()
                for row, i in enumerate(batch):
                    rid = ctx.request_ids[i]
                    served.finish_s[rid] = now
                    served.tokens[rid] = new[row][:ctx.output_lens[i]]
                batches += 1
        return batches
