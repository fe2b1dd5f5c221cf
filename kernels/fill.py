"""Fused multi-tensor fill: one launch writes every tensor of a device, any mix of fp32, fp16 and bf16.

The torch reference is :mod:`depthinit.rng` (``reference_values``, ``counter_block_values``), where the
random-number contract is written out; each device function below mirrors a function there, op for op, in fp32.
What is particular to this kernel: ``sqrt`` and the PPND7 division are the correctly rounded ``sqrt_rn`` and
``div_rn``; PPND7 evaluates both branches, then selects; a constant's ``mean`` arrives already rounded to the
tensor's dtype; the clamp bounds ``[clamp_lo, clamp_hi]`` are values of the tensor's dtype.

Each value is rounded once to its tensor's dtype (bf16 by an integer round-to-nearest-even, identical in the
interpreter and on the GPU). The launch disables FMA contraction (``enable_fp_fusion=False``), so every ``+`` and
``*`` is the reference's correctly rounded op: unit uniforms and uniform values match the reference bit for bit;
normal and truncated-normal values differ only through ``log/cos/sin`` (libdevice on a GPU, NumPy in the
interpreter, torch's libm in the reference), by a few ulp.

Tables of one launch, built once on the host by :func:`prepare_fill` and cached by the caller (:class:`FillLaunch`):

* pointer table: int64 ``data_ptr`` per tensor (``contract.pointer_table``);
* ``iparams`` int64 ``[T, 10]``: ``contract.FILL_INTS`` (dist, dtype code, stream, outer, run, global stride, start,
  slots, fast);
* ``fparams`` fp32 ``[T, 10]``: ``contract.FILL_PARAMS`` (mean, std, low, high, cdf_lo, sf_hi, width, clamp_lo,
  clamp_hi), from :func:`depthinit.kernels.contract.fill_params` for the tensor's dtype;
* chunk table (``contract.chunk_table``): program ``p`` fills block ``block[p]`` of tensor ``tensor[p]``.

A program computes Philox once for each of ``BLOCK`` counters and writes the ``[BLOCK, 4]`` tile of elements they
produce (all four words used). A tensor is the union of ``outer`` runs of ``run`` contiguous elements of the full
tensor; run ``a`` starts at global index ``a * gstride + start`` (``ShardGeometry``). Two paths, each computing its
own tile inside its branch (a tile shared by both would be converted to both store layouts in every program):

* **fast**: a full block of a tensor made of one run that starts at a multiple of 4 (every unsharded tensor, most
  ``Shard(0)`` shards): ``4 * BLOCK`` contiguous elements, no mask; with 16-byte aligned pointers
  (``ALIGNED``, checked on the host, hinted with ``tl.multiple_of`` on the pointer) the stores are
  ``st.global.v4.b32`` for fp32 and ``st.global.v2.b32`` (4 halves) for fp16/bf16;
* **general**: everything else (the last block of a tensor, runs starting off a multiple of 4, ``Shard(d > 0)``,
  uneven shards): slot ``q`` of the tensor is counter slot ``q % slots`` of run ``q // slots``, with
  ``slots = cdiv(run + start % 4, 4)`` for one run and ``cdiv(run + 3, 4)`` for several; elements outside their
  run are masked.

Counters and element offsets are int64 (tensors and shards past 2**31 elements); slot numbers within one tensor
are int32 (below 2**31, checked on the host), so the slot division is a 32-bit one.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import triton
import triton.language as tl

from .contract import (
    DIST_CODES,
    DIST_CONSTANT,
    DIST_NORMAL,
    DIST_TRUNC_NORMAL,
    DIST_UNIFORM,
    FILL_INTS,
    FILL_PARAMS,
    AotSpec,
    FillRow,
    ShardGeometry,
    cdiv,
    check_seed,
    check_stream,
    chunk_table,
    fill_params,
    pointer_table,
)
from .contract import DTYPE_CODES as _CONTRACT_DTYPES

__all__ = ["FillLaunch", "prepare_fill", "DTYPE_CODES", "aot_specs"]

# Output dtype codes (iparams column "dtype"): the contract's, without fp64 (the C fill writes fp64).
DTYPE_CODES = {d: c for d, c in _CONTRACT_DTYPES.items() if d != torch.float64}

# Row strides and named columns of the two parameter tables (contract.FILL_INTS / contract.FILL_PARAMS), as
# compile-time constants of the kernel.
NI: tl.constexpr = tl.constexpr(len(FILL_INTS))  # int64 columns of iparams
NF: tl.constexpr = tl.constexpr(len(FILL_PARAMS))  # fp32 columns of fparams
I_DIST: tl.constexpr = tl.constexpr(FILL_INTS.index("dist"))
I_DTYPE: tl.constexpr = tl.constexpr(FILL_INTS.index("dtype"))
I_STREAM: tl.constexpr = tl.constexpr(FILL_INTS.index("stream"))
I_OUTER: tl.constexpr = tl.constexpr(FILL_INTS.index("outer"))
I_RUN: tl.constexpr = tl.constexpr(FILL_INTS.index("run"))
I_GSTRIDE: tl.constexpr = tl.constexpr(FILL_INTS.index("gstride"))
I_START: tl.constexpr = tl.constexpr(FILL_INTS.index("start"))
I_SLOTS: tl.constexpr = tl.constexpr(FILL_INTS.index("slots"))
I_FAST: tl.constexpr = tl.constexpr(FILL_INTS.index("fast"))
F_MEAN: tl.constexpr = tl.constexpr(FILL_PARAMS.index("mean"))
F_STD: tl.constexpr = tl.constexpr(FILL_PARAMS.index("std"))
F_LOW: tl.constexpr = tl.constexpr(FILL_PARAMS.index("low"))
F_HIGH: tl.constexpr = tl.constexpr(FILL_PARAMS.index("high"))
F_CDF_LO: tl.constexpr = tl.constexpr(FILL_PARAMS.index("cdf_lo"))
F_SF_HI: tl.constexpr = tl.constexpr(FILL_PARAMS.index("sf_hi"))
F_WIDTH: tl.constexpr = tl.constexpr(FILL_PARAMS.index("width"))
F_CLAMP_LO: tl.constexpr = tl.constexpr(FILL_PARAMS.index("clamp_lo"))
F_CLAMP_HI: tl.constexpr = tl.constexpr(FILL_PARAMS.index("clamp_hi"))

_NORMAL: tl.constexpr = tl.constexpr(DIST_NORMAL)
_UNIFORM: tl.constexpr = tl.constexpr(DIST_UNIFORM)
_CONSTANT: tl.constexpr = tl.constexpr(DIST_CONSTANT)
_TRUNC_NORMAL: tl.constexpr = tl.constexpr(DIST_TRUNC_NORMAL)

DEFAULT_BLOCK = 256  # counters per program (1024 elements): one counter per thread with 8 warps
DEFAULT_WARPS = 8
# No FMA contraction: a multiply then an add, as in the torch reference (scaled uniforms match it bit for bit).
LAUNCH_OPTIONS = {"enable_fp_fusion": False}


# ----------------------------------------------------------------------------------------------------------------
# device functions (each mirrors a function of depthinit.rng)
# ----------------------------------------------------------------------------------------------------------------


@triton.jit
def _philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Random123 Philox4x32-10 on uint32 blocks (same rounds as ``tl.philox``; see ``rng.philox4x32_10``)."""
    for _ in tl.static_range(10):
        _c0 = c0
        _c2 = c2
        c0 = tl.umulhi(_c2, 0xCD9E8D57) ^ c1 ^ k0
        c2 = tl.umulhi(_c0, 0xD2511F53) ^ c3 ^ k1
        c1 = _c2 * 0xCD9E8D57
        c3 = _c0 * 0xD2511F53
        k0 = k0 + 0x9E3779B9
        k1 = k1 + 0xBB67AE85
    return c0, c1, c2, c3


