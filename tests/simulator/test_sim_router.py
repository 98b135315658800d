"""Routing policies on hand-built replica states, and the simulator's torch-free imports."""
from __future__ import annotations

import subprocess
import sys

import pytest

from sim_cases import SMALL_SHAPE, run_sim, small_trace
from manylora.engine.catalog import AdapterCatalog, AdapterSpec
from manylora.engine.model_shape import PoolLayout
from manylora.engine.request import Request
from manylora.engine.scheduler import build_scheduler
from manylora.engine.scheduler_config import ControlConfig
from manylora.simulator.router import ROUTERS


def _replicas(n: int = 3):
    layout = PoolLayout(SMALL_SHAPE, 1)
    catalog = AdapterCatalog(layout, [AdapterSpec(i, {"q": 8}, 16.0) for i in range(4)])
    config = ControlConfig.from_flat({"pool_pages": 4000})
    return [build_scheduler(config, layout, catalog) for _ in range(n)]


def test_round_robin_takes_turns() -> None:
    router, replicas = ROUTERS["round-robin"](), _replicas()
    picks = [router.choose(Request(i, 0.0, -1, 4, 4), replicas) for i in range(7)]
    assert picks == [0, 1, 2, 0, 1, 2, 0]


def test_least_outstanding_balances_waiting_plus_running() -> None:
    router, replicas = ROUTERS["least-outstanding"](), _replicas()
    replicas[0].add_request(Request(90, 0.0, -1, 4, 4), 0.0)
    replicas[0].add_request(Request(91, 0.0, -1, 4, 4), 0.0)
    replicas[1].add_request(Request(92, 0.0, -1, 4, 4), 0.0)
    assert router.choose(Request(0, 0.0, -1, 4, 4), replicas) == 2
    replicas[2].add_request(Request(93, 0.0, -1, 4, 4), 0.0)
    assert router.choose(Request(1, 0.0, -1, 4, 4), replicas) == 1  # tie 1 vs 2: lower index


def test_adapter_affinity_prefers_replicas_holding_the_adapter() -> None:
    router, replicas = ROUTERS["adapter-affinity"](), _replicas()
    replicas[2].add_request(Request(90, 0.0, 3, 4, 4), 0.0)
    replicas[2].complete(replicas[2].schedule(0.0), 1.0)  # adapter 3 now in replica 2's pool
    replicas[2].add_request(Request(91, 0.0, -1, 4, 4), 1.0)  # and it is the busiest
    assert router.choose(Request(0, 1.0, 3, 4, 4), replicas) == 2
    assert router.choose(Request(1, 1.0, 1, 4, 4), replicas) == 0  # nobody holds 1


@pytest.mark.parametrize("router", list(ROUTERS))
def test_every_router_spreads_a_busy_trace(router) -> None:
    result, _ = run_sim(small_trace(n=200, seed=9), {"max_batch_size": 4}, replicas=3,
                        router=router)
    counts = [sum(r.replica == i for r in result.requests) for i in range(3)]
    assert sum(counts) == 200 and min(counts) > 0


def test_simulator_imports_without_torch() -> None:
    program = ("import sys; sys.modules['torch'] = None\n"
               "import manylora.simulator.simulation, manylora.simulator.cli\n"
               "import manylora.simulator.commands\n"
               "import manylora.simulator.queueing_cost_models\n"
               "assert not [m for m in sys.modules if m.startswith(('torch.', 'triton'))]\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
