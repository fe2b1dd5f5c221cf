"""The metadata of many tensors in one native call (``tensor_meta.c``): what the kernels' tables are built from
and checked against, at one Python attribute read a tensor (``Tensor._cdata``) instead of five or six. Nothing is
dereferenced but torch's own bookkeeping, so tensors of any device can be read (a plan's cached fill checks its
CUDA targets this way too).

:func:`read` returns ``int64 [n, M_FIELDS]``: data pointer, element count, storage bytes, storage offset, kernel
dtype code (``DTYPE_CODES``, -1 for other dtypes) and contiguity of each tensor. The native reader goes through
torch's stable C shim (the ``aoti_torch_get_*`` functions of libtorch_cpu); it is used only after it read a set
of known tensors (views, offsets, every kernel dtype, an empty tensor) exactly as their Python attributes give
them. Otherwise (no C compiler, no shim, ``DEPTHINIT_STATS_COMPILE=0``, a tensor the shim refuses) the same
array comes from Python attribute reads.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import operator
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, UntypedStorage

from . import native
from .contract import DTYPE_CODES

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("tensor_meta.c")
PTR, NUMEL, NBYTES, OFFSET, DTYPE, CONTIGUOUS = range(6)
M_FIELDS = 6
_SHIM = ("aoti_torch_get_data_ptr", "aoti_torch_get_numel", "aoti_torch_get_storage_size",
         "aoti_torch_get_storage_offset", "aoti_torch_get_dtype", "aoti_torch_is_contiguous")  # fmt: skip
_CDATA = operator.attrgetter("_cdata")


class _Reader:
    """The loaded ``depthinit_tensor_meta`` with the shim's function pointers and the scalar type -> code map."""

    def __init__(self, fn, fns, codes: np.ndarray) -> None:
        self.fn, self.fns, self.codes = fn, fns, codes
        self._codes = codes.ctypes.data  # the array stays alive with the reader

    def __call__(self, tensors: Sequence[Tensor], impl: np.ndarray | None = None) -> np.ndarray | None:
        n = len(tensors)
        impl = handles(tensors) if impl is None else impl
        out = np.empty((n, M_FIELDS), dtype=np.int64)
        if n and self.fn(n, impl.ctypes.data, self.fns, self._codes, self.codes.size, out.ctypes.data) >= 0:
            return None
        return out


def _shim_library() -> ctypes.CDLL:
    lib_dir = Path(torch.__file__).parent / "lib"
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib"):
        if (lib_dir / name).exists():
            return ctypes.CDLL(str(lib_dir / name))
    raise OSError(f"no libtorch_cpu in {lib_dir}")


def _load(path: Path) -> _Reader:
    shim = _shim_library()
    try:
        addresses = [ctypes.cast(getattr(shim, name), ctypes.c_void_p).value for name in _SHIM]
    except AttributeError as exc:  # a torch without this shim function
        raise OSError(str(exc)) from None
    fns = (ctypes.c_void_p * len(_SHIM))(*addresses)
    fn = ctypes.PyDLL(str(path)).depthinit_tensor_meta  # the GIL stays held: no tensor can change under the read
    fn.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
    fn.restype = ctypes.c_int64
    # the scalar type numbers of the kernel dtypes, read from one tensor of each through an identity map
    identity = np.arange(256, dtype=np.int64)
    probes = [torch.zeros(1, dtype=dt) for dt in DTYPE_CODES]
    scalar = _Reader(fn, fns, identity)(probes)
    if scalar is None:
        raise RuntimeError("the shim refused a plain tensor")
    scalar = scalar[:, DTYPE]
    if scalar.min() < 0 or len(set(scalar.tolist())) != len(probes):
        raise RuntimeError(f"unexpected scalar types {scalar.tolist()}")
    codes = np.full(256, -1, dtype=np.int64)  # torch scalar type -> kernel dtype code
    codes[scalar] = list(DTYPE_CODES.values())
    reader = _Reader(fn, fns, codes)
    _self_test(reader)
    return reader


def _self_test(reader: _Reader) -> None:
    """Raise unless the native reader gives exactly what Python attributes give on known tensors."""
    x = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    probes = [x, x[2:], x.t(), x[:, 3:7], torch.empty(0), torch.empty(0, 4)[:, 1:],
              *(torch.ones(3, 5, dtype=dt)[1:] for dt in DTYPE_CODES), torch.zeros(2, dtype=torch.int32)]  # fmt: skip
    got, want = reader(probes), _read_python(probes)
    if got is None or not np.array_equal(got, want):
        raise RuntimeError(f"the native reader gave {None if got is None else got.tolist()}, not {want.tolist()}")


