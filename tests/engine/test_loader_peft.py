"""PEFT adapter folders: what is adapted, at which rank and scale, equals PEFT's own reading;
every unusable folder raises AdapterError naming the file."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from engine_cases import one_cpu_thread  # noqa: F401 (autouse fixture)
from engine_cases import Oracle, write_checkpoint, write_zoo
from manylora.engine.make_tiny import adapter_config_json, write_adapter
from manylora.engine.model_shape import PoolLayout
from manylora.engine.peft_loader import AdapterError, pack_adapter, read_adapter


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("peft")
    model_dir, config = write_checkpoint(root, seed=0)
    return model_dir, config, write_zoo(root / "adapters", config)


def test_packed_weights_equal_peft_delta_weights(zoo):
    """For every adapter and module: scale * B @ A from our pool layout == PEFT's delta W,
    and the adapted modules are exactly PEFT's (regex, patterns, rslora, layers_to_transform)."""
    model_dir, config, folders = zoo
    oracle = Oracle(model_dir, folders)
    layout = PoolLayout(config.shape(dtype_bytes=4), tokens_per_page=3)
    for aid, folder in folders.items():
        adapter = read_adapter(folder, config)
        packed = pack_adapter(adapter, layout, torch.float32).reshape(config.num_layers, -1)
        slices = {s.target: s for s in layout.adapter_layout(adapter.ranks).slices}
        ours = {(m.layer, m.target) for m in adapter.modules}
        peft = set()
        for name, module in oracle.model.named_modules():
            if not hasattr(module, "lora_A") or str(aid) not in module.lora_A:
                continue
            layer = int(name.split(".layers.")[1].split(".")[0])
            target = name.rsplit(".", 1)[1].removesuffix("_proj")
            peft.add((layer, target))
            s = slices[target]
            a = packed[layer, s.a_offset:s.a_offset + s.rank * s.d_in].view(s.rank, s.d_in)
            b_t = packed[layer, s.b_offset:s.b_offset + s.rank * s.d_out].view(s.rank, s.d_out)
            mine = adapter.scales[target] * (b_t.T @ a)
            torch.testing.assert_close(mine, module.get_delta_weight(str(aid)).float(),
                                       atol=1e-6, rtol=1e-5)
        assert ours == peft, aid


def test_rank_pattern_pads_smaller_layers_with_zeros(zoo):
    _, config, folders = zoo
    adapter = read_adapter(folders[5], config)  # layer 1 q_proj has rank 2 of 8
    assert adapter.ranks["q"] == 8 and adapter.ranks["down"] == 12
    layout = PoolLayout(config.shape(dtype_bytes=4))
    packed = pack_adapter(adapter, layout, torch.float32).reshape(config.num_layers, -1)
    q = next(s for s in layout.adapter_layout(adapter.ranks).slices if s.target == "q")
    a1 = packed[1, q.a_offset:q.a_offset + q.rank * q.d_in].view(q.rank, q.d_in)
    assert a1[:2].abs().sum() > 0 and a1[2:].abs().sum() == 0


def test_adapter_name_infix_in_keys_is_accepted(zoo, tmp_path):
    _, config, folders = zoo
    tensors = load_file(folders[0] / "adapter_model.safetensors")
    renamed = {k.replace("lora_A.weight", "lora_A.default.weight")
               .replace("lora_B.weight", "lora_B.default.weight"): v for k, v in tensors.items()}
    (tmp_path / "adapter_config.json").write_text(
        (folders[0] / "adapter_config.json").read_text())
    save_file(renamed, tmp_path / "adapter_model.safetensors")
    assert read_adapter(tmp_path, config).ranks == read_adapter(folders[0], config).ranks


def _folder(tmp_path, config, cfg, rng_seed=0):
    write_adapter(tmp_path, config, cfg, np.random.default_rng(rng_seed))
    return tmp_path


def _edit_config(folder, **changes):
    path = folder / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"target_modules": ["q_proj", "lm_head"]}, "target module 'lm_head' is not supported"),
    ({"target_modules": ["c_attn"]}, "match no module"),
    ({"target_modules": "(unclosed"}, "bad regex"),
    ({"target_modules": ["mlp"]}, "target module 'model.layers.0.mlp' is not supported"),
    ({"use_dora": True}, "use_dora"),
    ({"bias": "all"}, "bias"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
    ({"peft_type": "IA3"}, "peft_type"),
    ({"r": 0}, "r must be"),
    ({"lora_alpha": "big"}, "lora_alpha"),
    ({"rank_pattern": {"q_proj": 0}}, "rank_pattern"),
], ids=["lm-head", "no-match", "regex", "non-linear", "dora", "bias", "modules-to-save",
        "ia3", "rank", "alpha", "pattern-rank"])
def test_bad_adapter_config_names_the_file(zoo, tmp_path, changes, message):
    _, config, _ = zoo
    folder = _folder(tmp_path, config, adapter_config_json(4, 8.0, ["q", "v"]))
    path = _edit_config(folder, **changes)
    with pytest.raises(AdapterError, match=message) as info:
        read_adapter(folder, config)
    assert str(path) in str(info.value)


def _edit_weights(folder, change):
    path = folder / "adapter_model.safetensors"
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path)
    return path


@pytest.mark.parametrize("change, message", [
    (lambda t: t.pop(next(k for k in t if "v_proj.lora_B" in k)), "missing tensor"),
    (lambda t: t.update({"base_model.model.lm_head.lora_A.weight": np.ones((4, 64), np.float32)}),
     "not a supported target"),
    (lambda t: t.update({"base_model.model.model.layers.0.self_attn.q_proj.weight":
                         np.ones((64, 64), np.float32)}), "unexpected tensor"),
    (lambda t: t.update({k: np.ones((8, 64), np.float32) for k in t if "q_proj.lora_A" in k}),
     r"shape \[8, 64\], expected \[4, 64\]"),
], ids=["missing", "foreign-module", "base-weight", "rank-mismatch"])
def test_bad_adapter_weights_name_the_file(zoo, tmp_path, change, message):
    _, config, _ = zoo
    folder = _folder(tmp_path, config, adapter_config_json(4, 8.0, ["q", "v"]))
    path = _edit_weights(folder, change)
    with pytest.raises(AdapterError, match=message) as info:
        read_adapter(folder, config)
    assert str(path) in str(info.value)


def test_adapter_for_another_base_model_is_a_shape_mismatch(zoo, tmp_path):
    _, config, folders = zoo
    _, wider = write_checkpoint(tmp_path / "wide", seed=0, hidden=96, heads=6, kv_heads=2)
    with pytest.raises(AdapterError, match="expected") as info:
        read_adapter(folders[1], wider)
    assert "adapter_model.safetensors" in str(info.value)


def test_missing_and_corrupt_files(zoo, tmp_path):
    _, config, _ = zoo
    with pytest.raises(AdapterError, match="adapter_config.json: no such file"):
        read_adapter(tmp_path / "nowhere", config)
    folder = _folder(tmp_path / "a", config, adapter_config_json(4, 8.0, ["q"]))
    (folder / "adapter_config.json").write_text("{not json")
    with pytest.raises(AdapterError, match="cannot read JSON"):
        read_adapter(folder, config)
    folder = _folder(tmp_path / "b", config, adapter_config_json(4, 8.0, ["q"]))
    (folder / "adapter_model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(AdapterError, match="not a readable safetensors file"):
        read_adapter(folder, config)
