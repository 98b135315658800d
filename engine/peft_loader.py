"""PEFT LoRA adapter folders: parse, validate against the base model, pack into pool layout.

``read_adapter`` reads ``adapter_config.json`` and the safetensors header only (no weights), so
thousands of adapters can be registered cheaply; it resolves which modules of the base model
the adapter targets exactly as PEFT does (``target_modules`` as a list of name suffixes or a
full-match regex, ``all-linear``, ``exclude_modules``, ``layers_to_transform``) and each
module's rank and alpha (``rank_pattern`` / ``alpha_pattern``, ``use_rslora``), and checks every
tensor's name and shape. ``pack_adapter`` then reads the weights (memory-mapped) into the flat
per-layer layout of docs/internals.md. Every problem raises ``AdapterError`` naming the file;
the engine turns it into rejected requests for that adapter only.
"""
from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError, safe_open

from manylora.engine.model_config import ModelConfig
from manylora.engine.model_shape import HF_MODULE_NAMES, TARGETS, PoolLayout

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")
_MODULE = re.compile(r"^model\.layers\.(?P<layer>\d+)\.(?:self_attn|mlp)\.(?P<name>\w+)$")
_PARENTS = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn",
            "o_proj": "self_attn", "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
_UNSUPPORTED = {"use_dora": False, "modules_to_save": None, "bias": "none",
                "target_parameters": None, "trainable_token_indices": None}


class AdapterError(ValueError):
    """An adapter folder that cannot serve: the message names the file and what is wrong."""


@dataclass(frozen=True)
class ModuleLora:
    """One adapted linear layer: its rank, PEFT scale and tensor names."""

    layer: int
    target: str
    rank: int
    scale: float
    a_key: str
    b_key: str


@dataclass(frozen=True)
class PeftAdapter:
    """A validated adapter folder; the weights are still on disk."""

    path: Path
    weights_file: Path
    modules: tuple[ModuleLora, ...]
    ranks: Mapping[str, int]      # per adapted target: largest rank over layers
    scales: Mapping[str, float]   # per adapted target: the scale passed to the kernels
    alpha: float                  # lora_alpha as configured
    use_rslora: bool

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(t for t in TARGETS if t in self.ranks)

    @property
    def max_rank(self) -> int:
        return max(self.ranks.values())


def base_module_names(config: ModelConfig) -> list[str]:
    """Every module name of HF's ``LlamaForCausalLM`` (what PEFT matches targets against)."""
    names = ["model", "model.embed_tokens", "model.layers", "model.norm", "model.rotary_emb",
             "lm_head"]
    for i in range(config.num_layers):
        p = f"model.layers.{i}"
        names += [p, f"{p}.self_attn", f"{p}.mlp", f"{p}.mlp.act_fn", f"{p}.input_layernorm",
                  f"{p}.post_attention_layernorm"]
        names += [f"{p}.{parent}.{name}" for name, parent in _PARENTS.items()]
    return names


def _targets_module(cfg: Mapping[str, Any], key: str) -> bool:
    target = cfg.get("target_modules")
    if target == "all-linear":  # PEFT: every linear layer but the output head
        target = list(HF_MODULE_NAMES.values())
    exclude = cfg.get("exclude_modules")
    if exclude:
        if isinstance(exclude, str):
            if re.fullmatch(exclude, key):
                return False
        elif key in exclude or any(key.endswith(f".{e}") for e in exclude):
            return False
    if isinstance(target, str):
        return re.fullmatch(target, key) is not None
    if key in target:
        found = True
    else:
        found = any(key.endswith(f".{t}") for t in target)
    layers = cfg.get("layers_to_transform")
    if found and layers is not None and layers != []:
        match = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", key)
        if match is None:
            return False
        allowed = [layers] if isinstance(layers, int) else layers
        return int(match.group("idx")) in allowed
    return found


def _pattern_value(patterns: Mapping[str, Any], key: str, default: Any) -> Any:
    # PEFT's get_pattern_key: the first pattern that matches a dotted suffix of the module name
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", key):
            return value
    return default


