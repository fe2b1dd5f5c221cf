"""layer_stats on DTensors: local partial rows + ONE all_gather give the global per-tensor figures.

Gloo on 2 and 4 CPU processes (tests/_dist.py). Each rank builds the same full tensors from a fixed
seed, shards them, and measures them; the parent compares with ``layer_stats`` of the full tensors in
one process.

Tolerance ``EXACT_RTOL = 1e-10`` (test_stats.py): these tensors are small, so both sides take the exact
fp64 path, and the only difference is the grouping of the fp64 sums (shards of rows of 64, merged
across ranks, vs rows of 64 of the whole tensor): at most ~n * eps64 relative for n <= 1e6 terms.
Counts, extremes and zero / non-finite counts are compared exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

from depthinit.stats import layer_stats
from tests._dist import run_distributed
from tests.test_stats import EXACT_RTOL, assert_close_stats

COLLECTIVES = (
    "all_gather_single", "all_gather_into_tensor", "all_gather", "all_reduce", "broadcast", "reduce_scatter_tensor",
    "all_gather_object", "reduce", "gather", "scatter", "all_to_all_single",
)  # fmt: skip


def full_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    bad = r(41, 6) * 4 - 2
    bad[[0, 20, 40], [1, 2, 3]] = torch.tensor([math.nan, math.inf, -math.inf])
    return {
        "shard0_uneven": r(37, 16),
        "shard1": r(8, 33) * 0.1 + 2,
        "replicated": r(50) * 3,
        "tiny_some_ranks_empty": r(1, 5),
        "nonfinite": bad,
        "ln_like": 1 + 1e-4 * r(130, 7),
        "constant": torch.full((12, 4), 0.3),
    }


def placements_1d():
    from torch.distributed.tensor import Replicate, Shard

    return {"shard0_uneven": [Shard(0)], "shard1": [Shard(1)], "replicated": [Replicate()],
            "tiny_some_ranks_empty": [Shard(0)], "nonfinite": [Shard(0)], "ln_like": [Shard(1)],
            "constant": [Shard(0)]}  # fmt: skip


def placements_2d():
    from torch.distributed.tensor import Replicate, Shard

    return {"shard0_uneven": [Replicate(), Shard(0)], "shard1": [Shard(0), Shard(1)],
            "replicated": [Replicate(), Replicate()], "tiny_some_ranks_empty": [Shard(1), Shard(0)],
            "nonfinite": [Shard(1), Replicate()], "ln_like": [Shard(0), Shard(0)],
            "constant": [Replicate(), Shard(1)]}  # fmt: skip


def _count_collectives(monkeypatch_like: dict) -> dict:
    calls = {"n": 0}
    for name in COLLECTIVES:
        fn = getattr(dist, name, None)
        if fn is None:
            continue
        monkeypatch_like[name] = fn

        def counted(*a, __fn=fn, **k):
            calls["n"] += 1
            return __fn(*a, **k)

        setattr(dist, name, counted)
    return calls


def shard(full: torch.Tensor, mesh, placements):
    """This rank's DTensor of ``full`` as ``distribute_tensor`` lays it out (torch.chunk per mesh dimension,
    in order; missing chunks are empty), built with ``from_local`` so that no collective runs."""
    from torch.distributed.tensor import DTensor, Shard

    local = full
    for mesh_dim, (p, c) in enumerate(zip(placements, mesh.get_coordinate())):
        if isinstance(p, Shard):
            chunks = torch.chunk(local, mesh.size(mesh_dim), dim=p.dim)
            local = chunks[c] if c < len(chunks) else local.narrow(p.dim, 0, 0)
    return DTensor.from_local(local.clone(), mesh, placements, run_check=False, shape=full.shape, stride=full.stride())


def _worker(rank: int, world: int, mesh_shape: tuple[int, ...]) -> dict:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Partial

    mesh = init_device_mesh("cpu", mesh_shape)
    places = placements_1d() if len(mesh_shape) == 1 else placements_2d()
    tensors = {k: shard(v, mesh, places[k]) for k, v in full_tensors().items()}
    local_plain = torch.arange(6.0) * (rank + 1)  # a plain tensor: measured locally, never reduced
    tensors["plain"] = local_plain
    saved: dict = {}
    calls = _count_collectives(saved)
    try:
        stats = layer_stats(tensors)
        n_calls = calls["n"]
        module = nn.Module()  # the module path: DTensor parameters
        module.w = nn.Parameter(tensors["shard0_uneven"])
        module.b = nn.Parameter(tensors["replicated"])
        mod_stats = layer_stats(module)
        try:
            layer_stats([DTensor.from_local(torch.ones(3), mesh, [Partial()] * len(mesh_shape))])
            partial_error = ""
        except ValueError as exc:
            partial_error = str(exc)
    finally:
        for name, fn in saved.items():
            setattr(dist, name, fn)
    # numpy, not torch tensors: tensors travel through shared-memory file descriptors that die with this process
    return {"names": stats.names, "data": stats.data.numpy(), "calls": n_calls, "module_names": mod_stats.names,
            "module": mod_stats.data.numpy(), "partial_error": partial_error}  # fmt: skip


def _check(results: list[dict], world: int) -> None:
    full = full_tensors()
    want = layer_stats(full).data.numpy()
    for rank, res in enumerate(results):
        assert res["calls"] == 1, "exactly one collective for all the tensors"
        assert res["names"] == [*full, "plain"]
        assert_close_stats(torch.from_numpy(res["data"][: len(full)]), want, EXACT_RTOL)
        plain = layer_stats([torch.arange(6.0) * (rank + 1)]).data.numpy()
        np.testing.assert_array_equal(res["data"][len(full) :], plain)  # local figure, untouched
        assert res["module_names"] == ["w", "b"]
        assert_close_stats(torch.from_numpy(res["module"]), want[[0, 2]], EXACT_RTOL)
        assert "Partial placement" in res["partial_error"]
        # every rank merged the same gathered rows in the same order: bitwise equal results
        np.testing.assert_array_equal(res["data"][: len(full)], results[0]["data"][: len(full)])
    assert np.isnan(want[:, 1]).sum() == 0  # every reference tensor has finite values


@pytest.mark.slow
@pytest.mark.parametrize("world,mesh_shape", [(2, (2,)), (4, (2, 2))])
def test_sharded_stats_match_single_process(world, mesh_shape):
    results = run_distributed(_worker, world, mesh_shape)
    _check(results, world)
