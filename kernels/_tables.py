"""Host-side tables shared by the multi-tensor kernels: pointer table, chunk table, shard geometry.

A multi-tensor launch covers many tensors with one grid. The host builds, once per group of tensors:

* a **pointer table**: int64 ``data_ptr()`` of every tensor, on the tensors' device;
* a **chunk table**: for every program of the grid, the tensor it works on and the index of its block
  inside that tensor (``tensor_id`` int32, ``block`` int64), so programs never search.

Both are plain tensors, cached by the caller (a plan, a monitor) and reused across launches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch


class ShardGeometry(NamedTuple):
    """Where a local (possibly sharded) tensor lies inside its full logical tensor.

    The local tensor is viewed as ``[outer, local_mid, inner]`` and the full tensor as
    ``[outer, global_mid, inner]``; the local slice starts at ``offset`` along the middle dimension.
    A tensor sharded along dimension ``d`` has ``outer = prod(global_shape[:d])``,
    ``inner = prod(global_shape[d+1:])``. An unsharded tensor is ``full(numel)``.
    """

    outer: int
    local_mid: int
    global_mid: int
    inner: int
    offset: int

    @staticmethod
    def full(numel: int) -> ShardGeometry:
        return ShardGeometry(1, numel, numel, 1, 0)

    @staticmethod
    def along(global_shape: Sequence[int], dim: int, offset: int, local_size: int) -> ShardGeometry:
        """Geometry of the slice ``[offset, offset + local_size)`` of dimension ``dim``."""
        shape = [int(s) for s in global_shape]
        if not shape:
            return ShardGeometry.full(1)
        outer = int(np.prod(shape[:dim], dtype=np.int64))
        inner = int(np.prod(shape[dim + 1 :], dtype=np.int64))
        return ShardGeometry(outer, int(local_size), shape[dim], inner, int(offset))

    @property
    def local_numel(self) -> int:
        return self.outer * self.local_mid * self.inner

    @property
    def global_numel(self) -> int:
        return self.outer * self.global_mid * self.inner

    @property
    def is_full(self) -> bool:
        return self.local_mid == self.global_mid and self.offset == 0

    def global_index(self, local: torch.Tensor) -> torch.Tensor:
        """Row-major index in the full tensor of each local flat index (int64 in, int64 out)."""
        if self.is_full:
            return local
        run = self.local_mid * self.inner
        a = torch.div(local, run, rounding_mode="floor")
        rest = local - a * run
        return (a * self.global_mid + self.offset) * self.inner + rest


def pointer_table(tensors: Sequence[torch.Tensor], device: torch.device | str | None = None) -> torch.Tensor:
    """int64 tensor of ``data_ptr()`` of each tensor, placed on ``device`` (default: the first tensor's)."""
    if device is None:
        device = tensors[0].device if tensors else "cpu"
    return torch.tensor([t.data_ptr() for t in tensors], dtype=torch.int64, device=device)


def chunk_table(
    blocks_per_tensor: Sequence[int], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """One entry per program: ``(tensor_id int32, block int64)``, tensors in order, blocks ascending.

    ``blocks_per_tensor[t]`` is how many programs tensor ``t`` needs (0 for an empty tensor).
    """
    counts = np.asarray(blocks_per_tensor, dtype=np.int64)
    if counts.size and counts.min() < 0:
        raise ValueError("blocks_per_tensor must be non-negative")
    tensor_id = np.repeat(np.arange(counts.size, dtype=np.int32), counts)
    starts = np.cumsum(counts) - counts
    block = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts)
    return (
        torch.from_numpy(tensor_id).to(device),
        torch.from_numpy(block).to(device),
    )


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


# Distribution codes shared by the fill kernel and the torch reference (depthinit.rng).
DIST_NORMAL = 0
DIST_UNIFORM = 1
DIST_TRUNC_NORMAL = 2
DIST_CONSTANT = 3
DIST_CODES = {
    "normal": DIST_NORMAL,
    "uniform": DIST_UNIFORM,
    "trunc_normal": DIST_TRUNC_NORMAL,
    "constant": DIST_CONSTANT,
}


class FillRow(NamedTuple):
    """What one tensor is filled with, under the random-number contract of DESIGN.md.

    * normal: ``mean + std * z``;
    * uniform: ``low + (high - low) * u``;
    * trunc_normal: ``mean + std * z`` with ``z`` drawn by inverse CDF inside ``[low, high]`` (absolute bounds,
      as ``torch.nn.init.trunc_normal_``'s ``a`` and ``b``), clamped to them;
    * constant: every element equals ``mean`` (no random numbers drawn).
    """

    dist: int
    mean: float = 0.0
    std: float = 1.0
    low: float = 0.0
    high: float = 1.0
    stream: int = 0
    geometry: ShardGeometry | None = None  # None: the tensor is the whole logical tensor


class AotSpec(NamedTuple):
    """One kernel specialization compiled by ``python -m depthinit.kernels.aot`` (see kernels/aot.py).

    Each kernel module exposes ``aot_specs() -> list[AotSpec]``; ``signature`` and ``constexprs`` are
    passed to ``triton.compiler.ASTSource``.
    """

    name: str
    fn: object  # triton.JITFunction
    signature: dict
    constexprs: dict
    num_warps: int = 4
    options: dict | None = None  # extra compile options the launcher also passes (e.g. enable_fp_fusion)


# Row layout of the statistics contract (DESIGN.md), shared by kernels/stats.py and depthinit.stats: one fp64
# row per tensor (or per tile / shard before merging). Kept here because this module needs no triton.
STAT_FIELDS = ("count", "mean", "m2", "sumsq", "min", "max", "absmax", "nonfinite", "zeros")