@triton.jit
def _unit(w):
    """``rng.unit``: ((w >> 9) + 0.5) * 2**-23 in fp32."""
    return ((w >> 9).to(tl.float32) + 0.5) * 1.1920928955078125e-07


@triton.jit
def _box_muller(wa, wb):
    """``rng`` normal pair: r = sqrt(-2 log u1), t = 2 pi u2 -> (r cos t, r sin t)."""
    r = tl.sqrt_rn(-2.0 * tl.log(_unit(wa)))
    t = 6.283185307179586 * _unit(wb)
    return r * tl.cos(t), r * tl.sin(t)


@triton.jit
def _ppnd7(s):
    """``rng.ppnd7``: -Phi^-1(s) >= 0 of tail probabilities s in (0, 0.5] (Wichura, AS241 PPND7).

    One rational function with the branch's coefficients selected per element (few live registers): the same
    IEEE ops on the same values as evaluating the selected branch (a missing leading term is ``0 * v + c = c``,
    a missing factor ``1 * n = n``), so the reference's values, bit for bit.
    """
    q = 0.5 - s
    central = q <= 0.425
    t = tl.sqrt_rn(-tl.log(tl.maximum(s, 1.1754943508222875e-38)))
    near = t <= 5.0
    v = tl.where(central, 0.180625 - q * q, tl.where(near, t - 1.6, t - 5.0))
    n = tl.where(central, 5.9109374720e1, tl.where(near, 1.7023821103e-1, 1.7337203997e-2))
    n = n * v + tl.where(central, 1.5929113202e2, tl.where(near, 1.3067284816, 4.2868294337e-1))
    n = n * v + tl.where(central, 5.0434271938e1, tl.where(near, 2.7568153900, 3.0812263860))
    n = n * v + tl.where(central, 3.3871327179, tl.where(near, 1.4234372777, 6.6579051150))
    d = tl.where(central, 6.7187563600e1, 0.0)
    d = d * v + tl.where(central, 7.8757757664e1, tl.where(near, 1.2021132975e-1, 1.2258202635e-2))
    d = d * v + tl.where(central, 1.7895169469e1, tl.where(near, 7.3700164250e-1, 2.4197894225e-1))
    d = d * v + 1.0
    return tl.math.div_rn(tl.where(central, q, 1.0) * n, d)


