"""Sharded tensors: where a local shard lies in its full logical tensor.

The random-number contract indexes elements by their row-major position in the **full** tensor, so a shard
needs its geometry (:class:`~depthinit.kernels.contract.ShardGeometry`): the local tensor viewed as
``[outer, local_mid, inner]`` inside ``[outer, global_mid, inner]`` at ``offset`` along the middle dimension.
For a ``DTensor`` it comes from the placements (``Shard(d)`` on one tensor dimension, from one or several mesh
dimensions, even or uneven; ``Replicate``), through ``compute_local_shape_and_global_offset``.
"""

from __future__ import annotations

import sys

import torch

from depthinit.kernels.contract import ShardGeometry

__all__ = ["is_dtensor", "dtensor_class", "local_tensor", "local_geometry"]


def dtensor_class() -> type | None:
    """``torch.distributed.tensor.DTensor`` once something imported it, else None: no DTensor can exist before
    (importing it costs about a second, which a process that never shards should not pay)."""
    module = sys.modules.get("torch.distributed.tensor")
    return getattr(module, "DTensor", None)


def is_dtensor(t: object) -> bool:
    """True for a ``torch.distributed.tensor.DTensor`` (and a Parameter wrapping one)."""
    cls = dtensor_class()
    return cls is not None and isinstance(t, cls)


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """The local shard of a DTensor (a view sharing its storage), or ``t`` itself."""
    if not is_dtensor(t):
        return t
    with torch.no_grad():
        return t.to_local()


def local_geometry(t: torch.Tensor) -> ShardGeometry:
    """Where the local part of ``t`` lies in the full tensor.

    A plain tensor is its own full tensor: ``ShardGeometry.full(t.numel())``. A DTensor sharded along one
    tensor dimension ``d`` (``Shard(d)`` on any number of mesh dimensions, even or uneven chunks, mixed with
    ``Replicate``) gives ``ShardGeometry.along(global_shape, d, offset, local_size)``.

    Raises:
        NotImplementedError: two different tensor dimensions are sharded, or a placement is not ``Shard`` /
            ``Replicate`` (``_StridedShard``: the local part is not one slice of the full tensor).
        ValueError: a ``Partial`` placement (a pending reduction has no values to fill).

    Example:
        >>> w = distribute_tensor(torch.empty(8, 4), mesh, [Shard(0)])   # rank 1 of 2
        >>> local_geometry(w)
        ShardGeometry(outer=1, local_mid=4, global_mid=8, inner=4, offset=4)
    """
    if not is_dtensor(t):
        return ShardGeometry.full(t.numel())
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    shape = tuple(int(s) for s in t.shape)
    dims = set()
    for p in t.placements:
        if p.is_partial():
            raise ValueError(f"cannot fill a DTensor with a Partial placement ({t.placements}): redistribute it first")
        if type(p) is Shard:
            dims.add(p.dim % max(len(shape), 1))
        elif not isinstance(p, Replicate):
            raise NotImplementedError(f"placement {p} is not supported by the fill (use Shard(d) or Replicate)")
    if len(dims) > 1:
        raise NotImplementedError(
            f"a DTensor sharded along several tensor dimensions {sorted(dims)} ({t.placements}) is not supported: "
            "its local part is not one slice of the full tensor"
        )
    local_shape, offset = compute_local_shape_and_global_offset(shape, t.device_mesh, t.placements)
    if not dims:
        return ShardGeometry.full(t.numel())
    (d,) = dims
    if len(offset) != len(shape):  # this rank holds no part of the tensor
        return ShardGeometry.along(shape, d, 0, 0)
    return ShardGeometry.along(shape, d, int(offset[d]), int(local_shape[d]))
