"""The CPU statistics kernel (``cpu_stats.c``): built with the system C compiler on first use, called through ctypes.

One call measures every tensor of a list, like the Triton launch on CUDA: the host passes a table of
``(data pointer, dtype code, rows, cols, row stride)``, the kernel reads each element once (two passes
over each 4096-element chunk while it is in L1, fp64 accumulators, Chan merge in chunk order) and
writes the ``[n, 9]`` fp64 rows of the statistics contract. Results are bitwise independent of the
number of threads.

The shared library is built and cached by :mod:`depthinit.kernels.native` (well under a second, once).
Without a C compiler :func:`library` returns None (and logs why once); callers then use the exact torch
path. ``DEPTHINIT_STATS_COMPILE=0`` turns the kernel off.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import operator
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import native, tensor_meta
from .contract import DTYPE_CODES, N_FIELDS
from .native import cache_dir, compile_flags  # noqa: F401  (re-exported: one build mechanism for all C kernels)
from .tensor_meta import check_storage

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu_stats.c")
CHUNK = 4096  # elements per work unit, as in cpu_parallel.h


def build(out_dir: Path | None = None) -> Path:
    """Compile ``cpu_stats.c`` into ``out_dir`` (default: the cache) unless already there; its path."""
    return native.build_widest(SOURCE, [compile_flags(avx512=True), compile_flags()], out_dir, log)


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded kernel, or None when it is turned off or cannot be built (logged once)."""
    return native.open_library(build, load, "DEPTHINIT_STATS_COMPILE", "depthinit.stats", log)


def load(path: str | os.PathLike) -> ctypes.CDLL:
    """Load a built kernel library and declare its entry point."""
    lib = ctypes.CDLL(str(path))
    fn = lib.depthinit_stats
    fn.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    fn.restype = ctypes.c_int
    native.use_torch_threads(lib)
    return lib


