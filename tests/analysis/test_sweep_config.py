"""Sweep files: parsing, every kind of bad input named precisely, grid expansion order and
stable point ids."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from manylora.analysis.sweep_config import SweepConfigError, load_sweep_config
from manylora.analysis.sweep_grid import expand_grid, point_id
from manylora.analysis.sweep_options import SWEEP_OPTION_NAMES, SimulateOptions

ROOFLINE = """
[options]
hardware = "a100-80gb"
model-shape = "llama-2-7b"
pool-pages = 20000
"""

GRID = ROOFLINE + """
[workload]
duration_s = 30
[policies]
fcfs = {queue = "fcfs"}
abort = {queue = "early-abort", abort-margin = 0.25}
[grid]
seed = [0, 1]
cv = [1, 4]
rate = [2.0, 8.0]
num_adapters = 50
max-batch-adapters = [0, 4]
[metrics]
slo_scales = [0.5, 1.0, 2.0]
warmup_frac = 0.1
[[plots]]
figure = "attainment-vs-rate"
where = ["cv=1"]
"""


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def expand(path: Path):
    config = load_sweep_config(path, SWEEP_OPTION_NAMES)
    return config, expand_grid(config, SimulateOptions(path.parent))


def test_grid_expands_in_table_order_with_canonical_options(tmp_path):
    config, tasks = expand(write(tmp_path, GRID))
    assert config.name == "sweep" and config.num_points == len(tasks) == 2 * 2 * 2 * 2 * 2
    assert config.extra_axes == ("max_batch_adapters",)
    first, second = tasks[0], tasks[1]
    assert first.keys == {"policy": "fcfs", "rate": 2.0, "cv": 1.0, "num_adapters": 50,
                          "alpha": 1.0, "seed": 0, "max_batch_adapters": 0}
    assert second.keys["seed"] == 1                       # seed is the innermost axis
    assert tasks[16].keys["policy"] == "abort"             # policies are the outermost
    assert [t.index for t in tasks] == list(range(32))
    abort = tasks[16]
    assert abort.control.queue.queue == "early-abort"
    assert abort.control.queue.abort_margin_s == 0.25
    assert abort.control.memory.pool_pages == 20000
    assert tasks[1 + 2].control.queue.max_batch_adapters == 4
    assert first.trace.arrivals.rate == 2.0 and first.trace.duration_s == 30
    assert first.simulate == {"hardware": "a100-80gb", "model_shape": "llama-2-7b"}
    assert first.metrics.slo_scales == (0.5, 1.0, 2.0)
    assert first.metrics.window.warmup_frac == 0.1
    assert len({t.point_id for t in tasks}) == 32


def test_poisson_cv_and_zipf_exponent_fill_the_keys(tmp_path):
    text = ROOFLINE + """
