"""The adapter store: real copies into the pool at the layout's offsets, host copies that follow
the control plane's bounded host tier, prefetches reported back to the scheduler."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine_cases import one_cpu_thread  # noqa: F401 (autouse fixture)
from engine_cases import ZOO, prompts, write_checkpoint, write_zoo
from manylora.engine.adapter_store import AdapterStore, adapter_folders
from manylora.engine.engine import Engine
from manylora.engine.engine_config import EngineConfig
from manylora.engine.model_shape import PoolLayout
from manylora.engine.peft_loader import pack_adapter, read_adapter
from manylora.engine.pool_tensors import PoolTensors
from manylora.engine.sampling import SamplingParams
from manylora.engine.scheduler_config import ControlConfig

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    model_dir, config = write_checkpoint(root, seed=6)
    return model_dir, config, write_zoo(root / "adapters", config)


def test_copy_lands_on_the_assigned_pages_in_every_layer(zoo):
    _, config, folders = zoo
    layout = PoolLayout(config.shape(dtype_bytes=4), tokens_per_page=2)
    store = AdapterStore(config, layout, torch.float32, CPU)
    store.register_all(folders)
    pool = PoolTensors(layout, 2000, torch.float32, CPU)
    adapter = read_adapter(folders[3], config)
    n = layout.adapter_layout(adapter.ranks).num_pages
    pages = np.random.default_rng(0).permutation(2000)[:n]  # scattered, out of order
    store.copy_to_pool(3, pages, pool, blocking=True)
    packed = pack_adapter(adapter, layout, torch.float32)  # [L, n, page_elems]
    for layer in range(config.num_layers):
        torch.testing.assert_close(pool.layer(layer)[torch.from_numpy(pages)], packed[layer])
    untouched = np.setdiff1d(np.arange(2000), pages)
    assert pool.data[:, torch.from_numpy(untouched)].abs().sum() == 0
    # the kernels' per-slot table points at the same offsets
    ranks, a_off, b_off, scales = store.slot_row(3)
    q = next(s for s in layout.adapter_layout(adapter.ranks).slices if s.target == "q")
    assert (ranks[0], a_off[0], b_off[0], scales[0]) == (q.rank, q.a_offset, q.b_offset,
                                                         adapter.scales["q"])


def test_host_copies_follow_the_bounded_host_tier(zoo):
    model_dir, config, folders = zoo
    layout = PoolLayout(config.shape(dtype_bytes=4))
    sizes = sorted(layout.adapter_layout(read_adapter(f, config).ranks).num_elems
                   for f in folders.values())
    budget = 4 * config.num_layers * (sizes[-1] + sizes[-2])  # room for about two adapters
    engine = Engine(model_dir, folders, EngineConfig(control=ControlConfig.from_flat(
        {"pool_pages": 700, "host_cache_bytes": budget, "max_batch_size": 2})))
    ids = [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]
    engine.generate(prompts(np.random.default_rng(0), len(ids), config.vocab_size), ids,
                    SamplingParams(max_tokens=2, ignore_eos=True))
    host = engine.scheduler.residency.host
    assert engine.store.disk_reads == host.disk_reads > len(set(ids))  # re-read after eviction
    assert set(engine.store.host) <= {a for a in folders if a in host}  # nothing the tier dropped
    assert sum(t.numel() * 4 for t in engine.store.host.values()) <= budget * 1.5
    assert all(r.state.value == "finished" for r in engine.requests.values())


def test_prefetch_loads_are_reported_and_used(zoo):
    model_dir, config, folders = zoo
    engine = Engine(model_dir, folders, EngineConfig(control=ControlConfig.from_flat(
        {"pool_pages": 4000, "prefetch": True, "max_batch_size": 1})))
    ids = [0, 1, 2, 6]
    for p, aid in zip(prompts(np.random.default_rng(1), 4, config.vocab_size), ids):
        engine.add_request(p, aid, SamplingParams(max_tokens=3, ignore_eos=True))
    prefetched = []
    while engine.busy:
        record = engine.step()
        prefetched += [load.adapter_id for load in record.plan.loads if not load.blocking]
    assert prefetched  # later requests' adapters were copied ahead of their admission
    assert not engine.scheduler.residency.loading
    assert all(r.state.value == "finished" for r in engine.requests.values())


def test_adapter_folders_from_a_directory_list_or_mapping(zoo, tmp_path):
    _, _, folders = zoo
    root = folders[0].parent
    assert adapter_folders(root) == {i: root / str(i) for i in range(len(ZOO))}
    assert adapter_folders([folders[2], folders[4]]) == {0: folders[2], 1: folders[4]}
    assert adapter_folders({"7": str(folders[1])}) == {7: folders[1]}


@pytest.mark.parametrize("budget, staged", [(None, True), (10**9, False)])
def test_host_tier_is_staged_up_front_only_without_a_budget(zoo, budget, staged):
    """Unbounded: every adapter is in host memory before the first step (as the simulator's
    host tier assumes), so serving reads nothing from disk; bounded: adapters start on disk."""
    model_dir, config, folders = zoo
    engine = Engine(model_dir, folders, EngineConfig(control=ControlConfig.from_flat(
        {"pool_pages": 4000, "host_cache_bytes": budget})))
    engine.stage_host_tier()
    assert set(engine.store.host) == (set(folders) if staged else set())
    reads = engine.store.disk_reads
    engine.generate(prompts(np.random.default_rng(2), 3, config.vocab_size), [0, 1, 2],
                    SamplingParams(max_tokens=2, ignore_eos=True))
    assert (engine.store.disk_reads == reads) is staged
