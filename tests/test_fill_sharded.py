"""Sharded fills on gloo (2 and 4 processes): every sharding gives exactly the slice of the unsharded fill.

One spawned function per world size runs every case on one process group (DTensor ``Shard(0)``,
``Shard(1)``, ``Shard(d)`` of a 3-D tensor, ``Replicate``, uneven and empty shards, 2-D meshes, FSDP2
``fully_shard``, and weights of 2M elements compared on each rank with its own unsharded fill) and sends back,
per case, each rank's local shard and geometry and the gathered full tensor.
The parent compares them with the single-process fill on the same backend, exactly: every rank computes the
same fp32 ops on the same values as the single process, so not one bit may differ (the C kernel and the
Triton interpreter differ from each other by a few ulp in ``log/cos/sin``; test_fill_kernel.py bounds that).
"""

from __future__ import annotations

import math

import pytest
import torch

from depthinit import rng
from depthinit.fill import fill_tensors
from depthinit.kernels.contract import DIST_CONSTANT, DIST_NORMAL, DIST_TRUNC_NORMAL, DIST_UNIFORM, FillRow
from tests._dist import run_distributed

SEED = 987654321
DISTS = [DIST_NORMAL, DIST_UNIFORM, DIST_TRUNC_NORMAL, DIST_CONSTANT]


def _row(dist: int, stream: int) -> FillRow:
    return FillRow(dist, mean=0.1, std=0.7, low=-0.9, high=1.3, stream=stream)


def _cases(world: int) -> list[tuple[str, tuple, tuple, tuple, str]]:
    """(name, global shape, mesh shape, placements as (kind, dim) pairs, backend)."""
    cases = [
        ("shard0", (10, 6), (world,), (("S", 0),), "auto"),
        ("shard0_uneven", (world * 2 + 1, 3), (world,), (("S", 0),), "auto"),
        ("shard0_empty_ranks", (world - 1, 5), (world,), (("S", 0),), "auto"),
        ("shard1", (5, 2 * world + 3), (world,), (("S", 1),), "auto"),
        ("shard1_3d", (3, world + 1, 4), (world,), (("S", 1),), "auto"),
        ("shard2_3d", (3, 4, 2 * world + 1), (world,), (("S", 2),), "auto"),
        ("shard_neg_dim", (4, 2 * world + 1), (world,), (("S", -1),), "auto"),
        ("replicate", (7, 3), (world,), (("R", 0),), "auto"),
    ]
    if world == 2:  # the kernel (Triton interpreter) on DTensor shards: fast and general paths
        cases += [
            ("shard1_interpreter", (6, 2 * world + 1), (world,), (("S", 1),), "triton"),
            ("shard0_interpreter", (2 * world + 1, 5), (world,), (("S", 0),), "triton"),
        ]
    if world == 4:
        cases += [
            ("mesh2d_shard0_shard0", (9, 4), (2, 2), (("S", 0), ("S", 0)), "auto"),
            ("mesh2d_shard1_replicate", (3, 7), (2, 2), (("S", 1), ("R", 0)), "auto"),
        ]
    return cases


def _np(t: torch.Tensor):
    """A NumPy copy: tensors sent through torch.multiprocessing's queue are shared through file descriptors
    that die with the worker process, so results travel as plain arrays."""
    return t.detach().cpu().numpy().copy()


LARGE_SHAPE = (2000, 1024)  # 2M elements: each rank's shard spans many work units of the C kernel and both threads


