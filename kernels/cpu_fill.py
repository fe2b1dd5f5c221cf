"""The CPU fill kernel (``cpu_fill.c``): every tensor of a call in one native, multi-threaded, vectorized call.

Shaped like the Triton launch (:mod:`depthinit.kernels.fill`): the host builds, once, a table with one row per
tensor, ``int64 [T, 8]`` (pointer, dtype code, distribution, stream, outer, run, global stride, start: the
shard geometry) and ``fp64 [T, 10]`` (:data:`~depthinit.kernels.contract.FILL_PARAMS`), and every call with a
seed is one C call that computes only the elements that exist. Values depend only on (seed, stream, global
index), never on grouping, sizes, thread count or sharding; the torch reference is :mod:`depthinit.rng`.

Built and cached by :mod:`depthinit.kernels.native` on first use (under a second, once per machine);
:func:`library` is None without a C compiler (one logged warning) or with ``DEPTHINIT_FILL_COMPILE=0``.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import native
from .contract import DTYPE_CODES, FILL_PARAMS, FillRow, ShardGeometry, fill_params
from .native import compile_flags

__all__ = [
    "CpuFill", "prepare", "prepare_described", "prepare_whole", "library", "build", "load", "DTYPE_CODES",
    "standard_values",
]  # fmt: skip

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu_fill.c")
SOURCES = [SOURCE, SOURCE.with_name("cpu_random.c")]  # two translation units, compiled side by side
NI, NF = 8, len(FILL_PARAMS)


def build(out_dir: Path | None = None) -> Path:
    """Compile ``cpu_fill.c`` and ``cpu_random.c`` into one library in ``out_dir`` (default: the cache) unless
    already there; its path.

    On a CPU with AVX-512 (F, VL, DQ, BW) the 512-bit Philox and 16-lane transforms too (the same IEEE
    operations: the same bits); the AVX2 build where the compiler refuses them."""
    return native.build_widest(SOURCES, [compile_flags(avx512=True), compile_flags()], out_dir, log)


def load(path) -> ctypes.CDLL:
    """Load a built fill library and declare its entry points."""
    lib = ctypes.CDLL(str(path))
    lib.depthinit_fill.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int]
    lib.depthinit_fill.restype = ctypes.c_int
    lib.depthinit_fill_standard.argtypes = [
        ctypes.c_int, ctypes.c_uint64, ctypes.c_int64, ctypes.c_uint32, ctypes.c_uint64,
        ctypes.c_float, ctypes.c_float, ctypes.c_float, ctypes.c_void_p,
    ]  # fmt: skip
    lib.depthinit_fill_standard.restype = ctypes.c_int
    native.use_torch_threads(lib)
    return lib


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded kernel, or None when it is turned off or cannot be built (logged once)."""
    return native.open_library(build, load, "DEPTHINIT_FILL_COMPILE", "depthinit.fill", log)


def _geometry_ints(geo: ShardGeometry, numel: int) -> tuple[int, int, int, int]:
    """``(outer, run, gstride, start)``: run ``a`` of ``run`` elements starts at global ``a * gstride + start``."""
    if geo.local_numel != numel:
        raise ValueError(f"geometry {geo} describes {geo.local_numel} local elements, the tensor has {numel}")
    return geo.outer, geo.local_mid * geo.inner, geo.global_mid * geo.inner, geo.offset * geo.inner


@dataclass
class CpuFill:
    """The tables of one CPU fill call; build with :func:`prepare`, run with ``fill(seed)``.

    Holds its tensors, so the pointers stay valid while it is cached (a plan keeps it across ``apply()``).
    """

    ints: np.ndarray  # int64 [T, NI]
    floats: np.ndarray  # fp64 [T, NF]
    lib: ctypes.CDLL
    tensors: list = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._tables = (self.ints.shape[0], self.ints.ctypes.data, self.floats.ctypes.data)  # read once

    def __call__(self, seed: int, threads: int | None = None) -> None:
        n, ints, floats = self._tables
        if n == 0:
            return
        threads = torch.get_num_threads() if threads is None else int(threads)
        if self.lib.depthinit_fill(n, ints, floats, seed, threads) != 0:
            raise MemoryError("depthinit.fill: the CPU kernel could not allocate its buffers")


def prepare(tensors: Sequence[torch.Tensor], rows: Sequence[FillRow], lib: ctypes.CDLL | None = None) -> CpuFill:
    """Tables for contiguous CPU tensors (fp32, fp16, bf16, fp64; ``numel > 0``) and their rows."""
    return prepare_described([(t, r, t.data_ptr(), t.dtype, t.numel()) for t, r in zip(tensors, rows)], lib)


