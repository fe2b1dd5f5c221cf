"""Single-pass per-tensor statistics of many tensors in one launch (the statistics contract of DESIGN.md).

Two kernels:

* ``_stats_partials_kernel``: one program per tile of ``BLOCK`` elements of one tensor (pointer table +
  chunk table from :mod:`depthinit.kernels.contract`). The program loads its tile once, then, from the
  registers: counts the finite / non-finite / zero elements, takes min, max and abs-max of the finite
  ones, scales the finite values by a power of two ``2**-e`` so that ``|y| < 4`` (exact, and no sum
  of a tile of bf16 or fp32 values near their limits can overflow or underflow fp32), computes the tile
  mean of ``z = y - min(y)`` (about a data value: constant data gives exactly zero variance), then
  ``M2 = sum((z - mean_z)**2)`` and ``sumsq = sum(y**2)`` in fp32 (two passes over registers, one pass
  over memory). It writes one fp64 row of :data:`~depthinit.kernels.contract.STAT_FIELDS`, unscaled in fp64.
* ``_stats_merge_kernel``: one program per tensor merges that tensor's tile rows in a fixed order with
  the multi-way form of Chan et al.'s parallel formula, in fp64::

      N = sum n_i,   mean = sum(n_i mean_i) / N,   M2 = sum(M2_i) + sum(n_i (mean_i - mean)**2)

  (the mean summed about the tensor minimum, deviations taken from the final mean: no cancellation),
  plus sums of sumsq / counts and min / max, in three passes over the (small) partial rows.
  No float atomics: the result is bitwise reproducible for a given tiling.

Fields (one fp64 row per tensor, see ``contract.STAT_FIELDS``): ``count`` of finite elements, ``mean``, ``m2``
(sum of squared deviations; population variance is ``m2 / count``), ``sumsq``, ``min``, ``max``,
``absmax`` (all over finite elements), ``nonfinite`` (NaN and +-Inf, excluded from every other field),
``zeros``. A tensor with no finite element has ``count = m2 = sumsq = 0`` and NaN mean/min/max/absmax.

The torch references: the exact statistics of each tile (``depthinit.stats.stats_reference`` of the tile)
and :func:`depthinit.stats.merge_partials` (merge); tests/test_stats_kernel.py compares them under the
Triton interpreter. Kernel launches never synchronize with the host.

>>> launch = StatsLaunch([w.view(-1) for w in weights])   # tables built once
>>> out = launch([w.view(-1) for w in weights])           # [n, 9] fp64 on the device, no host sync
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from depthinit.kernels.contract import (
    N_FIELDS,
    AotSpec,
    cdiv,
    chunk_table,
    pointer_table,
)

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_TL_DTYPES = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}
BLOCK_ELEMS = {torch.float32: 4096, torch.float16: 8192, torch.bfloat16: 8192}  # 16 KiB per tile
PARTIALS_WARPS = 8
MERGE_BLOCK = 256
MERGE_WARPS = 4


@triton.jit
def _stats_partials_kernel(
    ptr_table,  # *int64 [n_tensors]: data_ptr of each (flat, contiguous) tensor
    numel_table,  # *int64 [n_tensors]
    tile_tensor,  # *int32 [n_tiles]: chunk table, tensor of each program
    tile_block,  # *int64 [n_tiles]: chunk table, block of each program inside its tensor
    partials,  # *fp64 [rows, N_FIELDS]
    row0,  # first row of this launch in ``partials``
    DTYPE: tl.constexpr,
    BLOCK: tl.constexpr,
    ALIGNED: tl.constexpr,  # every pointer of the table is 16-byte aligned: vectorized loads
    NF: tl.constexpr,
):
    pid = tl.program_id(0)
    t = tl.load(tile_tensor + pid)
    blk = tl.load(tile_block + pid)  # int64: offsets below are 64-bit (tensors over 2**31 elements)
    n = tl.load(numel_table + t)
    base = tl.load(ptr_table + t).to(tl.pointer_type(DTYPE))
    if ALIGNED:
        base = tl.multiple_of(base, 16)
    start = blk * BLOCK
    offs = start + tl.arange(0, BLOCK)
    inb = offs < n
    if start + BLOCK <= n:  # full tile: unmasked (vectorizable) load
        x = tl.load(base + offs).to(tl.float32)
    else:
        x = tl.load(base + offs, mask=inb, other=0.0).to(tl.float32)

    ax = tl.abs(x)
    fin = inb & (ax < float("inf"))  # NaN compares false
    cnt = tl.sum(fin.to(tl.int32), axis=0)
    nonfin = tl.sum(inb.to(tl.int32), axis=0) - cnt
    zeros = tl.sum((inb & (x == 0.0)).to(tl.int32), axis=0)
    amax = tl.max(tl.where(fin, ax, 0.0), axis=0)
    mn = tl.min(tl.where(fin, x, float("inf")), axis=0)
    mx = tl.max(tl.where(fin, x, -float("inf")), axis=0)

    # y = x * 2**(127 - e), e the biased exponent of amax: |y| < 4, exact (a power of two), so no fp32
    # sum below can overflow or underflow whatever the magnitude of x (bf16 / fp32 near their limits)
    e = (amax.to(tl.int32, bitcast=True) >> 23) & 0xFF
    sbits = tl.minimum(tl.maximum(254 - e, 1), 254)
    scale = (sbits << 23).to(tl.float32, bitcast=True)
    inv = ((1150 - sbits).to(tl.int64) << 52).to(tl.float64, bitcast=True)  # 1 / scale, in fp64
    y = tl.where(fin, x * scale, 0.0)
    # two passes over the registers about the tile minimum (a data value: constant data gives M2 = 0)
    y0 = tl.where(cnt > 0, mn * scale, 0.0)
    z = tl.where(fin, y - y0, 0.0)
    mean_z = tl.sum(z, axis=0) / tl.maximum(cnt, 1).to(tl.float32)
    dz = tl.where(fin, z - mean_z, 0.0)
    m2_y = tl.sum(dz * dz, axis=0)
    sq_y = tl.sum(y * y, axis=0)
    mean_y = y0.to(tl.float64) + mean_z.to(tl.float64)

    row = partials + (row0 + pid).to(tl.int64) * NF
    tl.store(row + 0, cnt.to(tl.float64))
    tl.store(row + 1, mean_y * inv)
    tl.store(row + 2, m2_y.to(tl.float64) * inv * inv)
    tl.store(row + 3, sq_y.to(tl.float64) * inv * inv)
    tl.store(row + 4, mn.to(tl.float64))
    tl.store(row + 5, mx.to(tl.float64))
    tl.store(row + 6, amax.to(tl.float64))
    tl.store(row + 7, nonfin.to(tl.float64))
    tl.store(row + 8, zeros.to(tl.float64))


@triton.jit
def _stats_merge_kernel(
    partials,  # *fp64 [rows, NF]
    tile_start,  # *int64 [n_tensors]: first partial row of each tensor
    tile_count,  # *int64 [n_tensors]: number of partial rows of each tensor
    out,  # *fp64 [n_out, NF]
    out_row0,  # row of tensor 0 in ``out``
    NF: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    t = tl.program_id(0)
    first = tl.load(tile_start + t)
    k = tl.load(tile_count + t)
    lanes = tl.arange(0, BLOCK_T)
    acc_n = tl.zeros([BLOCK_T], dtype=tl.float64)
    acc_s = tl.zeros([BLOCK_T], dtype=tl.float64)
    acc_sq = tl.zeros([BLOCK_T], dtype=tl.float64)
    acc_nf = tl.zeros([BLOCK_T], dtype=tl.float64)
    acc_z = tl.zeros([BLOCK_T], dtype=tl.float64)
    acc_mn = tl.full([BLOCK_T], float("inf"), dtype=tl.float64)
    acc_mx = tl.full([BLOCK_T], -float("inf"), dtype=tl.float64)
    acc_ax = tl.zeros([BLOCK_T], dtype=tl.float64)
    for i in range(0, k, BLOCK_T):  # pass 1 over the tile rows: counts, extremes, sums of squares
        idx = i + lanes
        m = idx < k
        row = partials + (first + idx) * NF
        n_i = tl.load(row + 0, mask=m, other=0.0)
        ok = n_i > 0
        acc_n += n_i
        acc_sq += tl.where(ok, tl.load(row + 3, mask=m, other=0.0), 0.0)
        acc_mn = tl.minimum(acc_mn, tl.where(ok, tl.load(row + 4, mask=m, other=0.0), float("inf")))
        acc_mx = tl.maximum(acc_mx, tl.where(ok, tl.load(row + 5, mask=m, other=0.0), -float("inf")))
        acc_ax = tl.maximum(acc_ax, tl.where(ok, tl.load(row + 6, mask=m, other=0.0), 0.0))
        acc_nf += tl.load(row + 7, mask=m, other=0.0)
        acc_z += tl.load(row + 8, mask=m, other=0.0)
    total = tl.sum(acc_n, axis=0)
    lo = tl.min(acc_mn, axis=0)
    shift = tl.where(total > 0, lo, 0.0)  # the mean about the minimum: constant data stays exact
    for i in range(0, k, BLOCK_T):  # pass 2: mean
        idx = i + lanes
        m = idx < k
        row = partials + (first + idx) * NF
        n_i = tl.load(row + 0, mask=m, other=0.0)
        acc_s += tl.where(n_i > 0, n_i * (tl.load(row + 1, mask=m, other=0.0) - shift), 0.0)
    mean = shift + tl.sum(acc_s, axis=0) / tl.maximum(total, 1.0)
    acc_m2 = tl.zeros([BLOCK_T], dtype=tl.float64)
    for i in range(0, k, BLOCK_T):  # pass 3: Chan's merge about the final mean
        idx = i + lanes
        m = idx < k
        row = partials + (first + idx) * NF
        n_i = tl.load(row + 0, mask=m, other=0.0)
        d = tl.load(row + 1, mask=m, other=0.0) - mean
        acc_m2 += tl.where(n_i > 0, tl.load(row + 2, mask=m, other=0.0) + n_i * d * d, 0.0)
    has = total > 0
    nan = float("nan")
    dst = out + (out_row0 + t).to(tl.int64) * NF
    tl.store(dst + 0, total)
    tl.store(dst + 1, tl.where(has, mean, nan))
    tl.store(dst + 2, tl.sum(acc_m2, axis=0))
    tl.store(dst + 3, tl.sum(acc_sq, axis=0))
    tl.store(dst + 4, tl.where(has, lo, nan))
    tl.store(dst + 5, tl.where(has, tl.max(acc_mx, axis=0), nan))
    tl.store(dst + 6, tl.where(has, tl.max(acc_ax, axis=0), nan))
    tl.store(dst + 7, tl.sum(acc_nf, axis=0))
    tl.store(dst + 8, tl.sum(acc_z, axis=0))


def _kernel(kernel, device: torch.device):
    """``kernel`` for tensors on ``device``: CPU tensors need the Triton interpreter (tests only)."""
    if device.type == "cpu" and isinstance(kernel, triton.runtime.JITFunction):
        raise RuntimeError(
            "depthinit stats kernel on CPU tensors: the Triton interpreter is off. Set TRITON_INTERPRET=1 in the "
            "environment before triton is first imported (tests do this in a subprocess), or use backend='torch'."
        )
    return kernel


def launch_partials(
    ptrs: torch.Tensor,
    numels: torch.Tensor,
    tile_tensor: torch.Tensor,
    tile_block: torch.Tensor,
    partials: torch.Tensor,
    row0: int,
    dtype: torch.dtype,
    aligned: bool = False,
) -> None:
    """Write one partial row per entry of the chunk table into ``partials[row0:]`` (low level).

    ``ptrs`` / ``numels``: int64 pointer and size tables of flat contiguous tensors of ``dtype``;
    ``tile_tensor`` / ``tile_block``: the chunk table (blocks of :data:`BLOCK_ELEMS` ``[dtype]`` elements).
    """
    n_tiles = tile_tensor.numel()
    if n_tiles == 0:
        return
    _kernel(_stats_partials_kernel, partials.device)[(n_tiles,)](
        ptrs, numels, tile_tensor, tile_block, partials, row0,
        DTYPE=_TL_DTYPES[dtype], BLOCK=BLOCK_ELEMS[dtype], ALIGNED=aligned, NF=N_FIELDS,
        num_warps=PARTIALS_WARPS,
    )  # fmt: skip


def launch_merge(
    partials: torch.Tensor, tile_start: torch.Tensor, tile_count: torch.Tensor, out: torch.Tensor, out_row0: int = 0
) -> None:
    """Merge each tensor's partial rows ``partials[tile_start[t] : tile_start[t] + tile_count[t]]`` into ``out``."""
    n = tile_start.numel()
    if n == 0:
        return
    _kernel(_stats_merge_kernel, out.device)[(n,)](
        partials, tile_start, tile_count, out, out_row0, NF=N_FIELDS, BLOCK_T=MERGE_BLOCK, num_warps=MERGE_WARPS
    )