def _large_cases(rank: int, world: int, mesh) -> dict:
    """Each rank fills DTensor shards of a 2M-element weight (uneven Shard(0), Shard(1)) and compares them with its
    own unsharded fill; returns per case (differing elements, local elements) as plain ints. (Before the single
    CPU path, a 2000 x 1000 weight on 2 gloo ranks differed from the single-process fill in 431,378 elements:
    each rank's half took another code path.)"""
    from torch.distributed.tensor import Shard, distribute_tensor

    out = {}
    for dist in (DIST_NORMAL, DIST_TRUNC_NORMAL):
        row = FillRow(dist, std=0.02, low=-0.04, high=0.04, stream=rng.stream_id(f"large.{dist}"))
        uneven = (LARGE_SHAPE[0] + 3, LARGE_SHAPE[1])
        for name, shape, dim in (("shard0_uneven", uneven, 0), ("shard1", LARGE_SHAPE, 1)):
            dt = distribute_tensor(torch.empty(shape), mesh, [Shard(dim)])
            fill_tensors([dt], [row], SEED)
            whole = torch.empty(shape)
            fill_tensors([whole], [row], SEED)
            local = dt.to_local()
            size = -(-shape[dim] // world)  # torch's chunking: ceil-sized shards, the last one shorter
            expected = whole.narrow(dim, min(rank * size, shape[dim]), local.shape[dim])
            out[(name, dist)] = (int((local != expected).sum()), local.numel())
    return out


def _worker(rank: int, world: int) -> dict:
    from torch import nn
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    from depthinit.distributed import local_geometry

    meshes: dict = {}
    out: dict = {"cases": {}, "errors": {}}
    for name, shape, mesh_shape, placements, backend in _cases(world):
        mesh = meshes.setdefault(mesh_shape, init_device_mesh("cpu", mesh_shape))
        pl = [Shard(d) if kind == "S" else Replicate() for kind, d in placements]
        for dist in DISTS:
            dt = distribute_tensor(torch.zeros(shape), mesh, pl)
            row = _row(dist, stream=rng.stream_id(f"{name}.{dist}"))
            fill_tensors([dt], [row], SEED, backend=backend)
            out["cases"][(name, dist)] = (row, _np(dt.to_local()), local_geometry(dt), _np(dt.full_tensor()))

    out["large"] = _large_cases(rank, world, meshes[(world,)])

    # two different tensor dims sharded: a clear NotImplementedError
    if world == 4:
        dt = distribute_tensor(torch.zeros(4, 4), meshes[(2, 2)], [Shard(0), Shard(1)])
        try:
            fill_tensors([dt], [_row(DIST_NORMAL, 1)], SEED)
        except NotImplementedError as err:
            out["errors"]["two_dims"] = str(err)

    # FSDP2: fill the sharded parameters of a small model, then run it (all-gathers the filled shards)
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 2 * world + 1), nn.ReLU(), nn.Linear(2 * world + 1, 5))
    fully_shard(model, mesh=meshes[(world,)])
    names = [n for n, _ in model.named_parameters()]
    rows = [_row(DIST_UNIFORM if n.endswith("bias") else DIST_NORMAL, rng.stream_id(n)) for n in names]
    fill_tensors([p for _, p in model.named_parameters()], rows, SEED)
    x = torch.linspace(-1, 1, 3 * 12).reshape(3, 12)
    out["fsdp"] = {
        "names": names,
        "rows": rows,
        "full": [_np(p.full_tensor()) for _, p in model.named_parameters()],
        "y": _np(model(x)),
        "x": _np(x),
    }
    return out


def _single_process(shape, row: FillRow, backend: str) -> torch.Tensor:
    t = torch.empty(shape)
    fill_tensors([t], [row], SEED, backend=backend)
    return t


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 4])
def test_sharded_fills_equal_the_unsharded_fill(world):
    results = run_distributed(_worker, world)
    cases = {name: (shape, backend) for name, shape, _, _, backend in _cases(world)}
    for (name, dist), (row, _, _, full) in results[0]["cases"].items():
        shape, backend = cases[name]
        expected = _single_process(shape, row, backend).reshape(-1)
        assert torch.equal(torch.from_numpy(full).reshape(-1), expected), f"{name} {dist}: gathered != single fill"
        for rank, res in enumerate(results):
            _, local, geo, _ = res["cases"][(name, dist)]
            assert geo.local_numel == local.size
            own = expected[geo.global_index(torch.arange(local.size))]
            assert torch.equal(torch.from_numpy(local).reshape(-1), own), f"{name} {dist}: rank {rank} shard differs"
    # uneven and empty shards really occurred
    sizes = [r["cases"][("shard0_empty_ranks", DIST_NORMAL)][1].size for r in results]
    assert 0 in sizes and sum(sizes) == math.prod(cases["shard0_empty_ranks"][0])
    if world == 4:
        assert "several tensor dimensions" in results[0]["errors"]["two_dims"]
    for key in results[0]["large"]:  # 2M-element weights: not one bit differs from the unsharded fill
        assert [res["large"][key][0] for res in results] == [0] * world, f"{key}: differing elements per rank"
        shape = (LARGE_SHAPE[0] + 3, LARGE_SHAPE[1]) if key[0] == "shard0_uneven" else LARGE_SHAPE
        assert sum(res["large"][key][1] for res in results) == math.prod(shape) >= 2_000_000

    fsdp = results[0]["fsdp"]
    hidden = 2 * world + 1
    ref_model = torch.nn.Sequential(torch.nn.Linear(12, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 5))
    params = [p for _, p in ref_model.named_parameters()]
    fill_tensors(params, fsdp["rows"], SEED)
    for name, p, full in zip(fsdp["names"], params, fsdp["full"]):
        assert torch.equal(torch.from_numpy(full), p.detach()), f"FSDP parameter {name} != the unsharded fill"
    with torch.no_grad():  # the forward pass all-gathers the filled shards: FSDP's own storage holds the values
        torch.testing.assert_close(torch.from_numpy(fsdp["y"]), ref_model(torch.from_numpy(fsdp["x"])), rtol=0, atol=0)

