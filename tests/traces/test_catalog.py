"""The adapter catalog: target names, rank rules, lora_alpha rules."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from manylora.traces.catalog import (ALPHA_RULES, RANK_RULES, TARGETS, CatalogConfig,
                                     CycleRanks, DrawnRanks, FixedAlpha, MixedRanks,
                                     PerRankAlpha, build_catalog, canonical_target,
                                     parse_targets)
from manylora.traces.errors import TraceConfigError


def test_targets_are_canonical_and_accept_peft_names():
    assert parse_targets("v;q") == ("q", "v")
    assert parse_targets("q_proj,down_proj,q") == ("q", "down")
    assert parse_targets(["gate", "up_proj"]) == ("gate", "up")
    with pytest.raises(TraceConfigError, match="'qq'"):
        parse_targets("q;qq")
    with pytest.raises(TraceConfigError, match="no LoRA target"):
        parse_targets(" ; ")


def test_canonical_target():
    assert canonical_target("gate_proj") == "gate" and canonical_target("o") == "o"
    with pytest.raises(ValueError, match="'lm_head'"):
        canonical_target("lm_head")


def test_engine_uses_the_same_target_order():
    model_shape = pytest.importorskip("manylora.engine.model_shape")
    assert tuple(model_shape.TARGETS) == TARGETS


def test_cycle_ranks_like_s_lora():
    ranks = CycleRanks((8, 16, 32)).assign(np.random.default_rng(), 7)
    assert ranks.tolist() == [8, 16, 32, 8, 16, 32, 8]


def test_drawn_and_mixed_ranks_follow_their_weights():
    drawn = DrawnRanks((8, 64)).assign(np.random.default_rng(1), 4000)
    assert set(drawn.tolist()) == {8, 64}
    assert stats.binomtest(int((drawn == 8).sum()), 4000, 0.5).pvalue > 0.01
    mix = MixedRanks((8, 16, 32, 64), (0.4, 0.3, 0.2, 0.1))
    ranks = mix.assign(np.random.default_rng(2), 20_000)
    observed = [int((ranks == r).sum()) for r in (8, 16, 32, 64)]
    assert stats.chisquare(observed, np.array([0.4, 0.3, 0.2, 0.1]) * 20_000).pvalue > 0.01
    # Weights need not sum to 1.
    np.testing.assert_allclose(MixedRanks((8, 16), (2.0, 6.0)).probabilities(), [0.25, 0.75])


def test_alpha_rules():
    ranks = np.array([8, 16])
    assert FixedAlpha(16.0).alphas(ranks).tolist() == [16.0, 16.0]
    assert PerRankAlpha(2.0).alphas(ranks).tolist() == [16.0, 32.0]


def test_build_catalog_and_round_trip():
    config = CatalogConfig(MixedRanks((4, 8), (1.0, 1.0)), FixedAlpha(8.0), ("v_proj", "q"))
    assert config.targets == ("q", "v")
    frame = build_catalog(config, 5, np.random.default_rng(0))
    assert frame.columns.tolist() == ["adapter_id", "rank", "alpha", "targets"]
    assert frame["adapter_id"].tolist() == [0, 1, 2, 3, 4]
    assert set(frame["targets"]) == {"q;v"} and set(frame["alpha"]) == {8.0}
    assert CatalogConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("make, field", [
    (lambda: CycleRanks(()), "ranks"),
    (lambda: CycleRanks((8, 0)), "ranks"),
    (lambda: DrawnRanks((8.5,)), "ranks"),
    (lambda: MixedRanks((8, 16), (1.0,)), "weights"),
    (lambda: MixedRanks((8,), (-1.0,)), "weights"),
    (lambda: FixedAlpha(0.0), "value"),
    (lambda: PerRankAlpha(-2.0), "factor"),
    (lambda: CatalogConfig(targets=("q", "x")), "targets"),
])
def test_bad_parameters_name_the_field(make, field):
    with pytest.raises(TraceConfigError, match=field):
        make()


def test_registries_know_their_rules():
    assert set(RANK_RULES.names()) == {"cycle", "draw", "mix"}
    assert set(ALPHA_RULES.names()) == {"fixed", "per-rank"}