def _build() -> Path:
    return native.build(SOURCE, native.compile_flags())


@functools.cache
def reader() -> _Reader | None:
    """The native reader, or None (logged once) when it cannot be built or does not read tensors right."""
    return native.open_library(_build, _load, "DEPTHINIT_STATS_COMPILE", "depthinit tensor metadata", log)


def handles(tensors: Sequence[Tensor]) -> np.ndarray:
    """``int64 [n]``: the TensorImpl address of each tensor (``Tensor._cdata``, one attribute read a tensor): what
    the native reader reads from, and a key of the list that changes when a tensor object is swapped
    (``torch.utils.swap_tensors``) or replaced. It keeps nothing alive and guarantees nothing about the metadata."""
    return np.fromiter(map(_CDATA, tensors), dtype=np.int64, count=len(tensors))


def read(tensors: Sequence[Tensor], impl: np.ndarray | None = None) -> np.ndarray:
    """``int64 [n, M_FIELDS]`` metadata of CPU tensors (see the module docstring), natively where it can.
    ``impl``: :func:`handles` of the same tensors, when the caller has them."""
    r = reader()
    out = r(tensors, impl) if r is not None else None
    return out if out is not None else _read_python(tensors)


_DTYPE = operator.attrgetter("dtype")


def _read_python(tensors: Sequence[Tensor]) -> np.ndarray:
    n = len(tensors)
    out = np.empty((n, M_FIELDS), dtype=np.int64)
    T = Tensor
    out[:, NUMEL] = np.fromiter(map(T.numel, tensors), dtype=np.int64, count=n)
    out[:, PTR] = np.fromiter(map(T.data_ptr, tensors), dtype=np.int64, count=n)
    out[:, PTR] = np.where(out[:, NUMEL] > 0, out[:, PTR], 0)
    out[:, NBYTES] = np.fromiter(map(UntypedStorage.nbytes, map(T.untyped_storage, tensors)), dtype=np.int64, count=n)
    out[:, OFFSET] = np.fromiter(map(T.storage_offset, tensors), dtype=np.int64, count=n)
    out[:, DTYPE] = np.fromiter((DTYPE_CODES.get(d, -1) for d in map(_DTYPE, tensors)), dtype=np.int64, count=n)
    out[:, CONTIGUOUS] = np.fromiter(map(T.is_contiguous, tensors), dtype=np.int64, count=n)
    return out


_ITEMSIZE = np.array([4, 2, 2, 8, 0], dtype=np.int64)  # bytes per element of each kernel dtype code (-1: 0)


def uncovered(meta: np.ndarray) -> np.ndarray:
    """Indices of the contiguous non-empty tensors of ``meta`` (:func:`read`) whose storage no longer holds their
    elements (freed or resized); tensors of other dtypes are never listed."""
    numel = meta[:, NUMEL]
    extent = (meta[:, OFFSET] + numel) * _ITEMSIZE[meta[:, DTYPE]]
    return np.flatnonzero((numel > 0) & (meta[:, CONTIGUOUS] == 1) & (extent > meta[:, NBYTES]))


def check_storage(t: Tensor, contiguous: bool | None = None, who: str = "depthinit.stats", what: str = "a tensor",
                  fix: str = "measure it while it is materialized") -> None:  # fmt: skip
    """Kernels read and write raw memory: refuse a view whose storage no longer covers it (freed or resized), on
    every backend, with one message (``who``, ``what`` and ``fix`` name the caller, the tensor and what to do).
    ``contiguous``: ``t.is_contiguous()`` when the caller knows it."""
    n = t.numel()
    if n == 0 or t.is_meta:
        return
    if contiguous if contiguous is not None else t.is_contiguous():
        extent = t.storage_offset() + n
    else:
        extent = t.storage_offset() + sum((k - 1) * st for k, st in zip(t.shape, t.stride())) + 1
    if extent * t.element_size() > t.untyped_storage().nbytes():
        raise ValueError(
            f"{who}: {what} of shape {tuple(t.shape)} lies outside its storage "
            f"({t.untyped_storage().nbytes()} bytes): its memory was freed or resized (e.g. an unsharded "
            f"parameter outside forward / backward); {fix}"
        )