@triton.jit
def _trunc_normal(w, mean, std, cdf_lo, sf_hi, width):
    """``rng`` truncated normal by inverse CDF of one word, from the smaller of p and 1 - p."""
    u = _unit(w)
    p = cdf_lo + width * u
    q = sf_hi + width * (1.0 - u)
    lower = p <= q
    z = _ppnd7(tl.where(lower, p, q))
    return mean + std * tl.where(lower, -z, z)


@triton.jit
def _values(counter, stream, k0, k1, dist, mean, std, low, high, cdf_lo, sf_hi, width, BLOCK: tl.constexpr):
    """The four fp32 values (words 0..3) of each counter of ``counter`` (int64 [BLOCK, 1])."""
    if dist == _CONSTANT:
        v0 = tl.full([BLOCK, 1], 0.0, tl.float32) + mean
        v1 = v0
        v2 = v0
        v3 = v0
    else:
        c_lo = counter.to(tl.uint32)
        c_hi = (counter >> 32).to(tl.uint32)
        zero = c_lo * 0
        w0, w1, w2, w3 = _philox4x32_10(c_lo, c_hi, zero + stream.to(tl.uint32), zero, k0, k1)
        if dist == _NORMAL:
            z0, z1 = _box_muller(w0, w1)
            z2, z3 = _box_muller(w2, w3)
            v0 = mean + std * z0
            v1 = mean + std * z1
            v2 = mean + std * z2
            v3 = mean + std * z3
        elif dist == _UNIFORM:
            width = high - low
            v0 = low + width * _unit(w0)
            v1 = low + width * _unit(w1)
            v2 = low + width * _unit(w2)
            v3 = low + width * _unit(w3)
        else:
            v0 = _trunc_normal(w0, mean, std, cdf_lo, sf_hi, width)
            v1 = _trunc_normal(w1, mean, std, cdf_lo, sf_hi, width)
            v2 = _trunc_normal(w2, mean, std, cdf_lo, sf_hi, width)
            v3 = _trunc_normal(w3, mean, std, cdf_lo, sf_hi, width)
    return v0, v1, v2, v3


@triton.jit
def _bf16_bits(x):
    """bf16 bit pattern of fp32 ``x``, rounded to nearest even with integer ops (the interpreter's own fp32->bf16
    cast truncates; this is ``cvt.rn.bf16.f32`` and ``torch``'s rounding, identical everywhere)."""
    bits = x.to(tl.uint32, bitcast=True)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).to(tl.uint16)


@triton.jit
def _store_as(addr, ty: tl.constexpr, offs, vals, mask, MASKED: tl.constexpr, ALIGNED: tl.constexpr):
    ptr = addr.to(tl.pointer_type(ty))
    if ALIGNED:  # the hint must sit on the op that makes the pointer, not on a function argument
        ptr = tl.multiple_of(ptr, 16)
    if MASKED:
        tl.store(ptr + offs, vals.to(ty), mask=mask)
    else:
        tl.store(ptr + offs, vals.to(ty))


