"""Control-plane configs and the shared command-line options."""
from __future__ import annotations

import argparse

import pytest

from manylora.engine.policy_options import (OPTIONS, PolicyOptionError, add_policy_arguments,
                                            parse_size, policies_from_args,
                                            policies_from_options)
from manylora.engine.scheduler_config import (ControlConfig, MemoryConfig, QueueConfig,
                                              SchedulerConfig)


def _parse(*argv: str) -> ControlConfig:
    parser = argparse.ArgumentParser()
    add_policy_arguments(parser)
    return policies_from_args(parser.parse_args(list(argv)))


def test_defaults_when_nothing_is_given() -> None:
    assert _parse() == ControlConfig()


def test_every_option_reaches_its_field() -> None:
    config = _parse("--max-batch-size", "8", "--token-budget", "512", "--kv-reservation",
                    "incremental", "--queue", "early-abort", "--slo-ttft", "2.5",
                    "--abort-margin", "0.1", "--max-batch-adapters", "3", "--pool",
                    "partitioned", "--pool-pages", "900", "--tokens-per-page", "16",
                    "--adapter-fraction", "0.4", "--eviction", "lfu", "--prefetch", "on",
                    "--prefetch-window", "4", "--host-cache", "1.5G")
    assert config.scheduler == SchedulerConfig(8, 512, "incremental")
    assert config.queue == QueueConfig("early-abort", 2.5, 0.1, 3)
    assert config.memory == MemoryConfig("partitioned", 900, 16, 0.4, "lfu", True, 4,
                                         3 * 2**29)
    assert len(OPTIONS) == 15
    assert ControlConfig.from_dict(config.to_dict()) == config


def test_flat_options_accept_flags_fields_and_strings() -> None:
    config = policies_from_options({"queue": "edf", "slo-ttft": "3", "prefetch": "off",
                                    "host_cache_bytes": 4096, "pool-pages": 64})
    assert config.queue.queue == "edf" and config.queue.slo_ttft_s == 3.0
    assert config.memory.prefetch is False and config.memory.host_cache_bytes == 4096
    with pytest.raises(PolicyOptionError, match="unknown policy option 'qeue'"):
        policies_from_options({"qeue": "edf"})
    with pytest.raises(PolicyOptionError, match="eviction: unknown 'fifo'"):
        policies_from_options({"eviction": "fifo"})
    with pytest.raises(PolicyOptionError, match="max_batch_size must be >= 1"):
        policies_from_options({"max-batch-size": 0})


@pytest.mark.parametrize("make, field", [
    (lambda: SchedulerConfig(max_batch_size=0), "max_batch_size"),
    (lambda: SchedulerConfig(token_budget=0), "token_budget"),
    (lambda: SchedulerConfig(kv_reservation="lazy"), "kv_reservation"),
    (lambda: QueueConfig(queue="random"), "queue"),
    (lambda: QueueConfig(slo_ttft_s=0.0), "slo_ttft_s"),
    (lambda: QueueConfig(abort_margin_s=-1.0), "abort_margin_s"),
    (lambda: QueueConfig(max_batch_adapters=-1), "max_batch_adapters"),
    (lambda: MemoryConfig(pool="paged"), "pool"),
    (lambda: MemoryConfig(pool_pages=1), "pool_pages"),
    (lambda: MemoryConfig(tokens_per_page=0), "tokens_per_page"),
    (lambda: MemoryConfig(adapter_fraction=1.0), "adapter_fraction"),
    (lambda: MemoryConfig(eviction="mru"), "eviction"),
    (lambda: MemoryConfig(prefetch_window=0), "prefetch_window"),
    (lambda: MemoryConfig(host_cache_bytes=0), "host_cache_bytes"),
])
def test_bad_config_values_name_their_field(make, field) -> None:
    with pytest.raises(ValueError, match=field):
        make()


def test_sizes_parse_with_binary_units() -> None:
    assert parse_size("1048576") == 2**20
    assert parse_size("512M") == parse_size("512MiB") == 512 * 2**20
    assert parse_size("2g") == 2 * 2**30
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size("lots")


def test_bad_command_line_values_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        _parse("--prefetch", "maybe")
    assert exc.value.code == 2
    assert "expected on or off" in capsys.readouterr().err
