"""The control plane imports no torch: every module loads with torch blocked.

conftest.py imports torch, so the check runs in a fresh interpreter where
``sys.modules["torch"] = None`` makes any ``import torch`` fail.
"""
from __future__ import annotations

import subprocess
import sys

CONTROL_PLANE = (
    "model_shape", "step_shape", "request", "step_plan", "page_pool", "catalog", "host_cache",
    "adapter_residency", "policies_eviction", "policies_queue", "policies_reservation",
    "scheduler_config", "admission", "scheduler", "policy_options", "run_folder", "profile_grid",
    "anchor_config",
)

_PROGRAM = """
import sys
sys.modules["torch"] = None
import importlib
for name in sys.argv[1:]:
    importlib.import_module("manylora.engine." + name)
assert sys.modules["torch"] is None
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "triton"))
assert loaded == ["torch"], loaded
print("ok")
"""


def test_control_plane_imports_without_torch() -> None:
    result = subprocess.run([sys.executable, "-c", _PROGRAM, *CONTROL_PLANE],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_blocking_torch_is_effective() -> None:
    """The harness itself must fail on a torch import, or the test above proves nothing."""
    result = subprocess.run([sys.executable, "-c", _PROGRAM, "pool_tensors"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "torch" in result.stderr
