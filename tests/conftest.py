"""Test-suite setup shared by every package's tests.

Triton reads TRITON_INTERPRET when it is first imported, so it is set here, before any test
module imports triton: without a CUDA device the Triton kernels run in the interpreter on CPU.
Tests marked ``gpu`` need a CUDA device and are skipped without one.

The repository root moves to the end of ``sys.path`` (``python -m pytest`` puts the working
directory first): the tests import their helpers as ``tests.*`` from there, but its folders
``kernels/`` and ``traces/`` are manylora's (``manylora.kernels``, ``manylora.traces``) and must
not shadow the installed packages of the same names (transformers 5.x requires and imports
Hugging Face's ``kernels``).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != ROOT] + [str(ROOT)]

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_CUDA:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
