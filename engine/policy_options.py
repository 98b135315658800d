"""Control-plane options shared by every command that runs the scheduler.

``manylora simulate``, ``manylora replay`` and sweeps name policies the same way: each option
below maps to one field of ``ControlConfig`` (scheduler_config.py). ``add_policy_arguments``
puts them on an argparse parser; ``policies_from_args`` turns parsed arguments into a
``ControlConfig``; ``policies_from_options`` does the same for a flat dict keyed by option
name (``"slo-ttft"``) or field name (``"slo_ttft_s"``), as a sweep file writes them.
Options not given keep the dataclass defaults.
"""
from __future__ import annotations

import argparse
import re
from typing import Any, Callable, Mapping, NamedTuple

from manylora.engine.page_pool import POOL_KINDS
from manylora.engine.policies_eviction import EVICTION_POLICIES
from manylora.engine.policies_queue import QUEUE_POLICIES
from manylora.engine.policies_reservation import KV_RESERVATIONS
from manylora.engine.scheduler_config import ControlConfig


class PolicyOptionError(ValueError):
    """A control-plane option with a bad name or value."""


_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str) -> int:
    """Bytes from ``"1048576"``, ``"512M"``, ``"1.5GiB"`` (binary units)."""
    match = _SIZE.match(str(text))
    if not match:
        raise argparse.ArgumentTypeError(f"not a size in bytes: {text!r} (e.g. 512M, 8G)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _on_off(text: str) -> bool:
    lowered = str(text).lower()
    if lowered in ("on", "true", "1", "yes"):
        return True
    if lowered in ("off", "false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")


class Option(NamedTuple):
    flag: str                         # command-line name without the dashes
    field: str                        # ControlConfig field (scheduler, queue or memory part)
    kind: Callable[[str], Any]
    choices: tuple[str, ...] | None
    help: str
    metavar: str | None = None


OPTIONS: tuple[Option, ...] = (
    Option("max-batch-size", "max_batch_size", int, None,
           "most running requests per step (default 256)", "N"),
    Option("token-budget", "token_budget", int, None,
           "most tokens (prefill + decode) per step (default 8192)", "N"),
    Option("kv-reservation", "kv_reservation", str, tuple(KV_RESERVATIONS),
           "lookahead: reserve prompt + whole output at admission (default); incremental: "
           "grow per page and preempt when the pool runs out"),
    Option("queue", "queue", str, tuple(QUEUE_POLICIES), "admission order (default fcfs)"),
    Option("slo-ttft", "slo_ttft_s", float, None,
           "first-token SLO in seconds, for early-abort and edf (default 6)", "S"),
    Option("abort-margin", "abort_margin_s", float, None,
           "seconds allowed for the prefill when judging the SLO (default 0.5)", "S"),
    Option("max-batch-adapters", "max_batch_adapters", int, None,
           "most distinct adapters per batch, S-LoRA batch-num-adapters (default 0: no cap)",
           "K"),
    Option("pool", "pool", str, tuple(POOL_KINDS),
           "unified KV + adapter pages (default) or partitioned fixed regions"),
    Option("pool-pages", "pool_pages", int, None,
           "pages in the pool (default: from device memory or the cost model's profile)", "N"),
    Option("tokens-per-page", "tokens_per_page", int, None, "KV tokens per page (default 1)",
           "N"),
    Option("adapter-fraction", "adapter_fraction", float, None,
           "share of pages for adapters in a partitioned pool (default 0.25)", "F"),
    Option("eviction", "eviction", str, tuple(EVICTION_POLICIES),
           "which idle adapter leaves the pool first (default lru)"),
    Option("prefetch", "prefetch", _on_off, None,
           "on: load adapters of queued requests in the background (default off)", "on|off"),
    Option("prefetch-window", "prefetch_window", int, None,
           "queued requests whose adapters prefetch considers (default 16)", "N"),
    Option("host-cache", "host_cache_bytes", parse_size, None,
           "host memory for adapters, e.g. 8G; adapters beyond it are read from disk "
           "(default: unbounded, all adapters in host memory)", "SIZE"),
)
_BY_NAME = {**{o.flag: o for o in OPTIONS}, **{o.field: o for o in OPTIONS}}


def add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every control-plane option (as an argument group) to ``parser``."""
    group = parser.add_argument_group("scheduling and memory policies")
    for option in OPTIONS:
        group.add_argument(f"--{option.flag}", dest=option.field, type=option.kind,
                           choices=option.choices, default=None, help=option.help,
                           metavar=option.metavar)


def policies_from_args(args: argparse.Namespace) -> ControlConfig:
    """The ``ControlConfig`` selected by parsed arguments (absent options keep defaults)."""
    given = {o.field: getattr(args, o.field) for o in OPTIONS
             if getattr(args, o.field, None) is not None}
    return _build(given)


def policies_from_options(options: Mapping[str, Any]) -> ControlConfig:
    """From ``{option or field name: value}``; string values are parsed as on the command
    line."""
    given: dict[str, Any] = {}
    for name, value in options.items():
        option = _BY_NAME.get(name)
        if option is None:
            raise PolicyOptionError(f"unknown policy option {name!r}; known: "
                                    f"{', '.join(o.flag for o in OPTIONS)}")
        if isinstance(value, str):
            try:
                value = option.kind(value)
            except (ValueError, argparse.ArgumentTypeError) as exc:
                raise PolicyOptionError(f"option {option.flag}: {exc}") from None
        if option.choices and value not in option.choices:
            raise PolicyOptionError(f"option {option.flag}: unknown {value!r}; choose one of "
                                    f"{', '.join(option.choices)}")
        given[option.field] = value
    return _build(given)


def _build(given: dict[str, Any]) -> ControlConfig:
    try:
        return ControlConfig.from_flat(given)
    except (TypeError, ValueError) as exc:
        raise PolicyOptionError(str(exc)) from None
