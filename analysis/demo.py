"""``manylora demo``: the README's main job, end to end, in a few minutes on a laptop CPU.

1. capacity of the tiny model's deployment under the shipped profile (simulated probes);
2. Gamma traces over ``num_adapters`` (1,000 by default) adapters, simulated for several
   admission policies across request rates (and across burstiness at one rate): every run
   folder under ``sim/``, all of them scored into ``sweep.csv`` (one row per SLO scale) and
   ``goodput.csv``;
3. SLO figures: attainment vs rate, vs cv, vs SLO scale, and pool occupancy of one run;
4. a tiny random model and the PEFT adapters one trace uses, that trace replayed on the real
   engine and simulated over the same pool, compared (``validation/report.md``);
5. ``report.md`` tying it together.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from manylora.analysis.capacity import CapacityConfig, measure_capacity
from manylora.analysis.compare import CompareConfig, Comparison, compare_runs
from manylora.analysis.demo_config import DemoConfig
from manylora.analysis.experiment import Deployment, requests_frame
from manylora.analysis.goodput import goodput_table
from manylora.analysis.outputs import write_csv
from manylora.analysis.plot_specs import SWEEP_PLOTS
from manylora.analysis.plots_run import plot_pool_occupancy
from manylora.analysis.plots_sweep import plot_sweep
from manylora.analysis.report import figure_links, markdown_table
from manylora.analysis.run_folder import read_run
from manylora.analysis.style import save_figure
from manylora.analysis.sweep_table import point_from_meta, sweep_rows
from manylora.engine.engine_config import EngineConfig
from manylora.engine.make_tiny import write_model
from manylora.engine.profiler import hardware_info
from manylora.engine.replay import ReplayConfig, materialize_adapters, replay_trace_fresh
from manylora.engine.tiny_spec import TinyModelSpec
from manylora.simulator.cost_model import fitted_cost_model, shipped_profile_path
from manylora.simulator.profile_file import read_profile
from manylora.traces import write_trace
from manylora.traces.atomic_io import atomic_write_text

Log = Callable[[str], None]


@dataclass(frozen=True)
class DemoResult:
    report: Path
    sweep: pd.DataFrame
    goodput: pd.DataFrame
    validation: Comparison
    capacity_rps: float


def _points(config: DemoConfig, capacity: float) -> list[tuple[float, float]]:
    """(rate, cv) of every simulated point: the rate sweep at ``cv``, the cv sweep at
    ``cv_load``; a point in both is simulated once."""
    points = [(load * capacity, config.cv) for load in config.loads]
    points += [(config.cv_load * capacity, cv) for cv in config.cvs]
    return list(dict.fromkeys(points))


def _sweep(config: DemoConfig, setup: Deployment, capacity: float, out: Path,
           log: Log) -> tuple[pd.DataFrame, dict[tuple[str, float, float], Path]]:
    """Simulate every policy at every point; score each run. Returns the sweep table and the
    run folder of each (policy, rate, cv)."""
    rows, runs = [], {}
    for rate, cv in _points(config, capacity):
        trace = config.trace(rate, cv)
        for policy in config.policies:
            deployment = setup.with_control(queue=policy, slo_ttft_s=config.slo.ttft_s)
            path = deployment.simulate_run(trace, out / "sim" / f"{policy}-rate{rate:.3g}-cv{cv:g}",
                                           config.seed)
            run = read_run(path)
            runs[policy, rate, cv] = path
            rows.append(sweep_rows(run.requests, point_from_meta(run.meta, path, policy),
                                   config.slo, config.slo_scales))
        log(f"simulated {len(config.policies)} policies at {rate:.3g} req/s, cv {cv:g} "
            f"({trace.num_requests} requests)")
    return pd.concat(rows, ignore_index=True), runs


FIGURE_CAPTIONS = {
    "attainment-vs-rate": "SLO attainment vs request rate, per admission policy",
    "attainment-vs-cv": "SLO attainment vs burstiness (cv of arrival gaps) at capacity",
    "attainment-vs-slo-scale": "SLO attainment vs SLO scale at the highest rate",
    "pool_occupancy": "Pool pages held by KV cache and adapters over the busiest run (FCFS)",
}


def _figures(config: DemoConfig, sweep: pd.DataFrame, capacity: float,
             busiest_run: Path, out: Path) -> list[str]:
    at_cv = sweep[np.isclose(sweep["cv"], config.cv)]
    at_cv_load = sweep[np.isclose(sweep["rate"], config.cv_load * capacity)]
    busiest = at_cv[np.isclose(at_cv["rate"], max(config.loads) * capacity)]
    made = [("attainment-vs-rate", at_cv), ("attainment-vs-cv", at_cv_load),
            ("attainment-vs-slo-scale", busiest)]
    names = []
    for name, table in made:
        if table[SWEEP_PLOTS[name].x].nunique() > 1:
            save_figure(plot_sweep(table, SWEEP_PLOTS[name]), out / "figures", name)
            names.append(name)
    save_figure(plot_pool_occupancy(read_run(busiest_run)), out / "figures", "pool_occupancy")
    return names + ["pool_occupancy"]


def _validation(config: DemoConfig, setup: Deployment, engine: EngineConfig, capacity: float,
                out: Path, log: Log) -> Comparison:
    """One trace on the engine and in the simulator, over the same pool."""
    folder = out / "validation"
    model = out / "model"
    model_config = write_model(model, TinyModelSpec(), config.seed)
    trace = config.trace(config.replay_load * capacity, config.cv,
                         num_requests=config.replay_requests)
    write_trace(trace, folder / "trace")
    used = sorted(int(a) for a in np.unique(trace.column("adapter_id")) if a >= 0)
    materialize_adapters(trace, used, model_config, model / "adapters", config.seed)
    log(f"replaying {trace.num_requests} requests over {len(used)} adapters on the engine ...")
    replay_trace_fresh(folder / "trace", model, model / "adapters", folder / "engine",
                       setup.engine_config(engine), ReplayConfig(seed=config.seed))
    setup.simulate_run(trace, folder / "sim", config.seed)
    return compare_runs(read_run(folder / "engine"), read_run(folder / "sim"),
                        folder / "compare", CompareConfig(slo=config.slo,
                                                          labels=("engine", "simulator")),
                        setup.cost_model)


def _machine(hardware: dict) -> str:
    name = hardware.get("device_name") or hardware.get("cpu_model") or "an unnamed machine"
    return (f"{name} ({hardware.get('device', 'cpu')}, {hardware.get('cpu_affinity', '?')} "
            f"usable cores, {hardware.get('torch_threads', '?')} torch threads)")


def _profile_note(profile: Path, measured_on: dict, here: dict) -> str:
    """Where the profile was measured and where the engine just ran: the comparison below
    checks the simulator against this machine's engine only when the two are the same."""
    same = all(measured_on.get(k) == here.get(k) for k in ("device", "cpu_model", "cpu_affinity"))
    note = (f"The cost model is fitted from `{profile.name}`, measured on {_machine(measured_on)}; "
            f"the engine replay below ran on {_machine(here)}.")
    if same:
        return note
    return note + (" The machines differ, so the engine's speed can too and the comparison "
                   "below measures how well the profile carries over, not the simulator: "
                   "profile this machine (`manylora profile --model DIR -o profile.json`, "
                   "e.g. on the demo's `model/`) and pass `--profile profile.json` to compare "
                   "like with like.")


