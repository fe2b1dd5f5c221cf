"""Fill many tensors at once under the random-number contract (DESIGN.md), on any backend.

``fill_tensors(tensors, rows, seed)`` writes into each tensor the values that :func:`depthinit.rng.reference_values`
defines for its :class:`~depthinit.kernels.contract.FillRow` (distribution, parameters, stream, shard geometry):

* ``backend="auto"``: CUDA tensors go to the fused Triton kernel (:mod:`depthinit.kernels.fill`, one launch per
  device for fp32, fp16 and bf16), CPU tensors to the C kernel (:mod:`depthinit.kernels.cpu_fill`, one
  multi-threaded call for every tensor), other devices and fp64 CUDA tensors to the torch path;
* ``backend="native"``: the C kernel for CPU tensors (an error if it cannot be built);
* ``backend="triton"``: the Triton kernel; on CPU tensors it runs under the Triton interpreter (tests: slow);
* ``backend="torch"``: the torch path everywhere.

The C kernel is built with the system C compiler on first use (under a second, then cached on disk).
Without a compiler, ``auto`` logs one warning and uses the torch path: the same values, slower. The torch path
computes a tensor in blocks of ``EAGER_CHUNK`` counters (Philox once per counter, all four words used) and copies
each block into place.

DTensor parameters are filled through their local shard, whose global position comes from
:func:`depthinit.distributed.local_geometry`: every sharding gives exactly the slice of the unsharded values.
Non-contiguous tensors are filled through a contiguous buffer and copied back.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from depthinit import rng
from depthinit.distributed import dtensor_class, is_dtensor, local_geometry, local_tensor
from depthinit.kernels import cpu_fill, tensor_meta
from depthinit.kernels.contract import DIST_CONSTANT, FillRow

__all__ = ["fill_tensors", "prepare_fill", "PreparedFill", "warmup_cpu", "BACKENDS", "EAGER_CHUNK"]

BACKENDS = ("auto", "native", "triton", "torch")
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
FILL_DTYPES = (*KERNEL_DTYPES, torch.float64)
EAGER_CHUNK = 1 << 13  # counters per torch-path block: its ~25 live int64 temporaries stay near 2 MiB
SHORT_RUN = 4096  # shards made of runs shorter than this (Shard(d > 0) of narrow tensors) go element by element


# ----------------------------------------------------------------------------------------------------------------
# the torch path
# ----------------------------------------------------------------------------------------------------------------


def warmup_cpu(dists: Sequence[int] = ()) -> float:
    """Build (or load from the on-disk cache) the CPU fill kernel now; returns the seconds spent.

    Lets a benchmark or a memory measurement keep the one-time build out of what it times. ``dists`` is
    accepted for compatibility: one kernel serves every distribution.
    """
    import time

    t0 = time.perf_counter()
    cpu_fill.library()
    return time.perf_counter() - t0


def _torch_fill(flat: torch.Tensor, row: FillRow, seed: int) -> None:
    """Fill the contiguous 1-D ``flat`` (local elements of ``row``'s geometry) with the contract values."""
    n = flat.numel()
    if n == 0:
        return
    if row.dist == DIST_CONSTANT:
        flat.copy_(rng.reference_values(row, seed, 1, flat.dtype).expand(n))
        return
    geo = row.geometry
    run = n if geo is None else geo.local_mid * geo.inner
    outer = 1 if geo is None else geo.outer
    if outer > 1 and run < SHORT_RUN:  # many short runs: the element-wise oracle over pieces of the tensor
        piece = 4 * EAGER_CHUNK
        for i in range(0, n, piece):
            idx = torch.arange(i, min(i + piece, n), dtype=torch.int64, device=flat.device)
            flat[i : i + idx.numel()].copy_(rng.reference_values(row, seed, idx, flat.dtype))
        return
    dev = flat.device
    k0, k1 = (torch.tensor(k, dtype=torch.int64, device=dev) for k in rng.seed_key(seed))
    stream = torch.tensor(int(row.stream), dtype=torch.int64, device=dev)
    params = rng.fill_params(row, dev, flat.dtype)
    gstride = 0 if geo is None else geo.global_mid * geo.inner
    start = 0 if geo is None else geo.offset * geo.inner
    for a in range(outer):
        g0 = a * gstride + start  # global index of the run's first element
        seg = flat[a * run : (a + 1) * run]
        c_end = -(-(g0 + run) // 4)
        for c in range(g0 // 4, c_end, EAGER_CHUNK):
            m = min(EAGER_CHUNK, c_end - c)
            c0 = torch.tensor(c, dtype=torch.int64, device=dev)
            values = rng.counter_block_values(row.dist, m, c0, stream, k0, k1, params, flat.dtype)
            lo, hi = max(4 * c, g0), min(4 * (c + m), g0 + run)
            seg[lo - g0 : hi - g0].copy_(values.reshape(-1)[lo - 4 * c : hi - 4 * c])


# ----------------------------------------------------------------------------------------------------------------
# dispatch
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class PreparedFill:
    """A fill prepared once (targets checked, buffers and kernel tables built), run with ``prepared(seed)``.

    A plan can keep it and run it again with any seed; it holds the tensors, the staging buffers of
    non-contiguous targets, the C kernel's tables and the Triton launches (device pointer and chunk tables).
    """

    launches: list = field(default_factory=list)  # depthinit.kernels.fill.FillLaunch, one per device
    native: list = field(default_factory=list)  # depthinit.kernels.cpu_fill.CpuFill (at most one)
    torch_jobs: list = field(default_factory=list)  # (contiguous 1-D tensor, FillRow)
    copies: list = field(default_factory=list)  # (destination, staging buffer), after the fills

    def __call__(self, seed: int) -> None:
        rng.seed_key(seed)  # validate before writing anything
        with torch.no_grad():
            for launch in self.launches:
                launch(seed)
            for job in self.native:
                job(seed)
            for flat, row in self.torch_jobs:
                _torch_fill(flat, row, seed)
            for dest, buf in self.copies:
                dest.copy_(buf)


_DTYPE_ERROR = (
    "the fill writes floating-point tensors ("
    + ", ".join(str(d).replace("torch.", "") for d in FILL_DTYPES)
    + "): integer, bool and complex tensors cannot take these distributions"
)


def _check_target(t: object, i: int) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"tensors[{i}] is a {type(t).__name__}, not a tensor")
    if t.is_meta or (is_dtensor(t) and local_tensor(t).is_meta):
        raise ValueError(
            f"tensors[{i}] is on the meta device and has no storage to fill: materialize it first "
            "(depthinit.materialize(model, device=...), or module.to_empty(device=...))"
        )
    if t.dtype not in FILL_DTYPES:
        raise TypeError(f"tensors[{i}] has dtype {t.dtype}; {_DTYPE_ERROR}")


def _local_row(t: torch.Tensor, row: FillRow, i: int) -> tuple[torch.Tensor, FillRow]:
    """The tensor to write (local shard of a DTensor) and its row with the shard geometry filled in."""
    if not isinstance(row, FillRow):
        raise TypeError(f"rows[{i}] is a {type(row).__name__}, not a FillRow")
    if not is_dtensor(t):
        return t, row
    geo = local_geometry(t)
    geo = None if geo.is_full else geo
    if row.geometry is not None and row.geometry != geo:
        raise ValueError(f"rows[{i}].geometry {row.geometry} contradicts the DTensor's placements ({geo})")
    return local_tensor(t), row._replace(geometry=geo)


def _resolve_backend(backend: str, device: torch.device) -> str:
    """``native``, ``triton`` or ``torch`` for the tensors of one device."""
    if backend == "torch":
        return "torch"
    if device.type == "cpu" and backend in ("auto", "native"):
        if cpu_fill.library() is not None:
            return "native"
        if backend == "native":
            raise RuntimeError("backend='native': the CPU fill kernel could not be built (see the logged warning)")
        return "torch"
    if backend == "native":
        raise ValueError(f"backend='native' fills CPU tensors; got a tensor on {device}")
    if backend == "auto" and device.type != "cuda":
        return "torch"
    try:
        import triton  # noqa: F401
    except ImportError as err:
        if backend == "triton":
            raise ImportError("backend='triton' needs the triton package (pip install triton)") from err
        return "torch"
    return "triton"


_FILL_DTYPE_SET = frozenset(FILL_DTYPES)
_PLAIN_TENSORS = frozenset((torch.Tensor, torch.nn.Parameter))
_FILL_ROW = frozenset((FillRow,))
_DTYPE, _IS_CPU = operator.attrgetter("dtype"), operator.attrgetter("is_cpu")


def _prepare_plain_cpu(tensors: list, rows: list, backend: str) -> PreparedFill | None:
    """:func:`prepare_fill` of the common case, with C-level maps over the list instead of a Python loop: plain
    contiguous non-empty CPU tensors of the fill dtypes at distinct data pointers, whole-tensor rows, the C
    kernel available. None when any of that does not hold (the general loop then decides, and names errors)."""
    n = len(tensors)
    if n == 0 or backend not in ("auto", "native"):
        return None
    if not _PLAIN_TENSORS.issuperset(map(type, tensors)) or not _FILL_ROW.issuperset(map(type, rows)):
        return None
    if not all(map(_IS_CPU, tensors)):
        return None
    try:
        meta = tensor_meta.read(tensors)  # one native read: pointers, sizes, storage, dtype, contiguity
    except RuntimeError:  # a tensor without storage (sparse): the loop names it
        return None
    columns = tuple(zip(*rows))  # the FillRow fields, one tuple each
    numels = meta[:, tensor_meta.NUMEL]
    if (meta[:, tensor_meta.DTYPE] < 0).any() or not meta[:, tensor_meta.CONTIGUOUS].all() or not numels.all():
        return None
    if columns[6].count(None) != n or _resolve_backend(backend, torch.device("cpu")) != "native":
        return None
    outside = tensor_meta.uncovered(meta)
    if outside.size:  # freed or resized storage: never written
        _check_storage(tensors[int(outside[0])], int(outside[0]))
    ptrs = meta[:, tensor_meta.PTR]
    dtypes = list(map(_DTYPE, tensors))
    order = np.sort(ptrs)
    if (order[1:] == order[:-1]).any():  # tied or repeated tensors: the loop fills each storage once
        return None
    return PreparedFill(native=[cpu_fill.prepare_whole(tensors, columns, ptrs, dtypes, numels)])


def _check_storage(t: torch.Tensor, i: int) -> None:
    """A clear error, before anything is written, for a target whose storage was freed or resized."""
    tensor_meta.check_storage(t, who="depthinit.fill", what=f"tensors[{i}]",
                              fix="initialize it while it is materialized (or materialize the model first)")


def _layout(t: torch.Tensor) -> tuple:
    return (t.device, t.dtype, t.shape, t.stride())


def prepare_fill(
    tensors: Sequence[torch.Tensor], rows: Sequence[FillRow], backend: str = "auto"
) -> PreparedFill:
    """Check the targets and build everything a fill needs except the seed (see :func:`fill_tensors`).

    Plain contiguous CPU tensors at distinct pointers (the usual model) are read with one C-level map per
    attribute; otherwise the loop touches each tensor a handful of times. Shape and strides are only compared
    for tensors that share a data pointer (tied or overlapping).
    """
    tensors, rows = list(tensors), list(rows)
    if len(tensors) != len(rows):
        raise ValueError(f"fill_tensors got {len(tensors)} tensors but {len(rows)} rows")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    fast = _prepare_plain_cpu(tensors, rows, backend)
    if fast is not None:
        return fast
    prepared = PreparedFill()
    groups: dict[torch.device, tuple[list, list]] = {}  # Triton launches: device -> (buffers, rows)
    native: list = []  # the C kernel: (tensor, row, data pointer, dtype, numel)
    kinds: dict[torch.device, str] = {}
    seen: dict[int, list] = {}  # data pointer -> [(tensor, row)]
    dtensor = dtensor_class()
    for i, (t, row) in enumerate(zip(tensors, rows)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"tensors[{i}] is a {type(t).__name__}, not a tensor")
        if dtensor is not None and isinstance(t, dtensor):
            _check_target(t, i)
            t, row = _local_row(t, row, i)
        elif type(row) is not FillRow and not isinstance(row, FillRow):
            raise TypeError(f"rows[{i}] is a {type(row).__name__}, not a FillRow")
        if t.layout is not torch.strided:
            raise ValueError(f"tensors[{i}] has layout {t.layout}; the fill writes dense (strided) tensors")
        dtype, numel, ptr = t.dtype, t.numel(), t.data_ptr()
        if (ptr == 0 and t.is_meta) or dtype not in _FILL_DTYPE_SET:
            _check_target(t, i)
        _check_storage(t, i)
        if row.geometry is not None and row.geometry.local_numel != numel:
            raise ValueError(f"rows[{i}].geometry covers {row.geometry.local_numel} elements, the tensor has {numel}")
        if numel == 0:
            continue
        entry = seen.get(ptr)
        if entry is None:
            seen[ptr] = [(t, row)]
        else:  # a tied tensor listed twice: fill it once
            key = _layout(t)
            same = [r for u, r in entry if _layout(u) == key]
            if same:
                if same[0] != row:
                    raise ValueError(f"tensors[{i}] appears twice with different rows ({same[0]} and {row})")
                continue
            entry.append((t, row))
        device = t.device
        kind = kinds.get(device)
        if kind is None:
            kind = kinds[device] = _resolve_backend(backend, device)
        if kind == "triton" and dtype == torch.float64:
            kind = "torch"  # fp64 parameters: the torch path on the device (the kernel computes in fp32)
        if not t.is_contiguous():
            buf = torch.empty(t.shape, dtype=dtype, device=device)
            prepared.copies.append((t, buf))
            t, ptr = buf, buf.data_ptr()
        if kind == "torch":
            rng.fill_params(row, None, dtype)  # validate the parameters now, before anything is written
            prepared.torch_jobs.append((t.view(-1), row))
        elif kind == "native":
            native.append((t, row, ptr, dtype, numel))
        else:
            group = groups.get(device)
            if group is None:
                group = groups[device] = ([], [])
            group[0].append(t)
            group[1].append(row)
    if native:
        prepared.native.append(cpu_fill.prepare_described(native))
    for bufs, group_rows in groups.values():
        from depthinit.kernels.fill import prepare_fill as prepare_launch

        prepared.launches.append(prepare_launch(bufs, group_rows))
    return prepared


def fill_tensors(
    tensors: Sequence[torch.Tensor], rows: Sequence[FillRow], seed: int, backend: str = "auto"
) -> None:
    """Fill ``tensors[i]`` in place with the contract values of ``rows[i]`` for ``seed``.

    Every value depends only on ``(seed, rows[i].stream, global element index)``: the same seed gives the same
    weights on any device, with any sharding, in any order. The values are defined once, in :mod:`depthinit.rng`
    (the random-number contract).

    Args:
        tensors: floating-point tensors (fp32, fp16, bf16, fp64), plain or DTensor, any layout.
        rows: one :class:`~depthinit.kernels.contract.FillRow` per tensor (distribution code, mean, std,
            low, high, stream; ``geometry`` for a plain tensor that is a shard of a larger one).
        seed: int in ``[0, 2**64)``.
        backend: ``"auto"`` (Triton on CUDA, the C kernel on CPU), ``"native"`` (the C kernel), ``"triton"`` (on
            CPU: the interpreter), ``"torch"``.

    Example:
        >>> w = torch.empty(512, 512)
        >>> fill_tensors([w], [FillRow(DIST_NORMAL, std=0.02, stream=rng.stream_id("fc.weight"))], seed=0)
    """
    rng.seed_key(seed)
    prepare_fill(tensors, rows, backend)(seed)