[workload]
arrivals = "poisson"
popularity = "zipf"
num_requests = 100
[grid]
rate = [1.0]
alpha = [0.5, 1.5]
"""
    config, tasks = expand(write(tmp_path, text))
    assert [t.keys["cv"] for t in tasks] == [1.0, 1.0]
    assert [t.trace.popularity.exponent for t in tasks] == [0.5, 1.5]
    assert [t.keys["alpha"] for t in tasks] == [0.5, 1.5]
    assert tasks[0].keys["policy"] == "default" and tasks[0].keys["num_adapters"] == 200
    assert tasks[0].trace.num_requests == 100 and tasks[0].trace.duration_s is None


def test_uniform_popularity_leaves_alpha_empty(tmp_path):
    _, tasks = expand(write(tmp_path, ROOFLINE + '[workload]\npopularity = "uniform"\n'))
    assert math.isnan(tasks[0].keys["alpha"])


def test_point_ids_are_canonical_and_change_with_what_decides_the_result(tmp_path):
    _, base = expand(write(tmp_path, GRID))
    # 2 and 2.0, key order, and a profile-free rewrite of the same options: same ids
    same = GRID.replace("rate = [2.0, 8.0]", "rate = [2, 8]").replace(
        'fcfs = {queue = "fcfs"}', 'fcfs = {queue = "fcfs", kv-reservation = "lookahead"}')
    _, again = expand(write(tmp_path, same, "same.toml"))
    assert [t.point_id for t in again] == [t.point_id for t in base]
    changes = [("slo_scales = [0.5, 1.0, 2.0]", "slo_scales = [0.5, 1.0, 3.0]"),
               ("warmup_frac = 0.1", "warmup_frac = 0.2"),
               ("pool-pages = 20000", "pool-pages = 30000"),
               ("duration_s = 30", "duration_s = 40"),
               ('model-shape = "llama-2-7b"', 'model-shape = "llama-2-13b"'),
               ("abort-margin = 0.25", "abort-margin = 0.5"),
               ('abort = {queue', 'early = {queue')]
    for old, new in changes:
        _, other = expand(write(tmp_path, GRID.replace(old, new), "changed.toml"))
        changed = {t.point_id for t in other} - {t.point_id for t in base}
        # the abort-margin and policy-name changes touch only the abort policy's 16 points
        assert len(changed) == (16 if "abort" in old else 32), old
    assert point_id({"a": 1, "b": [1.0, 2.5]}) == point_id({"b": [1, 2.5], "a": 1.0})


def test_point_ids_do_not_depend_on_the_process(tmp_path):
    path = write(tmp_path, GRID)
    code = ("import sys; from manylora.analysis.sweep_config import load_sweep_config; "
            "from manylora.analysis.sweep_grid import expand_grid; "
            "from manylora.analysis.sweep_options import SWEEP_OPTION_NAMES, SimulateOptions; "
            f"c = load_sweep_config({str(path)!r}, SWEEP_OPTION_NAMES); "
            "print(','.join(t.point_id for t in expand_grid(c, SimulateOptions('.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONHASHSEED": "12345"}).stdout
    _, tasks = expand(path)
    assert out.strip() == ",".join(t.point_id for t in tasks)


BAD = [
    ('colour = "red"\n', "colour: unknown key"),
    ("[grid]\nrate = [1.0, 1.0]\n", "[grid] rate = [1.0, 1.0]: an axis value is repeated"),
    ("[grid]\nrate = []\n", "[grid] rate = []: an axis needs at least one value"),
    ("[grid]\nrate = [-1.0]\n", "grid point policy=default, rate=-1.0: GammaArrivals.rate"),
    ("[grid]\nqueue = [\"fifo\"]\n", "grid point policy=default, queue='fifo': option queue: "
                                     "unknown 'fifo'"),
    ("[grid]\nwarp-speed = [1]\n", "[grid]: unknown option 'warp-speed'"),
    ('[policies.a]\nqueue = "lifo"\n[grid]\nqueue = ["fcfs"]\n',
     "this option is also set in [policies.a]"),
    ('[policies.a]\npool-pages = 10\n', "[policies.a] pool-pages = 10: this option is also "
                                        "set in [options]"),
    ('[workload]\narrivals = "poisson"\n[grid]\ncv = [2.0]\n',
     "[grid] cv: the arrivals model 'poisson' has no cv to sweep"),
    ('[workload]\narrivals = "gamma"\nspeed = 3\n', "[workload] speed: unknown key"),
    ('[workload]\nlengths = {name = "uniform", input_range = [0, 5]}\n',
     "[workload]: UniformLengths.input_range must be"),
    ("[metrics]\nslo_scales = [0.0]\n", "[metrics]: MetricsSpec.slo_scales"),
    ("[metrics]\nttft_slo_s = -1\n", "[metrics]: SLO.ttft_s"),
    ('[[plots]]\nfigure = "pie"\n', "[[plots]] #1: PlotSpec.figure: unknown 'pie'"),
    ('[[plots]]\nfigure = "attainment-vs-cv"\nmetric = "joy"\n', "PlotSpec.metric: unknown"),
    ('[[plots]]\nwhere = ["cv=1"]\n', "[[plots]] #1: missing key figure"),
    ('[grid]\nmax-batch-adapters = [1, 4]\n[[plots]]\nfigure = "attainment-vs-rate"\n'
     'x = "max-batch"\n', "[[plots]] #1: x = 'max-batch' is not a key column of this sweep's "
     "table; choose one of policy, rate, cv, num_adapters, alpha, seed, slo_scale, "
     "max_batch_adapters"),
    ('[workload]\ncatalog = {rnaks = "cycle"}\n', "[workload] catalog = {'rnaks': 'cycle'}"),
    ('[workload]\ncatalog = {ranks = [8]}\n', "catalog.ranks = [8]: expected a name"),
    ("[workload]\nduration_s = 10\nnum_requests = 5\n", "give duration_s or num_requests"),
    ('[grid]\nreplicas = ["4"]\n', "grid point policy=default, replicas='4': simulation"),
    ('[grid]\nrouter = ["random"]\n', "SimulationConfig.router: unknown 'random'"),
    ("keep_runs = 1\n", "keep_runs = 1: expected true or false"),
    ("[grid\n", "not valid TOML"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m for _, m in BAD])
def test_bad_sweep_files_name_key_and_value(tmp_path, text, message):
    path = write(tmp_path, text + ROOFLINE)
    with pytest.raises(SweepConfigError) as error:
        expand(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_roofline_without_pool_pages_is_refused_before_running(tmp_path):
    path = write(tmp_path, '[options]\nhardware = "a100-80gb"\nmodel-shape = "llama-2-7b"\n')
    with pytest.raises(SweepConfigError, match="pool size is unknown"):
        expand(path)


def test_missing_file(tmp_path):
    with pytest.raises(SweepConfigError, match="no such sweep file"):
        load_sweep_config(tmp_path / "nope.toml", SWEEP_OPTION_NAMES)