def _report(config: DemoConfig, profile: Path, capacity: float, goodput: pd.DataFrame,
            figures: list[str], validation: Comparison, profile_note: str) -> str:
    fidelity = validation.fidelity.assign(rel_error_pct=validation.fidelity["rel_error"] * 100)
    return "\n".join([
        "# manylora demo", "",
        f"Simulated capacity of the tiny model under profile `{profile.name}`: "
        f"{capacity:.3g} req/s. "
        f"Workload: Gamma arrivals over {config.num_adapters} adapters (S-LoRA popularity, "
        f"alpha {config.alpha:g}), prompts {config.prompt_range[0]}-{config.prompt_range[1]} "
        f"and outputs {config.output_range[0]}-{config.output_range[1]} tokens, "
        f"{config.duration_s:g} s per run. SLO: first token within {config.slo.ttft_s:g} s.",
        "", "## Goodput (highest rate with >= 90% SLO attainment)", "",
        markdown_table(goodput), "", "## Figures", "",
        figure_links([f"figures/{n}" for n in figures], [FIGURE_CAPTIONS[n] for n in figures]),
        "",
        "## Simulator vs engine on one trace", "", profile_note, "",
        markdown_table(fidelity[["metric", "A", "B", "rel_error_pct", "within_tolerance"]]),
        "", "A = engine replay, B = simulation of the same trace. Full comparison: "
        "[validation/compare/report.md](validation/compare/report.md). Every simulated run "
        "folder is under `sim/`; `sweep.csv` scores all of them.", "",
    ])


def run_demo(out_dir: str | Path, config: DemoConfig = DemoConfig(),
             engine: EngineConfig = EngineConfig(), profile: str | Path | None = None,
             log: Log = lambda message: None) -> DemoResult:
    """Run the demo (module docstring) into ``out_dir``, simulating with ``profile`` (default:
    the profile shipped with manylora). ``engine.threads`` 0 replays on the thread count the
    profile was measured with."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    profile_path = Path(profile) if profile is not None else shipped_profile_path()
    recorded = read_profile(profile_path)
    if not engine.threads and recorded.hardware.get("torch_threads"):
        # replay on as many threads as the profile was measured with, so that they compare
        engine = replace(engine, threads=int(recorded.hardware["torch_threads"]))
    setup = Deployment.for_engine(fitted_cost_model(profile_path), recorded.model, engine)
    probes = CapacityConfig(busy_s=min(120.0, config.duration_s), min_requests=100)
    estimate = measure_capacity(
        lambda rate, n: requests_frame(setup.simulate(config.trace(rate, 1.0,
                                                                   num_requests=n)).requests),
        replace(probes, start_rps=0.5))
    capacity = estimate.capacity_rps
    log(f"simulated capacity: {capacity:.3g} req/s")
    sweep, runs = _sweep(config, setup, capacity, out, log)
    write_csv(sweep, out / "sweep.csv")
    at_one = sweep[np.isclose(sweep["slo_scale"], 1.0) & np.isclose(sweep["cv"], config.cv)]
    goodput = goodput_table(at_one, by=["policy"])
    write_csv(goodput, out / "goodput.csv")
    busiest = runs[config.policies[0], max(config.loads) * capacity, config.cv]
    figures = _figures(config, sweep, capacity, busiest, out)
    validation = _validation(config, setup, engine, capacity, out, log)
    here = {**hardware_info(torch.device(engine.device)),
            "torch_threads": engine.threads or torch.get_num_threads()}
    note = _profile_note(profile_path, recorded.hardware, here)
    report = atomic_write_text(out / "report.md",
                               _report(config, profile_path, capacity, goodput, figures,
                                       validation, note))
    return DemoResult(report, sweep, goodput, validation, capacity)
