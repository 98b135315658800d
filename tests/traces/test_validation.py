"""Every kind of bad trace folder or bad argument: one line naming file, row, column and
value (or the parameter), exit status 2, no traceback."""
from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import GOOD_REQUESTS

HEADER = "request_id,arrival_s,adapter_id,prompt_len,output_len\n"


def requests_with(row3: str) -> str:
    """The good requests with data row 2 (spreadsheet row 3) replaced."""
    lines = GOOD_REQUESTS.splitlines(keepends=True)
    lines[2] = row3 + "\n"
    return "".join(lines)


BAD_FOLDERS = {
    "missing column": (dict(requests="request_id,arrival_s,adapter_id,prompt_len\n0,0,0,1\n"),
                       ["requests.csv", "row 1", "missing column 'output_len'"]),
    "unknown column": (dict(requests=HEADER.rstrip() + ",colour\n0,0,0,1,1,red\n"),
                       ["requests.csv", "row 1", "unknown column 'colour'"]),
    "unknown adapters column": (dict(adapters="adapter_id,rank,size\n0,8,1\n1,8,1\n"),
                                ["adapters.csv", "row 1", "unknown column 'size'"]),
    "non-numeric cell": (dict(requests=requests_with("1,0.5,1,abc,6")),
                         ["requests.csv", "row 3", "column prompt_len", "not a number", "'abc'"]),
    "non-numeric arrival": (dict(requests=requests_with("1,soon,1,20,6")),
                            ["requests.csv", "row 3", "column arrival_s", "'soon'"]),
    "empty cell": (dict(requests=requests_with("1,0.5,,20,6")),
                   ["requests.csv", "row 3", "column adapter_id", "empty cell"]),
    "fractional length": (dict(requests=requests_with("1,0.5,1,20.5,6")),
                          ["row 3", "column prompt_len", "not a whole number", "20.5"]),
    "zero output length": (dict(requests=requests_with("1,0.5,1,20,0")),
                           ["requests.csv", "row 3", "column output_len", "must be >= 1",
                            "got 0"]),
    "negative prompt length": (dict(requests=requests_with("1,0.5,1,-3,6")),
                               ["row 3", "column prompt_len", "must be >= 1", "got -3"]),
    "decreasing arrival": (dict(requests=requests_with("1,0.9,1,20,6")),
                           ["requests.csv", "row 4", "column arrival_s", "must not decrease",
                            "row 3 has 0.9", "got 0.75"]),
    "negative arrival": (dict(requests=HEADER + "0,-0.5,0,1,1\n"),
                         ["requests.csv", "row 2", "column arrival_s", "must be >= 0",
                          "got -0.5"]),
    "duplicate request id": (dict(requests=requests_with("0,0.5,1,20,6")),
                             ["requests.csv", "row 3", "column request_id",
                              "duplicate of row 2", "got 0"]),
    "negative request id": (dict(requests=requests_with("-4,0.5,1,20,6")),
                            ["row 3", "column request_id", "must be >= 0"]),
    "adapter id below -1": (dict(requests=requests_with("1,0.5,-2,20,6")),
                            ["row 3", "column adapter_id", "must be >= -1", "got -2"]),
    "adapter missing from adapters.csv": (dict(requests=requests_with("1,0.5,7,20,6")),
                                          ["requests.csv", "row 3", "column adapter_id",
                                           "no such adapter in", "adapters.csv", "got 7"]),
    "rank zero": (dict(adapters="adapter_id,rank\n0,8\n1,0\n"),
                  ["adapters.csv", "row 3", "column rank", "must be >= 1", "got 0"]),
    "duplicate adapter id": (dict(adapters="adapter_id,rank\n0,8\n0,16\n1,4\n"),
                             ["adapters.csv", "row 3", "column adapter_id", "duplicate of row 2"]),
    "alpha not positive": (dict(adapters="adapter_id,rank,alpha\n0,8,0\n1,8,1\n"),
                           ["adapters.csv", "row 2", "column alpha", "must be > 0"]),
    "unknown target": (dict(adapters="adapter_id,rank,targets\n0,8,q;k\n1,8,q;lm_head\n"),
                       ["adapters.csv", "row 3", "column targets", "'lm_head'"]),
    "ragged row": (dict(requests=GOOD_REQUESTS + "4,2.0,1,5,5,9\n"),
                   ["requests.csv", "not a valid CSV table", "line 6"]),
    "empty file": (dict(adapters=""), ["adapters.csv", "row 1", "empty"]),
    "missing requests.csv": (dict(requests=None), ["requests.csv", "no such file"]),
    "missing adapters.csv": (dict(adapters=None), ["adapters.csv", "no such file"]),
    "missing meta.json": (dict(meta=None), ["meta.json", "no such file"]),
    "meta.json not JSON": (dict(meta="{generator: x"), ["meta.json", "not valid JSON"]),
    "meta.json not an object": (dict(meta="[1, 2]"), ["meta.json", "expected a JSON object"]),
    "meta.json without generator": (dict(meta='{"seed": 1}'), ["meta.json", "'generator'"]),
}


