"""``manylora model make-tiny``: real HF and PEFT on-disk formats, written without importing
transformers or peft, reproducible by seed."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from manylora.analysis.cli import main
from manylora.engine.make_tiny import TARGET_SETS
from manylora.engine.peft_loader import read_adapter
from manylora.engine.model_config import load_model_config

ARGS = ["--layers", "2", "--hidden", "64", "--intermediate", "96", "--heads", "4",
        "--kv-heads", "2", "--vocab", "100"]


def test_writes_checkpoint_and_adapters_that_hf_and_peft_load(tmp_path, capsys):
    out = tmp_path / "tiny"
    assert main(["model", "make-tiny", "-o", str(out), "--adapters", "6", "--ranks", "4,8",
                 *ARGS]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["adapters", "config.json",
                                                     "model.safetensors"]
    config = load_model_config(out)
    assert (config.num_layers, config.num_kv_heads, config.vocab_size) == (2, 2, 100)
    model, info = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32,
                                                       output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    for i in range(6):
        adapter = read_adapter(out / "adapters" / str(i), config)
        assert adapter.max_rank == [4, 8][i % 2]
        assert adapter.targets == TARGET_SETS[i % len(TARGET_SETS)]
    peft = PeftModel.from_pretrained(model, out / "adapters" / "2", adapter_name="2")
    adapted = [n for n, m in peft.named_modules() if hasattr(m, "lora_A") and "2" in m.lora_A]
    assert len(adapted) == 2 * len(TARGET_SETS[2])
    assert "wrote" in capsys.readouterr().out


def test_same_seed_same_bytes_and_rewrite_in_place(tmp_path):
    for parent in ("a", "b"):
        assert main(["model", "make-tiny", "-o", str(tmp_path / parent / "m"), "--adapters",
                     "2", "--seed", "3", *ARGS]) == 0
    for rel in ("config.json", "model.safetensors", "adapters/1/adapter_model.safetensors",
                "adapters/1/adapter_config.json"):
        assert (tmp_path / "a/m" / rel).read_bytes() == (tmp_path / "b/m" / rel).read_bytes()
    # writing again over a make-tiny folder replaces it (fewer adapters now)
    assert main(["model", "make-tiny", "-o", str(tmp_path / "a/m"), "--adapters", "1",
                 "--seed", "4", *ARGS]) == 0
    assert sorted(p.name for p in (tmp_path / "a/m/adapters").iterdir()) == ["0"]
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["m"]  # no staging left behind


@pytest.mark.parametrize("arch, key", [("qwen2", "model.layers.0.self_attn.q_proj.bias"),
                                       ("mistral", None)])
def test_other_architectures(tmp_path, arch, key):
    assert main(["model", "make-tiny", "-o", str(tmp_path / arch), "--arch", arch,
                 "--adapters", "1", "--tie-embeddings", *ARGS]) == 0
    config = json.loads((tmp_path / arch / "config.json").read_text())
    assert config["model_type"] == arch and config["tie_word_embeddings"]
    model, info = AutoModelForCausalLM.from_pretrained(tmp_path / arch, dtype=torch.float32,
                                                       output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    if key:
        assert key in model.state_dict()


def test_bad_values_are_one_line_errors(tmp_path, capsys):
    assert main(["model", "make-tiny", "-o", str(tmp_path / "x"), "--heads", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("manylora model: error: TinyModelSpec.heads") and "Traceback" not in err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["model", "make-tiny", "-o", str(tmp_path / "mine"), *ARGS]) == 2
    assert "not a make-tiny folder" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").exists()


def test_writer_does_not_import_transformers_or_peft(tmp_path):
    code = ("import sys; from manylora.engine.make_tiny import make_tiny, TinyModelSpec; "
            f"make_tiny({str(tmp_path / 't')!r}, TinyModelSpec(layers=1, hidden=32, "
            "intermediate=32, heads=2, kv_heads=1, vocab=16), 2, [2], 0); "
            "assert 'transformers' not in sys.modules and 'peft' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