@triton.jit
def _store(addr, dtype_code, offs, vals, mask, MASKED: tl.constexpr, ALIGNED: tl.constexpr):
    """Store fp32 ``vals`` rounded once to the tensor's dtype (code from ``DTYPE_CODES``)."""
    if dtype_code == 0:
        _store_as(addr, tl.float32, offs, vals, mask, MASKED, ALIGNED)
    elif dtype_code == 1:
        _store_as(addr, tl.float16, offs, vals, mask, MASKED, ALIGNED)
    else:
        _store_as(addr, tl.uint16, offs, _bf16_bits(vals), mask, MASKED, ALIGNED)


@triton.jit
def _tile(counter, stream, k0, k1, dist, mean, std, low, high, cdf_lo, sf_hi, width, clamp_lo, clamp_hi,
          BLOCK: tl.constexpr):  # fmt: skip
    """[BLOCK, 4] fp32 tile: row ``c`` holds the 4 elements of ``counter[c]`` (word ``j`` in column ``j``),
    clamped to the tensor's ``[clamp_lo, clamp_hi]``."""
    v0, v1, v2, v3 = _values(counter, stream, k0, k1, dist, mean, std, low, high, cdf_lo, sf_hi, width, BLOCK)
    j = tl.arange(0, 4)[None, :]
    v = tl.where(j == 0, v0, tl.where(j == 1, v1, tl.where(j == 2, v2, v3)))
    return tl.minimum(tl.maximum(v, clamp_lo), clamp_hi)


@triton.jit(do_not_specialize=["key0", "key1"])  # one compiled kernel for every seed
def _fill_kernel(
    ptr_table,
    iparams,
    fparams,
    chunk_tensor,
    chunk_block,
    key0,
    key1,
    BLOCK: tl.constexpr,
    ALIGNED: tl.constexpr,
):
    pid = tl.program_id(0)
    tid = tl.load(chunk_tensor + pid).to(tl.int64)
    blk = tl.load(chunk_block + pid)
    ip = iparams + tid * NI
    dist = tl.load(ip + I_DIST)
    dtype_code = tl.load(ip + I_DTYPE)
    stream = tl.load(ip + I_STREAM)
    outer = tl.load(ip + I_OUTER)
    run = tl.load(ip + I_RUN)
    gstride = tl.load(ip + I_GSTRIDE)
    start = tl.load(ip + I_START)
    slots = tl.load(ip + I_SLOTS)
    fast = tl.load(ip + I_FAST)
    fp = fparams + tid * NF
    mean = tl.load(fp + F_MEAN)
    std = tl.load(fp + F_STD)
    low = tl.load(fp + F_LOW)
    high = tl.load(fp + F_HIGH)
    cdf_lo = tl.load(fp + F_CDF_LO)
    sf_hi = tl.load(fp + F_SF_HI)
    width = tl.load(fp + F_WIDTH)
    clamp_lo = tl.load(fp + F_CLAMP_LO)
    clamp_hi = tl.load(fp + F_CLAMP_HI)
    addr = tl.load(ptr_table + tid)
    k0 = key0.to(tl.uint32, bitcast=True)
    k1 = key1.to(tl.uint32, bitcast=True)
    r = tl.arange(0, BLOCK).to(tl.int64)[:, None]
    j = tl.arange(0, 4)[None, :]
    # The two paths compute their own tiles: a value shared by both branches would make the compiler convert its
    # layout for both stores up front, in every program.
    if (fast != 0) & ((blk + 1) * (4 * BLOCK) <= run):
        # fast: a full block of one run that starts at a multiple of 4; 4 * BLOCK contiguous elements, no mask
        counter = start // 4 + blk * BLOCK + r
        vals = _tile(counter, stream, k0, k1, dist, mean, std, low, high, cdf_lo, sf_hi, width, clamp_lo, clamp_hi,
                     BLOCK)
        offs = (blk * BLOCK + r) * 4 + j
        _store(addr, dtype_code, offs, vals, offs >= 0, False, ALIGNED)
    else:
        # general: slot q = counter slot (q % slots) of run (q // slots); elements outside the run are masked
        q = (blk * BLOCK + r).to(tl.int32)  # < 2**31 slots per tensor (asserted on the host): 32-bit division
        a = q // slots.to(tl.int32)
        g_run = a.to(tl.int64) * gstride + start  # global index of the run's first element
        counter = g_run // 4 + (q - a * slots.to(tl.int32))
        vals = _tile(counter, stream, k0, k1, dist, mean, std, low, high, cdf_lo, sf_hi, width, clamp_lo, clamp_hi,
                     BLOCK)
        g = counter * 4 + j
        mask = (a < outer) & (g >= g_run) & (g < g_run + run)
        _store(addr, dtype_code, a.to(tl.int64) * run + (g - g_run), vals, mask, True, False)


