"""Fill many tensors at once under the random-number contract (DESIGN.md), on any backend.

``fill_tensors(tensors, rows, seed)`` writes into each tensor the values that :func:`depthinit.rng.reference_values`
defines for its :class:`~depthinit.kernels._tables.FillRow` (distribution, parameters, stream, shard geometry):

* ``backend="auto"``: CUDA tensors go to the fused Triton kernel (:mod:`depthinit.kernels.fill`, one launch per
  device for all dtypes), CPU tensors to the torch path;
* ``backend="triton"``: the kernel; on CPU tensors it runs under the Triton interpreter (tests: slow);
* ``backend="torch"``: the torch path everywhere.

The torch path computes a tensor in blocks of counters (Philox once per counter, all four words used) and copies
each block into place, so it allocates one block at a time (``EAGER_CHUNK`` counters eager, ``CPU_CHUNK``
compiled: one 1 MiB output per call). On CPU, when a call fills
at least ``COMPILE_MIN_NUMEL`` random elements, the block function is ``torch.compile``'d (once per distribution,
dynamic block length; inductor's on-disk cache keeps the compiled code across processes); if compiling fails,
the eager function is used. ``DEPTHINIT_CPU_COMPILE=0`` turns compiling off, ``=1`` compiles for any size.

DTensor parameters are filled through their local shard, whose global position comes from
:func:`depthinit.distributed.local_geometry`: every sharding gives exactly the slice of the unsharded values.
Non-contiguous tensors are filled through a contiguous buffer and copied back; fp64 tensors take fp32 values
(exact), through an fp32 buffer on the kernel path.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from depthinit import rng
from depthinit.distributed import is_dtensor, local_geometry, local_tensor
from depthinit.kernels._tables import DIST_CONSTANT, DIST_NORMAL, DIST_TRUNC_NORMAL, DIST_UNIFORM, FillRow

__all__ = ["fill_tensors", "prepare_fill", "PreparedFill", "warmup_cpu", "BACKENDS", "CPU_CHUNK", "COMPILE_MIN_NUMEL"]

BACKENDS = ("auto", "triton", "torch")
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
FILL_DTYPES = (*KERNEL_DTYPES, torch.float64)
CPU_CHUNK = 1 << 16  # counters per compiled block (4 * 2**16 fp32 values: 1 MiB)
EAGER_CHUNK = 1 << 13  # counters per eager block: its ~25 live int64 temporaries stay near 2 MiB
COMPILE_MIN_NUMEL = 1 << 20  # random elements in one call from which the CPU path compiles its block function
SHORT_RUN = 4096  # shards made of runs shorter than this (Shard(d > 0) of narrow tensors) go element by element
_RANDOM_DISTS = (DIST_NORMAL, DIST_UNIFORM, DIST_TRUNC_NORMAL)


# ----------------------------------------------------------------------------------------------------------------
# the torch path
# ----------------------------------------------------------------------------------------------------------------


def _eager_block(dist: int, n: int, c_start, stream, k0, k1, params: dict) -> torch.Tensor:
    return rng.counter_block_values(dist, n, c_start, stream, k0, k1, params)


_compiled: dict[int, object] = {}
_compile_failed: list[str] = []


def _compile_mode() -> str:
    mode = os.environ.get("DEPTHINIT_CPU_COMPILE", "auto").strip().lower()
    return {"0": "never", "false": "never", "1": "always", "true": "always"}.get(mode, "auto")


def _block_function(dist: int, device: torch.device, total_random: int) -> tuple[object, int]:
    """``(fn, chunk)``: ``fn(dist, n, c_start, stream, k0, k1, params)`` returns at least ``n <= chunk`` rows of
    ``[., 4]`` values; compiled on CPU for large calls, else the eager reference.

    The compiled function always computes ``CPU_CHUNK`` counters (one static shape, compiled once per
    distribution); the caller uses the first ``n`` rows. Calls below ``COMPILE_MIN_NUMEL`` random elements, other
    devices, and any call after a compile failure use the eager function on blocks of ``EAGER_CHUNK`` counters.
    """
    mode = _compile_mode()
    eager = (_eager_block, EAGER_CHUNK if device.type == "cpu" else CPU_CHUNK)  # GPU: fewer, larger launches
    if device.type != "cpu" or mode == "never" or _compile_failed:
        return eager
    if mode == "auto" and total_random < COMPILE_MIN_NUMEL:
        return eager
    if dist not in _compiled:
        compiled = torch.compile(rng.counter_block_values, dynamic=False, fullgraph=True)

        def run(dist_, n, *args, _fn=compiled):
            try:
                with torch.no_grad():  # one grad mode: no recompile between callers inside and outside no_grad
                    return _fn(dist_, CPU_CHUNK, *args)
            except Exception as err:  # noqa: BLE001 - any compile failure falls back to the eager reference
                if not _compile_failed:
                    warnings.warn(
                        f"torch.compile of the CPU fill failed ({type(err).__name__}: {err}); using the eager "
                        "reference (slower, same values)",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                _compile_failed.append(repr(err))
                return _eager_block(dist_, n, *args)

        _compiled[dist] = run
    return _compiled[dist], CPU_CHUNK


def warmup_cpu(dists: Sequence[int] = (DIST_NORMAL, DIST_UNIFORM, DIST_TRUNC_NORMAL)) -> float:
    """Compile (or load from inductor's on-disk cache) the CPU block functions now; returns the seconds spent.

    Lets a benchmark or a memory measurement keep the one-time compile out of what it times. Respects
    ``DEPTHINIT_CPU_COMPILE=0``.
    """
    t0 = time.perf_counter()
    for dist in dists:
        buf = torch.empty(4 * CPU_CHUNK)
        _torch_fill(buf, FillRow(dist, stream=0), 0, total_random=COMPILE_MIN_NUMEL)
    return time.perf_counter() - t0


def _torch_fill(flat: torch.Tensor, row: FillRow, seed: int, total_random: int) -> None:
    """Fill the contiguous 1-D ``flat`` (local elements of ``row``'s geometry) with the contract values."""
    n = flat.numel()
    if n == 0:
        return
    if row.dist == DIST_CONSTANT:
        flat.fill_(float(torch.tensor(row.mean, dtype=torch.float32)))
        return
    geo = row.geometry
    run = n if geo is None else geo.local_mid * geo.inner
    outer = 1 if geo is None else geo.outer
    if outer > 1 and run < SHORT_RUN:  # many short runs: the element-wise oracle over pieces of the tensor
        piece = 4 * EAGER_CHUNK
        for i in range(0, n, piece):
            idx = torch.arange(i, min(i + piece, n), dtype=torch.int64, device=flat.device)
            flat[i : i + idx.numel()].copy_(rng.reference_values(row, seed, idx))
        return
    dev = flat.device
    k0, k1 = (torch.tensor(k, dtype=torch.int64, device=dev) for k in rng.seed_key(seed))
    stream = torch.tensor(int(row.stream), dtype=torch.int64, device=dev)
    params = rng.fill_params(row, dev)
    # runs shorter than a quarter block stay eager: a compiled block always computes CPU_CHUNK counters
    block_fn, chunk = _block_function(row.dist, dev, total_random) if run >= CPU_CHUNK else (_eager_block, EAGER_CHUNK)
    gstride = 0 if geo is None else geo.global_mid * geo.inner
    start = 0 if geo is None else geo.offset * geo.inner
    for a in range(outer):
        g0 = a * gstride + start  # global index of the run's first element
        seg = flat[a * run : (a + 1) * run]
        c_end = -(-(g0 + run) // 4)
        for c in range(g0 // 4, c_end, chunk):
            m = min(chunk, c_end - c)
            values = block_fn(row.dist, m, torch.tensor(c, dtype=torch.int64, device=dev), stream, k0, k1, params)
            lo, hi = max(4 * c, g0), min(4 * (c + m), g0 + run)
            seg[lo - g0 : hi - g0].copy_(values.reshape(-1)[lo - 4 * c : hi - 4 * c])


# ----------------------------------------------------------------------------------------------------------------
# dispatch
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class PreparedFill:
    """A fill prepared once (targets checked, buffers and kernel tables built), run with ``prepared(seed)``.

    A plan can keep it and run it again with any seed; it holds the tensors, the staging buffers of
    non-contiguous or fp64 targets, and the kernel launches (device pointer and chunk tables).
    """

    launches: list = field(default_factory=list)  # depthinit.kernels.fill.FillLaunch, one per device
    torch_jobs: list = field(default_factory=list)  # (contiguous 1-D tensor, FillRow)
    copies: list = field(default_factory=list)  # (destination, staging buffer), after the fills

    def __call__(self, seed: int) -> None:
        rng.seed_key(seed)  # validate before writing anything
        total = sum(f.numel() for f, r in self.torch_jobs if r.dist in _RANDOM_DISTS)
        with torch.no_grad():
            for launch in self.launches:
                launch(seed)
            for flat, row in self.torch_jobs:
                _torch_fill(flat, row, seed, total)
            for dest, buf in self.copies:
                dest.copy_(buf)


def _check_target(t: object, i: int) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"tensors[{i}] is a {type(t).__name__}, not a tensor")
    if t.is_meta or (is_dtensor(t) and local_tensor(t).is_meta):
        raise ValueError(
            f"tensors[{i}] is on the meta device and has no storage to fill: materialize it first "
            "(depthinit.materialize(model, device=...), or module.to_empty(device=...))"
        )
    if t.dtype not in FILL_DTYPES:
        raise TypeError(
            f"tensors[{i}] has dtype {t.dtype}; the fill writes floating-point tensors "
            f"({', '.join(str(d).replace('torch.', '') for d in FILL_DTYPES)}): integer, bool and complex "
            "tensors cannot take these distributions"
        )


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
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch" or (backend == "auto" and device.type != "cuda"):
        return "torch"
    try:
        import triton  # noqa: F401
    except ImportError as err:
        if backend == "triton":
            raise ImportError("backend='triton' needs the triton package (pip install triton)") from err
        return "torch"
    return "triton"


def prepare_fill(
    tensors: Sequence[torch.Tensor], rows: Sequence[FillRow], backend: str = "auto"
) -> PreparedFill:
    """Check the targets and build everything a fill needs except the seed (see :func:`fill_tensors`)."""
    tensors, rows = list(tensors), list(rows)
    if len(tensors) != len(rows):
        raise ValueError(f"fill_tensors got {len(tensors)} tensors but {len(rows)} rows")
    prepared = PreparedFill()
    groups: dict[torch.device, tuple[list, list]] = {}
    seen: dict[tuple, FillRow] = {}
    for i, (t, row) in enumerate(zip(tensors, rows)):
        _check_target(t, i)
        target, row = _local_row(t, row, i)
        if row.geometry is not None and row.geometry.local_numel != target.numel():
            raise ValueError(f"rows[{i}].geometry covers {row.geometry.local_numel} elements, the tensor has "
                             f"{target.numel()}")
        if target.numel() == 0:
            continue
        key = (target.device, target.data_ptr(), target.dtype, tuple(target.shape), tuple(target.stride()))
        if key in seen:  # a tied tensor listed twice: fill it once
            if seen[key] != row:
                raise ValueError(f"tensors[{i}] appears twice with different rows ({seen[key]} and {row})")
            continue
        seen[key] = row
        kind = _resolve_backend(backend, target.device)
        direct_dtypes = KERNEL_DTYPES if kind == "triton" else FILL_DTYPES
        if target.is_contiguous() and target.dtype in direct_dtypes:
            buf = target
        else:
            dtype = target.dtype if target.dtype in direct_dtypes else torch.float32
            buf = torch.empty(target.shape, dtype=dtype, device=target.device)
            prepared.copies.append((target, buf))
        if kind == "triton":
            group = groups.setdefault(buf.device, ([], []))
            group[0].append(buf)
            group[1].append(row)
        else:
            prepared.torch_jobs.append((buf.view(-1), row))
    if groups:
        from depthinit.kernels.fill import prepare_fill as prepare_launch

        prepared.launches = [prepare_launch(bufs, group_rows) for bufs, group_rows in groups.values()]
    return prepared


def fill_tensors(
    tensors: Sequence[torch.Tensor], rows: Sequence[FillRow], seed: int, backend: str = "auto"
) -> None:
    """Fill ``tensors[i]`` in place with the contract values of ``rows[i]`` for ``seed``.

    Every value depends only on ``(seed, rows[i].stream, global element index)`` (DESIGN.md, "The random-number
    contract"): the same seed gives the same weights on any device, with any sharding, in any order. Element
    ``i`` takes word ``i % 4`` of Philox4x32-10 (Salmon et al., SC'11) at counter ``(i // 4, stream, 0)``, key
    ``seed``; a word ``w`` becomes ``u = ((w >> 9) + 0.5) * 2**-23``, then ``low + (high - low) * u`` (uniform),
    Box-Muller ``mean + std * sqrt(-2 ln u1) * cos|sin(2 pi u2)`` on word pairs (normal), or the inverse CDF
    (trunc_normal); see :mod:`depthinit.rng`.

    Args:
        tensors: floating-point tensors (fp32, fp16, bf16; fp64 takes fp32 values), plain or DTensor, any layout.
        rows: one :class:`~depthinit.kernels._tables.FillRow` per tensor (distribution code, mean, std,
            low, high, stream; ``geometry`` for a plain tensor that is a shard of a larger one).
        seed: int in ``[0, 2**64)``.
        backend: ``"auto"`` (Triton on CUDA, torch on CPU), ``"triton"`` (on CPU: the interpreter), ``"torch"``.

    Example:
        >>> w = torch.empty(512, 512)
        >>> fill_tensors([w], [FillRow(DIST_NORMAL, std=0.02, stream=rng.stream_id("fc.weight"))], seed=0)
    """
    rng.seed_key(seed)
    prepare_fill(tensors, rows, backend)(seed)
