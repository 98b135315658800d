"""Test-suite setup shared by every package's tests.

Triton reads TRITON_INTERPRET when it is first imported, so it is set here, before any test
module imports triton: without a CUDA device the Triton kernels run in the interpreter on CPU.
Tests marked ``gpu`` need a CUDA device and are skipped without one.
"""
from __future__ import annotations

import os

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
