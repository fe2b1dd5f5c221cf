"""Sharded tensors: where a local shard lies in its full logical tensor.

The random-number contract indexes elements by their row-major position in the **full** tensor, so a shard
needs its geometry (:class:`~depthinit.kernels.contract.ShardGeometry`): the local tensor viewed as
``[outer, local_mid, inner]`` inside ``[outer, global_mid, inner]`` at ``offset`` along the middle dimension.
For a ``DTensor`` it comes from the placements (``Shard(d)`` on one tensor dimension, from one or several mesh
dimensions, even or uneven; ``Replicate``), through ``compute_local_shape_and_global_offset``.

Statistics of sharded tensors (:mod:`depthinit.stats`, :mod:`depthinit.monitor`): each rank measures its local
part (:func:`local_slice`, :func:`contributes`: replicas count once) and :func:`merge_sharded` turns the local
rows into the global ones with one ``all_gather`` and a rank-ordered merge.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch

from depthinit.kernels.contract import N_FIELDS, NEUTRAL_ROW, ShardGeometry

__all__ = ["is_dtensor", "dtensor_class", "local_tensor", "local_geometry", "contributes", "local_slice",
           "merge_sharded", "host_to", "is_emitting_rank", "multi_rank", "storage_key"]


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


def storage_key(t: torch.Tensor) -> tuple | None:
    """The elements a plain (or local) tensor views: equal keys are the same elements (tied weights that are
    distinct ``Parameter`` objects over one storage). None for a meta or empty tensor, which views nothing."""
    if t.is_meta or not t.numel():
        return None
    return (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)


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


def contributes(t: torch.Tensor, who: str = "layer_stats") -> bool:
    """Does this rank's local shard of ``t`` count towards the global figure? (True for a plain tensor.)

    Every coordinate of a sharded mesh dimension holds distinct data; of a replicated mesh dimension only
    coordinate 0 counts (replicas are not double-counted). A ``Partial`` placement holds addends of a pending
    reduction, whose statistics mean nothing: a ValueError (prefixed with ``who``) says to redistribute first.
    """
    if not is_dtensor(t):
        return True
    from torch.distributed.tensor import Partial, Replicate

    coord = t.device_mesh.get_coordinate()
    if coord is None:  # this rank holds no part of t
        return False
    for dim, placement in enumerate(t.placements):
        if isinstance(placement, Partial):
            raise ValueError(f"{who}: DTensor with a Partial placement; call .redistribute(...) or .full_tensor() "
                             "first")
        if isinstance(placement, Replicate) and coord[dim] != 0:
            return False
    return True


def local_slice(t: torch.Tensor, dim: int | None, start: int, stop: int,
                who: str = "layer_stats") -> tuple[torch.Tensor, bool, bool]:
    """``(local view, is sharded, counts on this rank)`` of ``t[start:stop]`` along ``dim`` (all of ``t`` if None).

    For a DTensor the view is the part of the local shard that falls inside ``[start, stop)`` of the full
    tensor (empty when none does); a plain tensor is narrowed as it is.
    """
    if not is_dtensor(t):
        return (t if dim is None else t.narrow(dim, start, stop - start)), False, True
    contrib = contributes(t, who)
    local = t.to_local()
    if dim is None:
        return local, True, contrib
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    _, offset = compute_local_shape_and_global_offset(t.shape, t.device_mesh, t.placements)
    if len(offset) != t.dim():  # this rank holds no part of the tensor
        return local.narrow(dim, 0, 0), True, False
    lo, n = offset[dim], local.shape[dim]
    a, b = max(start, lo), min(stop, lo + n)
    return (local.narrow(dim, a - lo, b - a) if b > a else local.narrow(dim, 0, 0)), True, contrib


def host_to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host table on ``device`` without a host synchronization (pinned, non-blocking on CUDA)."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _column(flags: torch.Tensor | Sequence[bool], device: torch.device) -> torch.Tensor:
    if isinstance(flags, torch.Tensor):
        return flags.reshape(-1, 1)
    return host_to(torch.tensor(list(flags), dtype=torch.bool), device)[:, None]


def merge_sharded(
    rows: torch.Tensor,
    sharded: torch.Tensor | Sequence[bool],
    contrib: torch.Tensor | Sequence[bool],
    merge: Callable[[torch.Tensor], torch.Tensor],
    group: Any = None,
    neutral: torch.Tensor | None = None,
) -> torch.Tensor:
    """Global statistics rows from every rank's local rows: ONE all_gather, then a rank-ordered merge.

    Args:
        rows: ``[n, N_FIELDS]`` fp64 statistics rows of this rank's local parts.
        sharded: per row (bool, a list or a device tensor of ``n``): the row is a partial of a global figure
            (a DTensor shard, or this rank's activations); the other rows are returned as they are.
        contrib: per row: this rank's row counts (False: replaced by the neutral row before gathering, so
            replicas count once); True for every row that is not sharded.
        merge: the merge of ``[world, n, N_FIELDS]`` partial rows into ``[n, N_FIELDS]`` in rank order
            (:func:`depthinit.stats.merge_stacked`, Chan's formula).
        group: the process group (default: the world).
        neutral: :data:`~depthinit.kernels.contract.NEUTRAL_ROW` on the rows' device, when the caller caches it.

    Why all_gather and not all_reduce: all-reduce offers sum / min / max only, so the moments would have to
    travel as sums of powers about a shift agreed in advance (another collective, or cancellation when the
    shift is off). Gathering the fixed-size partial rows (9 fp64 per row per rank) and merging them with
    Chan's formula in rank order is exact to fp64 round-off, carries the counts / extremes in the same message,
    and gives bitwise identical results on every rank.
    """
    import torch.distributed as dist

    device = rows.device
    if neutral is None:
        neutral = host_to(torch.tensor(NEUTRAL_ROW, dtype=torch.float64), device)
    local = torch.where(_column(contrib, device), rows, neutral).contiguous()
    world = dist.get_world_size(group)
    gathered = torch.empty((world * local.shape[0], N_FIELDS), dtype=local.dtype, device=device)
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # renamed in torch 2.13
    gather(gathered, local, group=group)
    merged = merge(gathered.view(world, -1, N_FIELDS))
    return torch.where(_column(sharded, device), merged, rows)


def is_emitting_rank(rank_zero_only: bool = True) -> bool:
    """True unless ``rank_zero_only`` and ``torch.distributed`` runs and this is not rank 0."""
    if not rank_zero_only:
        return True
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def multi_rank(group: Any = None) -> bool:
    """``torch.distributed`` runs with more than one rank in ``group``."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1