def prepare_described(entries: Sequence[tuple], lib: ctypes.CDLL | None = None) -> CpuFill:
    """:func:`prepare` of ``(tensor, row, data pointer, dtype, numel)`` entries (what the caller read already)."""
    lib = _library(lib)
    if not entries:
        return _tables((), (), (), (), (), lib)
    tensors, rows, ptrs, dtypes, numels = zip(*entries)
    geometry = [(1, numel, numel, 0) if r.geometry is None else _geometry_ints(r.geometry, numel)
                for r, numel in zip(rows, numels)]  # fmt: skip
    return _tables(tensors, tuple(zip(*rows)), ptrs, dtypes, numels, lib, geometry)


def prepare_whole(
    tensors: Sequence[torch.Tensor], columns: tuple, ptrs: Sequence[int], dtypes: Sequence[torch.dtype],
    numels: Sequence[int], lib: ctypes.CDLL | None = None,
) -> CpuFill:  # fmt: skip
    """:func:`prepare_described` of whole tensors from columns the caller read already (C-level maps): the
    table is built column by column, with no Python work per tensor. ``columns``: the ``FillRow`` fields as
    columns, ``tuple(zip(*rows))``, every geometry None."""
    return _tables(tensors, columns, ptrs, dtypes, numels, _library(lib))


def _library(lib: ctypes.CDLL | None) -> ctypes.CDLL:
    lib = lib or library()
    if lib is None:
        raise RuntimeError("the CPU fill kernel is not available (see the log)")
    return lib


def _tables(
    tensors: Sequence, columns: tuple, ptrs: Sequence, dtypes: Sequence, numels: Sequence, lib: ctypes.CDLL,
    geometry: list | None = None,
) -> CpuFill:  # fmt: skip
    """The tables of non-empty tensors from the rows' columns; ``geometry``: one ``(outer, run, gstride, start)``
    per tensor (None: whole tensors, ``(1, numel, numel, 0)``)."""
    n = len(tensors)
    if n == 0:
        return CpuFill(np.zeros((0, NI), dtype=np.int64), np.zeros((0, NF), dtype=np.float64), lib, [])
    dist, mean, std, low, high, stream, _ = columns
    streams = _streams(stream)
    floats = _parameters(n, (dist, mean, std, low, high), dtypes)
    ints = np.empty((n, NI), dtype=np.int64)
    ints[:, 3] = streams
    ints[:, 0] = ptrs
    one = dtypes.count(dtypes[0]) == n
    ints[:, 1] = DTYPE_CODES[dtypes[0]] if one else list(map(DTYPE_CODES.__getitem__, dtypes))
    ints[:, 2] = dist[0] if dist.count(dist[0]) == n else dist
    if geometry is not None:
        ints[:, 4:] = geometry
    else:
        ints[:, 4], ints[:, 7] = 1, 0
        ints[:, 5] = numels
        ints[:, 6] = ints[:, 5]
    return CpuFill(ints, floats, lib, list(tensors))


def _parameters(n: int, columns: tuple, dtypes: Sequence) -> np.ndarray:
    """The fp64 ``[n, NF]`` table: :func:`fill_params` once per distinct (distribution, mean, std, low, high,
    dtype), since rows usually differ by stream only; one check per column when every row is alike."""
    if all(c.count(c[0]) == n for c in (*columns, dtypes)):  # list.count: one C-level comparison per row
        return np.tile(np.array(fill_params(*(c[0] for c in columns), dtypes[0]), dtype=np.float64), (n, 1))
    keys = list(zip(*columns, dtypes))
    index = dict.fromkeys(keys)
    for k, key in enumerate(index):
        index[key] = k
    distinct = np.array([fill_params(*key) for key in index], dtype=np.float64).reshape(-1, NF)
    return np.ascontiguousarray(distinct[np.fromiter(map(index.__getitem__, keys), dtype=np.int64, count=n)])


def _streams(stream: Sequence) -> np.ndarray:
    """The stream column as int64, or the ValueError naming the first stream that is not a 32-bit id."""
    try:
        col = np.array(stream, dtype=np.int64)
        ok = col.ndim == 1 and bool(((col >= 0) & (col < 2**32)).all())
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        for s in stream:
            if not 0 <= s < 2**32:
                raise ValueError(f"stream must be a 32-bit id, got {s}")
        col = np.fromiter(stream, dtype=np.int64, count=len(stream))
    return col


def standard_values(dist: int, c_start: int, n: int, stream: int, seed: int, row: FillRow) -> torch.Tensor:
    """fp32 ``[n, 4]`` standard values (z, or u for uniform) the kernel computes for counters
    ``c_start .. c_start + n - 1`` (tests: the transforms against the reference)."""
    lib = _library(None)
    p = dict(zip(FILL_PARAMS, fill_params(row.dist, row.mean, row.std, row.low, row.high, torch.float32)))
    out = torch.empty((n, 4), dtype=torch.float32)
    lib.depthinit_fill_standard(dist, c_start, n, stream, seed, p["cdf_lo"], p["sf_hi"], p["width"], out.data_ptr())
    return out