# ----------------------------------------------------------------------------------------------------------------
# host side
# ----------------------------------------------------------------------------------------------------------------


def tensor_params(row: FillRow, numel: int, dtype: torch.dtype, block: int) -> tuple[list[int], list[float], int]:
    """``(iparams row, fparams row, number of programs)`` of one tensor of ``numel`` local elements."""
    if row.dist not in DIST_CODES.values():
        raise ValueError(f"unknown distribution code {row.dist!r}; expected one of {DIST_CODES}")
    check_stream(row.stream)
    geo = row.geometry if row.geometry is not None else ShardGeometry.full(numel)
    if geo.local_numel != numel:
        raise ValueError(f"geometry {geo} describes {geo.local_numel} local elements, the tensor has {numel}")
    run = geo.local_mid * geo.inner  # elements per run; a run starts at global index a * gstride + start
    gstride = geo.global_mid * geo.inner
    start = geo.offset * geo.inner
    fast = geo.outer == 1 and start % 4 == 0
    slots = cdiv(run + start % 4, 4) if geo.outer == 1 else cdiv(run + 3, 4)  # counters a run can touch
    if geo.outer * slots >= 2**31:
        raise ValueError(f"a tensor (shard) of {numel} elements is too large for one fill: split it")
    named = {"dist": row.dist, "dtype": DTYPE_CODES[dtype], "stream": int(row.stream), "outer": geo.outer,
             "run": run, "gstride": gstride, "start": start, "slots": slots, "fast": int(fast), "unused": 0}
    ints = [named[c] for c in FILL_INTS]
    floats = list(fill_params(row.dist, row.mean, row.std, row.low, row.high, dtype))
    return ints, floats, cdiv(geo.outer * slots, block) if numel else 0


def _seed_words(seed: int) -> tuple[int, int]:
    """Key words of ``seed`` as signed int32 bit patterns (a stable ``i32`` kernel signature)."""
    seed = check_seed(seed)

    def signed(w: int) -> int:
        return w - 2**32 if w >= 2**31 else w

    return signed(seed & 0xFFFFFFFF), signed(seed >> 32)


@dataclass
class FillLaunch:
    """Device tables of one fused fill launch; build with :func:`prepare_fill`, run with ``launch(seed)``.

    Holds references to its tensors, so the pointers stay valid while the launch is cached. If a tensor's
    storage is replaced (``p.data = ...``), prepare a new launch. On CPU tensors it runs the interpreter.
    """

    device: torch.device
    ptrs: torch.Tensor
    iparams: torch.Tensor
    fparams: torch.Tensor
    chunk_tensor: torch.Tensor
    chunk_block: torch.Tensor
    n_programs: int
    block: int = DEFAULT_BLOCK
    num_warps: int = DEFAULT_WARPS
    aligned: bool = True
    tensors: list = field(default_factory=list, repr=False)

    def __call__(self, seed: int) -> None:
        k0, k1 = _seed_words(seed)
        if self.n_programs == 0:
            return
        kernel = _interpreted_module()._fill_kernel if self.device.type == "cpu" else _fill_kernel
        kernel[(self.n_programs,)](
            self.ptrs,
            self.iparams,
            self.fparams,
            self.chunk_tensor,
            self.chunk_block,
            k0,
            k1,
            BLOCK=self.block,
            ALIGNED=self.aligned,
            num_warps=self.num_warps,
            **LAUNCH_OPTIONS,
        )