def _read_config(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        raise AdapterError(f"{path}: no such file (an adapter folder needs {CONFIG_FILE})") \
            from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"{path}: cannot read JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise AdapterError(f"{path}: expected a JSON object")
    if str(cfg.get("peft_type", "LORA")).upper() != "LORA":
        raise AdapterError(f"{path}: peft_type {cfg['peft_type']!r} is not supported (LORA only)")
    for key, ok in _UNSUPPORTED.items():
        if cfg.get(key, ok) not in (ok, [], {}, False):
            raise AdapterError(f"{path}: {key}={cfg[key]!r} is not supported")
    r, alpha = cfg.get("r"), cfg.get("lora_alpha")
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise AdapterError(f"{path}: r must be an int >= 1, got {r!r}")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        raise AdapterError(f"{path}: lora_alpha must be a number, got {alpha!r}")
    if not isinstance(cfg.get("target_modules"), (str, list)):
        raise AdapterError(f"{path}: target_modules must be a list or a regex string, got "
                           f"{cfg.get('target_modules')!r}")
    for name in ("rank_pattern", "alpha_pattern"):
        if not isinstance(cfg.get(name) or {}, dict):
            raise AdapterError(f"{path}: {name} must be an object, got {cfg[name]!r}")
    return cfg


_MATCH_KEYS = ("target_modules", "exclude_modules", "layers_to_transform", "r", "lora_alpha",
               "rank_pattern", "alpha_pattern", "use_rslora")


def resolve_modules(cfg: Mapping[str, Any], path: Path,
                    config: ModelConfig) -> dict[str, tuple[int, str, int, float]]:
    """Module name -> (layer, target, rank, scale) for every module an adapter config targets.

    ``cfg`` is an adapter_config.json dict; ``path`` names it in errors. Adapters trained with
    one recipe share the answer, so it is cached on the matching fields."""
    key = json.dumps({k: cfg.get(k) for k in _MATCH_KEYS}, sort_keys=True)
    try:
        return dict(_resolve(key, config))
    except ValueError as exc:
        raise AdapterError(f"{path}: {exc}") from None


@functools.lru_cache(maxsize=256)
def _resolve(key: str, config: ModelConfig) -> tuple[tuple[str, tuple[int, str, int, float]],
                                                       ...]:
    cfg = json.loads(key)
    out = []
    for name in base_module_names(config):
        try:
            hit = _targets_module(cfg, name)
        except re.error as exc:
            raise ValueError(f"bad regex in target_modules/exclude_modules: {exc}") from None
        if not hit:
            continue
        m = _MODULE.match(name)
        if m is None or m.group("name") not in _PARENTS:
            raise ValueError(f"target module {name!r} is not supported (LoRA only on "
                             f"{', '.join(HF_MODULE_NAMES.values())})")
        rank = _pattern_value(cfg.get("rank_pattern") or {}, name, cfg["r"])
        alpha = _pattern_value(cfg.get("alpha_pattern") or {}, name, cfg["lora_alpha"])
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank_pattern gives {name!r} rank {rank!r}")
        scale = alpha / math.sqrt(rank) if cfg.get("use_rslora") else alpha / rank
        target = m.group("name").removesuffix("_proj")
        out.append((name, (int(m.group("layer")), target, rank, float(scale))))
    if not out:
        raise ValueError(f"target_modules {cfg['target_modules']!r} match no module of the "
                         f"base model")
    return tuple(out)


def read_adapter(folder: str | Path, config: ModelConfig) -> PeftAdapter:
    """Parse and validate one PEFT adapter folder against the base model; reads no weights."""
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    cfg = _read_config(config_path)
    resolved = resolve_modules(cfg, config_path, config)
    shape = config.shape(dtype_bytes=4)
    if not weights_path.is_file():
        raise AdapterError(f"{weights_path}: no such file")
    try:
        with safe_open(weights_path, framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise AdapterError(f"{weights_path}: not a readable safetensors file: {exc}") from None
    keys: dict[tuple[str, str], str] = {}
    for k in shapes:
        m = _KEY.match(k)
        if m is None:
            raise AdapterError(f"{weights_path}: unexpected tensor {k!r} (only LoRA A/B weights "
                               f"are supported)")
        if m.group("module") not in resolved:
            raise AdapterError(f"{weights_path}: tensor {k!r} is for module "
                               f"{m.group('module')!r}, which is not a supported target of "
                               f"this adapter")
        keys[(m.group("module"), m.group("ab"))] = k
    modules = []
    for key, (layer, target, rank, scale) in resolved.items():
        d_in, d_out = shape.target_dims(target)
        ab = {}
        for part, want in (("A", (rank, d_in)), ("B", (d_out, rank))):
            name = keys.get((key, part))
            if name is None:
                raise AdapterError(f"{weights_path}: missing tensor for {key}.lora_{part}")
            if shapes[name] != want:
                raise AdapterError(f"{weights_path}: tensor {name!r} has shape "
                                   f"{list(shapes[name])}, expected {list(want)} for the base "
                                   f"model")
            ab[part] = name
        modules.append(ModuleLora(layer, target, rank, scale, ab["A"], ab["B"]))
    ranks: dict[str, int] = {}
    scales: dict[str, float] = {}
    for mod in sorted(modules, key=lambda m: m.layer):
        ranks[mod.target] = max(ranks.get(mod.target, 0), mod.rank)
        # the first adapted layer's scale is the kernels'; other layers fold the ratio into B
        scales.setdefault(mod.target, mod.scale if mod.scale != 0 else 1.0)
    return PeftAdapter(folder, weights_path, tuple(modules), ranks, scales,
                       float(cfg["lora_alpha"]), bool(cfg.get("use_rslora", False)))


def pack_adapter(spec: PeftAdapter, layout: PoolLayout, dtype: torch.dtype,
                 pin_memory: bool = False) -> torch.Tensor:
    """Read the weights and lay them out for the pool: [num_layers, num_pages, page_elems].

    Per layer, target by target: A as [rank, d_in], then B^T as [rank, d_out]; rows past a
    layer's own rank stay zero (exact). Per-layer scale differences are folded into B^T.
    """
    adapter = layout.adapter_layout(spec.ranks)
    num_layers = layout.shape.num_layers
    packed = torch.zeros(num_layers, adapter.num_pages * layout.page_elems, dtype=dtype,
                         pin_memory=pin_memory)  # [L, pages * page_elems]
    slices = {s.target: s for s in adapter.slices}
    try:
        with safe_open(spec.weights_file, framework="pt") as f:
            for mod in spec.modules:
                sl = slices[mod.target]
                a = f.get_tensor(mod.a_key).float()        # [rank, d_in]
                b_t = f.get_tensor(mod.b_key).float().t()  # [rank, d_out]
                b_t = b_t * (mod.scale / spec.scales[mod.target])
                row = packed[mod.layer]
                row[sl.a_offset:sl.a_offset + sl.rank * sl.d_in].view(
                    sl.rank, sl.d_in)[:mod.rank].copy_(a)
                row[sl.b_offset:sl.b_offset + sl.rank * sl.d_out].view(
                    sl.rank, sl.d_out)[:mod.rank].copy_(b_t)
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise AdapterError(f"{spec.weights_file}: cannot read weights: {exc}") from None
    if not torch.isfinite(packed).all():
        raise AdapterError(f"{spec.weights_file}: weights hold NaN or infinity")
    return packed.view(num_layers, adapter.num_pages, layout.page_elems)
