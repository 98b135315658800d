"""Pool sizing for simulations: from a profile, the command line, or a hardware preset's memory."""
import pytest

from manylora.engine.model_shape import LLAMA2_7B, LLAMA2_13B, PoolLayout
from manylora.simulator.deployment import (DeploymentError, pool_pages_for_memory,
                                           resolve_deployment)


def test_llama2_7b_weights_are_about_13_5_gb() -> None:
    # 6.74e9 parameters in bf16 (Touvron et al., 2023).
    assert LLAMA2_7B.weight_bytes / 2 == pytest.approx(6.74e9, rel=0.01)
    assert LLAMA2_13B.weight_bytes / 2 == pytest.approx(13.0e9, rel=0.01)


def test_hardware_memory_sizes_the_pool_like_an_engine() -> None:
    d = resolve_deployment(model_shape="llama-2-7b", hardware="A100-80GB")
    page_bytes = PoolLayout(LLAMA2_7B, 1).page_bytes        # 512 KiB per token for Llama-2-7B
    expected = (80e9 * 0.9 - LLAMA2_7B.weight_bytes) // page_bytes
    assert d.num_pages == expected
    assert 100_000 < d.num_pages < 120_000                  # ~58 GB of KV + adapters
    assert resolve_deployment(model_shape="llama-2-7b", hardware="h200").num_pages > d.num_pages


def test_explicit_pool_pages_win_over_hardware() -> None:
    d = resolve_deployment(model_shape="llama-2-13b", hardware="h100-sxm", pool_pages=500,
                           tokens_per_page=16)
    assert (d.num_pages, d.tokens_per_page) == (500, 16)


def test_roofline_without_hardware_or_pages_is_an_error() -> None:
    with pytest.raises(DeploymentError, match="--pool-pages"):
        resolve_deployment(model_shape="llama-2-7b")


def test_a_model_larger_than_memory_is_an_error() -> None:
    with pytest.raises(DeploymentError, match="no room"):
        pool_pages_for_memory(LLAMA2_13B, 1, 20e9)
