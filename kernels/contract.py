"""The contract between the kernels and the library: what both sides read and write.

Everything the Triton kernels, the C kernels and their torch references (``depthinit.rng``,
``depthinit.stats``) must agree on is written here once: dtype and distribution codes, the named columns of the
fill parameter tables, the statistics row and its neutral element, seed and stream checks, the normal CDF, shard
geometry, and the host-side tables of a multi-tensor launch. This module needs no triton and no GPU.

Host-side tables:

A multi-tensor launch covers many tensors with one grid. The host builds, once per group of tensors:

* a **pointer table**: int64 ``data_ptr()`` of every tensor, on the tensors' device;
* a **chunk table**: for every program of the grid, the tensor it works on and the index of its block
  inside that tensor (``tensor_id`` int32, ``block`` int64), so programs never search.

Both are plain tensors, cached by the caller (a plan, a monitor) and reused across launches.
"""

from __future__ import annotations

import functools
import math
import numbers
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


# Element dtype codes of the kernels' tables (the C kernels take fp64 as well; the Triton fill takes the first three).
DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2, torch.float64: 3}


def check_seed(seed: object) -> int:
    """``seed`` as an int in ``[0, 2**64)`` (the Philox key), or a ValueError naming what was given."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {type(seed).__name__} {seed!r}")
    return int(seed)


def check_stream(stream: object) -> int:
    """``stream`` as a 32-bit stream id, or a ValueError."""
    if isinstance(stream, bool) or not isinstance(stream, numbers.Integral) or not 0 <= int(stream) < 2**32:
        raise ValueError(f"stream must be a 32-bit id in [0, 2**32), got {stream!r}")
    return int(stream)


def norm_cdf(x: float) -> float:
    """Standard normal CDF Phi(x), with full relative precision in the lower tail (``erfc``)."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def norm_pdf(x: float) -> float:
    """Standard normal density."""
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


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


# Columns of the float parameter table of one fill row (kernels/cpu_fill.c, kernels/fill.py, depthinit.rng).
FILL_PARAMS = ("mean", "std", "low", "high", "cdf_lo", "sf_hi", "width", "clamp_lo", "clamp_hi", "unused")
# Columns of the int64 parameter table of the Triton fill (kernels/fill.py): the distribution and dtype codes, the
# stream, and the shard geometry as runs (``outer`` runs of ``run`` elements, ``gstride`` apart in the full tensor,
# the first at global index ``start``; ``slots`` counters per run; ``fast``: one run starting at a multiple of 4).
FILL_INTS = ("dist", "dtype", "stream", "outer", "run", "gstride", "start", "slots", "fast", "unused")
FILL_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
MIN_TRUNC_MASS = 1e-30  # below this the inverse CDF in fp32 cannot resolve the interval


def _fp32(x: float) -> float:
    return float(np.float32(x)) if math.isfinite(x) else x


def _next(x: torch.Tensor, up: bool) -> torch.Tensor:
    """The neighbour of the 0-d floating tensor ``x`` in its own dtype (towards +inf if ``up``)."""
    if torch.isinf(x) and (bool(x > 0) == up):
        return x
    bits_dtype = {2: torch.int16, 4: torch.int32, 8: torch.int64}[x.element_size()]
    if float(x) == 0.0:
        tiny = torch.tensor(1, dtype=bits_dtype).view(x.dtype)
        return tiny if up else -tiny
    bits = x.clone().view(bits_dtype)
    return (bits + (1 if (float(x) > 0) == up else -1)).view(x.dtype)


def dtype_floor(x: float, dtype: torch.dtype, strict: bool = False) -> float:
    """The largest ``dtype`` value ``<= x`` (``< x`` if ``strict``), as a Python float."""
    if math.isinf(x) and not strict:
        return x
    t = torch.tensor(x, dtype=torch.float64).to(dtype)
    while float(t) > x or (strict and float(t) == x):
        t = _next(t, up=False)
    return float(t)


def dtype_ceil(x: float, dtype: torch.dtype) -> float:
    """The smallest ``dtype`` value ``>= x``, as a Python float."""
    if math.isinf(x):
        return x
    t = torch.tensor(x, dtype=torch.float64).to(dtype)
    while float(t) < x:
        t = _next(t, up=True)
    return float(t)