def prepare_fill(
    tensors: Sequence[torch.Tensor],
    rows: Sequence[FillRow],
    *,
    block: int = DEFAULT_BLOCK,
    num_warps: int = DEFAULT_WARPS,
) -> FillLaunch:
    """Build the pointer, parameter and chunk tables of one launch that fills ``tensors`` as ``rows`` say.

    Every tensor must be contiguous, on one device, fp32, fp16 or bf16 (dtypes may be mixed: each store rounds
    to its tensor's dtype). ``rows[t].geometry`` (``None``: the whole tensor) says where tensor ``t`` lies in its
    logical tensor. ``block`` (counters per program) is a power of two; the default pairs with ``num_warps`` so
    each thread handles one counter.

    Example:
        >>> launch = prepare_fill([w], [FillRow(DIST_NORMAL, std=0.02, stream=7)])
        >>> launch(seed=0)  # and again with any seed: the tables are reused
    """
    if len(tensors) != len(rows):
        raise ValueError(f"{len(tensors)} tensors but {len(rows)} rows")
    if block < 16 or block & (block - 1):
        raise ValueError(f"block must be a power of two >= 16, got {block}")
    device = tensors[0].device if tensors else torch.device("cpu")
    ints, floats, blocks = [], [], []
    for t, row in zip(tensors, rows):
        if t.device != device:
            raise ValueError(f"one launch covers one device: got {t.device} and {device}")
        if t.dtype not in DTYPE_CODES:
            raise TypeError(f"the fill kernel writes {', '.join(map(str, DTYPE_CODES))}; got {t.dtype}")
        if not t.is_contiguous():
            raise ValueError("the fill kernel needs contiguous tensors (fill a contiguous buffer and copy back)")
        i, f, n = tensor_params(row, t.numel(), t.dtype, block)
        ints.append(i)
        floats.append(f)
        blocks.append(n)
    tid, blk = chunk_table(blocks, device=device)
    return FillLaunch(
        device=device,
        ptrs=pointer_table(tensors, device=device) if tensors else torch.zeros(0, dtype=torch.int64),
        iparams=torch.tensor(ints, dtype=torch.int64).reshape(-1, int(NI)).to(device),
        fparams=torch.tensor(floats, dtype=torch.float32).reshape(-1, int(NF)).to(device),
        chunk_tensor=tid,
        chunk_block=blk,
        n_programs=int(sum(blocks)),
        block=block,
        num_warps=num_warps,
        aligned=all(t.data_ptr() % 16 == 0 for t in tensors),
        tensors=list(tensors),
    )


# ----------------------------------------------------------------------------------------------------------------
# interpreter: the same source, decorated under TRITON_INTERPRET=1, for CPU tensors (tests)
# ----------------------------------------------------------------------------------------------------------------

_interpreted = None


def _interpreted_module():
    """This module re-executed with ``triton.knobs.runtime.interpret`` on, so its ``@triton.jit`` functions are
    interpreter functions. ``@triton.jit`` picks compiled or interpreted when a function is decorated, so a process
    that also runs compiled kernels needs a second copy; helpers from triton's own stdlib (``tl.philox``,
    ``tl.interleave``) are not used for that reason.
    """
    global _interpreted
    if triton.knobs.runtime.interpret:
        return sys.modules[__name__]
    if _interpreted is None:
        old_env = os.environ.get("TRITON_INTERPRET")
        triton.knobs.runtime.interpret = True
        try:
            name = __name__ + "_interpreted"
            spec = importlib.util.spec_from_file_location(name, __file__)
            module = importlib.util.module_from_spec(spec)
            module.__package__ = __package__
            sys.modules[name] = module
            spec.loader.exec_module(module)
        finally:
            del triton.knobs.runtime.interpret
            if old_env is None:
                os.environ.pop("TRITON_INTERPRET", None)
            else:
                os.environ["TRITON_INTERPRET"] = old_env
        _interpreted = module
    return _interpreted


# ----------------------------------------------------------------------------------------------------------------
# ahead-of-time specializations (python -m depthinit.kernels.aot)
# ----------------------------------------------------------------------------------------------------------------


def aot_specs() -> list[AotSpec]:
    """The specializations compiled ahead of time: the default block, 16-byte aligned and unaligned pointers."""
    signature = {
        "ptr_table": "*i64",
        "iparams": "*i64",
        "fparams": "*fp32",
        "chunk_tensor": "*i32",
        "chunk_block": "*i64",
        "key0": "i32",
        "key1": "i32",
        "BLOCK": "constexpr",
        "ALIGNED": "constexpr",
    }
    return [
        AotSpec(
            f"fill_b{DEFAULT_BLOCK}_{'aligned' if aligned else 'unaligned'}",
            _fill_kernel,
            signature,
            {"BLOCK": DEFAULT_BLOCK, "ALIGNED": aligned},
            DEFAULT_WARPS,
            dict(LAUNCH_OPTIONS),
        )
        for aligned in (True, False)
    ]