def describe(t: Tensor) -> tuple[int, int, int, int, int] | None:
    """``(pointer, dtype code, rows, cols, row stride)`` of a CPU tensor read in place, or None.

    In place: contiguous tensors and dense permutations (one row of all the elements: the statistics
    do not depend on the order), and views whose last dimension is contiguous and whose other
    dimensions collapse into one (e.g. a narrow of the last dimension: a q / k / v third of a fused
    projection's output), and single strided dimensions (rows of one element).
    """
    code = DTYPE_CODES.get(t.dtype)
    if code is None:
        raise TypeError(f"depthinit.stats: the CPU kernel measures {', '.join(map(str, DTYPE_CODES))}, not {t.dtype}")
    n = t.numel()
    if n == 0:
        return (0, code, 0, 0, 0)
    if t.is_contiguous():
        return (t.data_ptr(), code, 1, n, n)
    if is_dense_permutation(t):  # a transpose: every element of one block of memory, once
        return (t.data_ptr(), code, 1, n, n)
    dims = [(sz, st) for sz, st in zip(t.shape, t.stride()) if sz != 1]
    if len(dims) == 1:  # one strided dimension: rows of one element
        return (t.data_ptr(), code, n, 1, dims[0][1])
    if dims[-1][1] != 1:
        return None
    for (_, st), (sz_next, st_next) in zip(dims[:-2], dims[1:-1]):  # the leading dimensions collapse
        if st != st_next * sz_next:
            return None
    cols = dims[-1][0]
    return (t.data_ptr(), code, n // cols, cols, dims[-2][1])


def is_dense_permutation(t: Tensor) -> bool:
    """True when ``t`` covers a contiguous block of memory exactly once (e.g. a transposed weight)."""
    expected = 1
    for st, sz in sorted((st, sz) for sz, st in zip(t.shape, t.stride()) if sz != 1):
        if st != expected:
            return False
        expected *= sz
    return True


def _table(tensors: Sequence[Tensor], keep: list, meta: np.ndarray) -> np.ndarray:
    """The kernel's ``int64 [n, 5]`` table. Contiguous tensors are described from their metadata
    (:func:`tensor_meta.read`, one native call) and NumPy; other views one by one (:func:`describe`)."""
    code, numel = meta[:, tensor_meta.DTYPE], meta[:, tensor_meta.NUMEL]
    if (code < 0).any() or not meta[:, tensor_meta.CONTIGUOUS].all() or any(map(Tensor.is_neg, tensors)):
        return _table_each(tensors, keep)
    outside = tensor_meta.uncovered(meta)
    if outside.size:
        check_storage(tensors[int(outside[0])], True)  # raises the message
    table = np.empty((len(tensors), 5), dtype=np.int64)
    table[:, 0] = meta[:, tensor_meta.PTR]  # 0 for an empty tensor: (0, code, 0, 0, 0)
    table[:, 1] = code
    table[:, 2] = numel > 0
    table[:, 3] = numel
    table[:, 4] = numel
    return table


def _table_each(tensors: Sequence[Tensor], keep: list) -> np.ndarray:
    table = []
    for t in tensors:
        if t.is_neg():  # a negative-bit view (x.conj().imag, torch._neg_view): read its values, not its memory
            t = t.resolve_neg()
            keep.append(t)  # alive until the call returns
        if t.is_contiguous():  # the common case, with as few calls into torch as possible
            code = DTYPE_CODES.get(t.dtype)
            check_storage(t, True)
            n = t.numel()
            d = (t.data_ptr(), code, 1, n, n) if code is not None and n else describe(t)
        else:
            check_storage(t, False)
            d = describe(t)
            if d is None:
                t = t.contiguous()
                d = describe(t)
                keep.append(t)  # alive until the call returns
        table += d
    return np.fromiter(table, dtype=np.int64, count=len(table)).reshape(-1, 5)


def cpu_stats(
    tensors: Sequence[Tensor], threads: int | None = None, lib: ctypes.CDLL | None = None, *, on_cpu: bool = False,
    handles: np.ndarray | None = None,
) -> Tensor:
    """``[n, 9]`` fp64 statistics of CPU tensors (fp32 / fp16 / bf16 / fp64, any strides) in one call.

    ``threads``: default ``torch.get_num_threads()`` (the result does not depend on it). ``lib``: a
    library from :func:`load` (default :func:`library`). Views the table cannot describe are copied.
    ``on_cpu``: the caller checked already that every tensor is on the CPU. ``handles``: their
    :func:`tensor_meta.handles`, when the caller has them.
    """
    lib = lib or library()
    if lib is None:
        raise RuntimeError("the CPU statistics kernel is not available (see the log)")
    if not on_cpu and not all(map(_IS_CPU, tensors)):
        device = next(t.device for t in tensors if not t.is_cpu)
        raise ValueError(f"depthinit.stats: the CPU kernel got a tensor on {device}")
    keep: list = []
    n = len(tensors)
    impl = tensor_meta.handles(tensors) if handles is None else handles
    desc = cached_table(tensors, impl)
    if desc is None:
        meta = tensor_meta.read(tensors, impl)
        desc = _table(tensors, keep, meta) if n else np.zeros((0, 5), dtype=np.int64)
        if not keep:  # a table of the caller's own tensors (no temporaries): reusable for the same list
            _remember(tensors, impl, desc, meta)
    return run(desc, threads, lib)


def run(table: np.ndarray, threads: int | None = None, lib: ctypes.CDLL | None = None) -> Tensor:
    """``[n, 9]`` statistics of the tensors a table describes (from :func:`cached_table`; the caller holds them)."""
    lib = lib or library()
    n = table.shape[0]
    out = torch.empty((n, N_FIELDS), dtype=torch.float64)
    if n:
        threads = torch.get_num_threads() if threads is None else threads
        if lib.depthinit_stats(n, table.ctypes.data, out.data_ptr(), int(threads)) != 0:
            raise MemoryError("depthinit.stats: the CPU kernel could not allocate its chunk table")
    return out


_IS_CPU = operator.attrgetter("is_cpu")


# ----------------------------------------------------------------------------------------------------------
# Tables of lists measured again (a monitor's parameters, a benchmark's list): reused while they still hold
# ----------------------------------------------------------------------------------------------------------

_SHAPE = operator.attrgetter("shape")
_MAX_TABLES = 4
_TABLES: dict = {}  # TensorImpl addresses of the tensors (bytes) -> _Entry: they find an entry, the metadata decides
_SEEN: dict = {}  # those of lists measured once (a list is cached when it comes back)


@dataclass
class _Entry:
    table: np.ndarray
    meta: np.ndarray  # the tensors' metadata when the table was built (tensor_meta.read)
    layout: tuple | None  # shapes and strides where some tensor was not contiguous


def _layout(tensors: Sequence[Tensor]) -> tuple[list, list]:
    return list(map(_SHAPE, tensors)), list(map(Tensor.stride, tensors))


def cached_table(tensors: Sequence[Tensor], handles: np.ndarray | None = None) -> np.ndarray | None:
    """The table built before for a list of the same TensorImpls (:func:`tensor_meta.handles`, or ``handles``),
    if it describes these tensors, else None: the same metadata (:func:`tensor_meta.read`: data pointer, element
    count, storage size and offset, dtype, contiguity) and, where a tensor was not contiguous, the same shapes and
    strides.

    The table is a function of exactly what is compared, so it is right for any tensors that pass, the same
    objects or new ones at reused addresses, whatever ran in place since (an optimizer step, ``t_``). It never
    reads memory a tensor does not own: a storage resized (``untyped_storage().resize_``, a freed FSDP shard) has
    another size, or another address (freed to 0 and allocated again smaller, it can come back at the same
    address: the size tells). The cache holds no reference to any tensor, strong or weak (a weak one would make
    ``torch.utils.swap_tensors`` refuse the tensor)."""
    if not tensors:
        return None
    handles = tensor_meta.handles(tensors) if handles is None else handles
    key = handles.tobytes()
    entry = _TABLES.get(key)
    if entry is None:
        return None
    if not np.array_equal(tensor_meta.read(tensors, handles), entry.meta) or (
        entry.layout is not None and _layout(tensors) != entry.layout
    ):
        del _TABLES[key]
        return None
    return entry.table


def _remember(tensors: Sequence[Tensor], handles: np.ndarray, table: np.ndarray, meta: np.ndarray) -> None:
    if not tensors:
        return
    key = handles.tobytes()
    if _SEEN.pop(key, None) is None:
        _SEEN[key] = True
        while len(_SEEN) > 2 * _MAX_TABLES:
            del _SEEN[next(iter(_SEEN))]
        return
    _TABLES[key] = _Entry(table, meta, None if meta[:, tensor_meta.CONTIGUOUS].all() else _layout(tensors))
    while len(_TABLES) > _MAX_TABLES:
        del _TABLES[next(iter(_TABLES))]