def trunc_normal_masses(mean: float, std: float, low: float, high: float) -> tuple[float, float, float]:
    """``(Phi(alpha), 1 - Phi(beta), Phi(beta) - Phi(alpha))`` of the standardized bounds, each with full
    relative precision in fp64 (``math.erfc`` in the tail where it lies)."""
    if not std > 0 or not math.isfinite(std):
        raise ValueError(f"trunc_normal needs a finite std > 0, got {std}")
    if not low < high:
        raise ValueError(f"trunc_normal needs low < high, got [{low}, {high}]")
    alpha, beta = (low - mean) / std, (high - mean) / std
    r2 = math.sqrt(2.0)
    cdf_lo, sf_hi = 0.5 * math.erfc(-alpha / r2), 0.5 * math.erfc(beta / r2)
    if beta <= 0:
        width = 0.5 * (math.erfc(-beta / r2) - math.erfc(-alpha / r2))
    elif alpha >= 0:
        width = 0.5 * (math.erfc(alpha / r2) - math.erfc(beta / r2))
    else:
        width = 1.0 - cdf_lo - sf_hi
    return cdf_lo, sf_hi, width


@functools.lru_cache(maxsize=4096)
def fill_params(dist: int, mean: float, std: float, low: float, high: float, dtype: torch.dtype) -> tuple:
    """The ``FILL_PARAMS`` of one row for a target dtype (what the kernels' parameter tables hold).

    fp64 targets keep the fp64 parameters; other targets get them rounded to fp32 (the kernels compute in
    fp32). The clamp bounds are values of the target dtype: ``[low, high)`` for uniform (the largest value
    below ``high``), ``[low, high]`` for trunc_normal, none for normal. A constant's value is ``mean`` rounded
    once to the target dtype. The trunc_normal masses are fp32 (the inverse CDF runs in fp32 for every target).
    """
    if dist not in DIST_CODES.values():
        raise ValueError(f"unknown distribution code {dist!r}; expected one of {DIST_CODES}")
    if dtype not in FILL_DTYPES:
        raise TypeError(f"fill writes {', '.join(map(str, FILL_DTYPES))}; got {dtype}")
    mean, std, low, high = float(mean), float(std), float(low), float(high)
    wide = dtype == torch.float64
    rnd = (lambda x: x) if wide else _fp32
    cdf_lo = sf_hi = width = 0.0
    clamp_lo, clamp_hi = -math.inf, math.inf
    if dist == DIST_CONSTANT:
        mean = float(torch.tensor(mean, dtype=torch.float64).to(dtype))
    elif dist == DIST_UNIFORM:
        if not (math.isfinite(low) and math.isfinite(high)) or low > high:
            raise ValueError(f"uniform needs finite bounds low <= high, got [{low}, {high})")
        clamp_lo = dtype_ceil(low, dtype)
        clamp_hi = max(dtype_floor(high, dtype, strict=True), clamp_lo)  # [a, a): the one value a
    elif dist == DIST_TRUNC_NORMAL:
        cdf_lo, sf_hi, width = (_fp32(v) for v in trunc_normal_masses(mean, std, low, high))
        if not width >= MIN_TRUNC_MASS:
            raise ValueError(
                f"trunc_normal bounds [{low}, {high}] hold a mass of {width:.3g} of N({mean}, {std}**2), below "
                f"{MIN_TRUNC_MASS:g}: fp32 cannot resolve it; put the bounds within ~11 std of the mean"
            )
        clamp_lo, clamp_hi = dtype_ceil(low, dtype), dtype_floor(high, dtype)
        if clamp_lo > clamp_hi:
            raise ValueError(f"trunc_normal bounds [{low}, {high}] hold no {dtype} value")
    return (rnd(mean), rnd(std), rnd(low), rnd(high), cdf_lo, sf_hi, width, clamp_lo, clamp_hi, 0.0)


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


# Row layout of the statistics contract (DESIGN.md), shared by kernels/stats.py, kernels/cpu_stats.c,
# depthinit.stats and the monitor: one fp64 row per tensor (or per tile / shard before merging).
STAT_FIELDS = ("count", "mean", "m2", "sumsq", "min", "max", "absmax", "nonfinite", "zeros")
N_FIELDS = len(STAT_FIELDS)
COUNT, MEAN, M2, SUMSQ, MIN, MAX, ABSMAX, NONFINITE, ZEROS = range(N_FIELDS)
# The row of no element: merging it into any row leaves that row unchanged (NaN extrema are skipped by the merge).
NEUTRAL_ROW = (0.0, math.nan, 0.0, 0.0, math.nan, math.nan, math.nan, 0.0, 0.0)
