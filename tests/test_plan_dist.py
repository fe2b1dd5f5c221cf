"""Distributed faults: ranks whose models differ get one clear error each instead of a hang."""

import pytest
import torch
from torch import nn

import depthinit as di
from tests._dist import run_distributed


def _mismatched_plan(rank: int, world: int) -> str:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (world,))
    width = 8 if rank == 0 else 12  # rank 0 built a different model
    model = nn.Linear(width, width, bias=False)
    model.weight = nn.Parameter(distribute_tensor(model.weight.detach(), mesh, [Shard(0)]))
    try:
        di.init_(model, "he", seed=0)
    except RuntimeError as e:
        return str(e)
    return "no error"


def _matching_plan(rank: int, world: int) -> list:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (world,))
    model = nn.Linear(8, 8, bias=False)
    model.weight = nn.Parameter(distribute_tensor(model.weight.detach(), mesh, [Shard(0)]))
    di.init_(model, "he", seed=3)
    return model.weight.full_tensor().tolist()


@pytest.mark.slow
def test_mismatched_plans_fail_on_every_rank_with_the_same_message():
    msgs = run_distributed(_mismatched_plan, 2, timeout=90)
    assert all("init plans differ between ranks" in m for m in msgs), msgs
    assert msgs[0] == msgs[1]


@pytest.mark.slow
def test_matching_plans_fill_the_sharded_weight_like_one_process():
    full = run_distributed(_matching_plan, 2, timeout=90)
    single = nn.Linear(8, 8, bias=False)
    di.init_(single, "he", seed=3)
    assert torch.equal(torch.tensor(full[0]), single.weight.detach())
    assert full[0] == full[1]