@pytest.mark.parametrize("case", BAD_FOLDERS)
def test_bad_trace_folder(case, trace_folder, run_cli):
    files, expected = BAD_FOLDERS[case]
    folder = trace_folder(**files)
    status, out, err = run_cli("trace", "describe", folder)
    assert status == 2, err
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("manylora trace: error: "), err
    for fragment in expected:
        assert fragment in err, (fragment, err)


def test_unreadable_files(tmp_path, trace_folder, run_cli):
    folder = trace_folder()
    (folder / "requests.csv").unlink()
    (folder / "requests.csv").mkdir()  # a folder where a file should be
    status, _, err = run_cli("trace", "describe", folder)
    assert status == 2 and "requests.csv: is a folder" in err
    binary = trace_folder(name="binary", adapters=None)
    (binary / "adapters.csv").write_bytes(b"adapter_id,rank\n0,\xff\xfe\n")
    status, _, err = run_cli("trace", "describe", binary)
    assert status == 2 and "adapters.csv" in err and "UTF-8" in err
    status, _, err = run_cli("trace", "describe", tmp_path / "nowhere")
    assert status == 2 and "no such trace folder" in err
    status, _, err = run_cli("trace", "describe", folder / "meta.json")
    assert status == 2 and "not a folder" in err


BAD_ARGUMENTS = {
    "rate zero": (["--rate", "0"], "GammaArrivals.rate must be a positive finite number, got 0.0"),
    "rate negative poisson": (["--arrivals", "poisson", "--rate", "-2"], "PoissonArrivals.rate"),
    "cv zero": (["--cv", "0"], "GammaArrivals.cv must be a positive finite number"),
    "input range reversed": (["--input-range", "512", "8"],
                             "UniformLengths.input_range must be two whole numbers LO HI"),
    "output range zero": (["--output-range", "0", "5"], "UniformLengths.output_range"),
    "no adapters": (["--num-adapters", "0"], "TraceConfig.num_adapters"),
    "negative count": (["--num-requests", "-5"], "TraceConfig.num_requests"),
    "negative duration": (["--duration", "-1"], "TraceConfig.duration_s"),
    "popularity alpha": (["--alpha", "0"], "SLoRAPopularity.alpha"),
    "zipf exponent": (["--popularity", "zipf", "--alpha", "-1"], "ZipfPopularity.exponent"),
    "bad ranks": (["--ranks", "8,x"], "--ranks: 'x' is not a whole number"),
    "rank zero": (["--ranks", "0,8"], "CycleRanks.ranks"),
    "bad mix": (["--ranks", "8:0.5,16"], "--ranks: expected A:B,C:D"),
    "bad lora alpha": (["--lora-alpha", "big"], "--lora-alpha: 'big' is not a number"),
    "bad targets": (["--targets", "q;foo"], "unknown LoRA target module 'foo'"),
    "schedule missing": (["--arrivals", "schedule"], "--arrivals schedule needs --rate-schedule"),
    "schedule bad": (["--arrivals", "schedule", "--rate-schedule", "5:1"],
                     "ScheduleArrivals.pieces"),
    "bursts missing": (["--arrivals", "bursts"], "--arrivals bursts needs --burst"),
    "unknown length source": (["--lengths", "resample", "--length-source", "nope.csv"],
                              "nope.csv: no such file"),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_bad_generate_arguments(case, tmp_path, run_cli):
    args, expected = BAD_ARGUMENTS[case]
    status, out, err = run_cli("trace", "generate", "-o", tmp_path / "t", *args)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("args, expected", [
    (["--rate", "fast"], "argument --rate: invalid float value: 'fast'"),
    (["--duration", "5", "--num-requests", "3"], "not allowed with argument"),
    (["--popularity", "pareto"], "invalid choice: 'pareto'"),
])
def test_argparse_rejects_malformed_arguments(args, expected, run_cli):
    status, out, err = run_cli("trace", "generate", *args)
    assert status == 2 and expected in err and "Traceback" not in err


def test_bad_import_arguments(tmp_path, run_cli):
    out = tmp_path / "t"
    cases = [(["azure-code", "--window", "10", "5"], "AzureImportConfig.window_s"),
             (["azure-code", "--rate-scale", "0"], "AzureImportConfig.rate_scale"),
             (["azure-code", "--window", "90000", "90001"], "holds no request"),
             ([tmp_path / "missing.csv"], "missing.csv: no such file")]
    for args, expected in cases:
        status, _, err = run_cli("trace", "import-azure", *args, "-o", out)
        assert status == 2 and expected in err and len(err.strip().splitlines()) == 1, err


def test_no_traceback_from_the_installed_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "manylora.analysis.cli", "trace", "describe",
                             str(tmp_path / "absent")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == f"manylora trace: error: {tmp_path / 'absent'}: no such trace folder\n"