class StatsLaunch:
    """A prepared multi-tensor statistics launch: tables built once, reused while the layout is unchanged.

    ``tensors``: contiguous tensors of one device (fp32 / fp16 / bf16; dtypes may differ: one partials
    launch per (dtype, alignment) group, then one merge launch for all). Calling the object runs the
    launches and returns (or fills ``out``) an ``[n, N_FIELDS]`` fp64 tensor on the device, without any
    host synchronization. The same layout measured on other storage (gradients reallocated every step)
    only rebuilds the pointer table (pinned, non-blocking copy). Calls are meant for one stream: the
    partials buffer is reused.

    >>> launch = StatsLaunch(params)
    >>> out = launch(params) if launch.matches(params) else StatsLaunch(params)(params)
    """

    def __init__(self, tensors: Sequence[torch.Tensor]):
        tensors = list(tensors)
        self.device = tensors[0].device if tensors else torch.device("cpu")
        self.n = len(tensors)
        groups: dict[tuple[torch.dtype, bool], list[int]] = {}
        for i, t in enumerate(tensors):
            if t.dtype not in SUPPORTED_DTYPES:
                raise TypeError(f"stats kernel: tensor {i} has dtype {t.dtype}; supported: {SUPPORTED_DTYPES}")
            if not t.is_contiguous() or t.device != self.device:
                raise ValueError(f"stats kernel: tensor {i} must be contiguous and on {self.device}")
            groups.setdefault((t.dtype, t.data_ptr() % 16 == 0), []).append(i)
        self.key, self._ptrs = self._keys(tensors)
        self.groups = []
        tile_start = [0] * self.n
        tile_count = [0] * self.n
        row = 0
        for (dtype, aligned), idx in groups.items():
            blocks = [cdiv(tensors[i].numel(), BLOCK_ELEMS[dtype]) for i in idx]
            tt, tb = chunk_table(blocks, self.device)
            numels = torch.tensor([tensors[i].numel() for i in idx], dtype=torch.int64, device=self.device)
            for i, b in zip(idx, blocks):
                tile_start[i], tile_count[i] = row, b
                row += b
            ptrs = self._table([tensors[i] for i in idx])
            self.groups.append([dtype, aligned, idx, numels, tt, tb, tile_start[idx[0]], ptrs])
        self.n_tiles = row
        self.tile_start = torch.tensor(tile_start, dtype=torch.int64, device=self.device)
        self.tile_count = torch.tensor(tile_count, dtype=torch.int64, device=self.device)
        self.partials = torch.empty((max(row, 1), N_FIELDS), dtype=torch.float64, device=self.device)

    @staticmethod
    def _keys(tensors: Sequence[torch.Tensor]) -> tuple[tuple, tuple]:
        """(layout: dtype, size and 16-byte alignment of each tensor; pointers), in one pass."""
        ptrs = tuple(t.data_ptr() for t in tensors)
        return tuple((t.dtype, t.numel(), p % 16 == 0) for t, p in zip(tensors, ptrs)), ptrs

    @staticmethod
    def layout_key(tensors: Sequence[torch.Tensor]) -> tuple:
        """What the tables depend on, except the pointers (a cache key)."""
        return (tensors[0].device if tensors else None,) + StatsLaunch._keys(tensors)[0]

    def matches(self, tensors: Sequence[torch.Tensor]) -> bool:
        """Cheap validity check: can this launch measure ``tensors`` (same layout; pointers may differ)?"""
        return len(tensors) == self.n and (not tensors or tensors[0].device == self.device) and (
            self._keys(tensors)[0] == self.key
        )

    def _table(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        table = pointer_table(tensors, "cpu")
        if self.device.type == "cuda":  # pinned + non_blocking: no host synchronization
            return table.pin_memory().to(self.device, non_blocking=True)
        return table.to(self.device)

    def __call__(self, tensors: Sequence[torch.Tensor], out: torch.Tensor | None = None) -> torch.Tensor:
        tensors = list(tensors)
        key, ptrs = self._keys(tensors)
        if key != self.key or (tensors and tensors[0].device != self.device):
            raise ValueError("StatsLaunch: tensors do not match the prepared layout; build a new StatsLaunch")
        if out is None:
            out = torch.empty((self.n, N_FIELDS), dtype=torch.float64, device=self.device)
        elif out.shape != (self.n, N_FIELDS) or out.dtype != torch.float64 or not out.is_contiguous():
            raise ValueError(f"out must be a contiguous fp64 tensor of shape {(self.n, N_FIELDS)}")
        if ptrs != self._ptrs:  # same layout, other storage: new pointer tables only
            for g in self.groups:
                g[7] = self._table([tensors[i] for i in g[2]])
            self._ptrs = ptrs
        for dtype, aligned, _idx, numels, tt, tb, row0, table in self.groups:
            launch_partials(table, numels, tt, tb, self.partials, row0, dtype, aligned)
        launch_merge(self.partials, self.tile_start, self.tile_count, out)
        return out


def aot_specs() -> list[AotSpec]:
    """Every specialization launched by this module, for ``python -m depthinit.kernels.aot``."""
    specs = []
    for dtype, tl_dtype in _TL_DTYPES.items():
        for aligned in (True, False):
            name = f"stats_partials_{str(dtype).split('.')[-1]}_{'aligned' if aligned else 'unaligned'}"
            specs.append(
                AotSpec(
                    name=name,
                    fn=_stats_partials_kernel,
                    signature={
                        "ptr_table": "*i64", "numel_table": "*i64", "tile_tensor": "*i32", "tile_block": "*i64",
                        "partials": "*fp64", "row0": "i32",
                        "DTYPE": "constexpr", "BLOCK": "constexpr", "ALIGNED": "constexpr", "NF": "constexpr",
                    },  # fmt: skip
                    constexprs={"DTYPE": tl_dtype, "BLOCK": BLOCK_ELEMS[dtype], "ALIGNED": aligned, "NF": N_FIELDS},
                    num_warps=PARTIALS_WARPS,
                )
            )
    specs.append(
        AotSpec(
            name="stats_merge",
            fn=_stats_merge_kernel,
            signature={
                "partials": "*fp64", "tile_start": "*i64", "tile_count": "*i64", "out": "*fp64", "out_row0": "i32",
                "NF": "constexpr", "BLOCK_T": "constexpr",
            },  # fmt: skip
            constexprs={"NF": N_FIELDS, "BLOCK_T": MERGE_BLOCK},
            num_warps=MERGE_WARPS,
        )
    )
    return specs
