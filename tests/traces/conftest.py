"""Helpers for the traces tests: hand-written trace folders and running the CLI in-process."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from manylora.analysis.cli import main

GOOD_REQUESTS = ("request_id,arrival_s,adapter_id,prompt_len,output_len\n"
                 "0,0.000000,0,10,5\n"
                 "1,0.500000,1,20,6\n"
                 "2,0.750000,-1,30,7\n"
                 "3,1.250000,1,40,8\n")
GOOD_ADAPTERS = ("adapter_id,rank,alpha,targets\n"
                 "0,8,16.0,q;k;v;o\n"
                 "1,16,32.0,q;v\n")
GOOD_META = json.dumps({"generator": "hand-written", "params": {}, "seed": 0})


def chi_square_bins(observed: np.ndarray, expected: np.ndarray,
                    min_expected: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """Merge adjacent bins (in order) until each expects at least ``min_expected`` counts,
    so the chi-square approximation holds; a short remainder joins the last bin."""
    merged_obs, merged_exp = [], []
    acc_obs = acc_exp = 0.0
    for o, e in zip(observed, expected):
        acc_obs += o
        acc_exp += e
        if acc_exp >= min_expected:
            merged_obs.append(acc_obs)
            merged_exp.append(acc_exp)
            acc_obs = acc_exp = 0.0
    if acc_exp > 0:
        merged_obs[-1] += acc_obs
        merged_exp[-1] += acc_exp
    return np.array(merged_obs), np.array(merged_exp)


@pytest.fixture
def trace_folder(tmp_path: Path):
    """Write a trace folder from texts (defaults: a small valid trace); returns its path."""
    def make(requests: str | None = GOOD_REQUESTS, adapters: str | None = GOOD_ADAPTERS,
             meta: str | None = GOOD_META, name: str = "trace") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        for file, text in (("requests.csv", requests), ("adapters.csv", adapters),
                           ("meta.json", meta)):
            if text is not None:
                (folder / file).write_text(text)
        return folder
    return make


@pytest.fixture
def run_cli(capsys):
    """Run ``manylora ARGS`` in-process; returns (exit status, stdout, stderr)."""
    def run(*args: str) -> tuple[int, str, str]:
        try:
            status = main([str(a) for a in args])
        except SystemExit as exc:  # argparse errors
            status = exc.code
        out, err = capsys.readouterr()
        return status, out, err
    return run
