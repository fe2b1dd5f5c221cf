"""Counter-based random numbers: the torch reference of the random-number contract (DESIGN.md).

Every value depends only on ``(seed, stream, global element index i)``:

* Philox4x32-10 (J. K. Salmon, M. A. Moraes, R. O. Dror, D. E. Shaw, "Parallel random numbers: as easy as
  1, 2, 3", SC'11; Random123, and the 32-bit path of ``tl.philox``) with key ``(seed & 0xFFFFFFFF, seed >> 32)`` and
  counter ``(i // 4 low word, i // 4 high word, stream, 0)``; element ``i`` takes word ``i % 4``.
* ``unit(w) = ((w >> 9) + 0.5) * 2**-23`` computed in fp32 as: convert ``w >> 9`` (exact, < 2**23), add 0.5
  (exact: the sum is below 2**23, where fp32 resolves halves), multiply by 2**-23 (exact). The result is one of
  the 2**23 midpoints ``(k + 0.5) / 2**23``: exact, strictly inside (0, 1), in [2**-24, 1 - 2**-24]. Every step
  is exact, so the value is the same bits on every device. (DESIGN.md's first draft used ``w >> 8`` and 2**-24:
  from ``w >> 8 >= 2**23`` on, the + 0.5 is a tie that rounds to even, so it is neither exact nor inside (0, 1) —
  it gives 1.0 with probability 2**-24. 24 midpoint bits need 25 bits of precision near 1; fp32 has 24.)
* normal (Box-Muller on the word pairs (0, 1) and (2, 3) of one counter): ``r = sqrt(-2 * log(unit(w_even)))``,
  ``t = fp32(2 pi) * unit(w_odd)``, the even element gets ``z = r * cos(t)``, the odd one ``z = r * sin(t)``.
* uniform: ``u = unit(w)``.
* truncated normal (inverse CDF, stable in both tails): with the masses ``cdf_lo = Phi(alpha)``,
  ``sf_hi = 1 - Phi(beta)``, ``width = Phi(beta) - Phi(alpha)`` of the standardized bounds (fp64 on the host with
  ``math.erfc`` in the tail where each lies, rounded to fp32), ``p = cdf_lo + width * u`` and
  ``q = sf_hi + width * (1 - u)`` (= 1 - p, but exact to fp32 rounding in the upper tail, where p is not);
  the smaller one ``s`` gives ``|z| = ppnd7(s)``, Wichura's AS241 PPND7 (a rational function of ``0.5 - s``
  in the centre, of ``sqrt(-log s)`` in the tails; relative error 1.2e-7 down to ``s = 2**-126``), negative
  when ``p <= q``. No rejection loop: one word per element, far tails keep their shape (``[5, 8]``
  standard deviations out gives as many distinct values as the centre).
* constant: ``mean`` (rounded once to the output dtype).

Then the affine step ``mean + std * z`` (uniform: ``low + (high - low) * u``) and a clamp to the target dtype's
bounds (:func:`depthinit.kernels.contract.fill_params`): uniform values lie in ``[low, high)`` and truncated
normal values in ``[low, high]`` *after* rounding to the output dtype, fp16 and bf16 included. For fp32, fp16 and
bf16 outputs every step is fp32, one IEEE op at a time, in the order written (``a + b * c`` is a multiply, then an
add), with parameters rounded to fp32, and the value is rounded once to the output dtype. fp64 outputs take
``z`` / ``u`` in fp32 (the same numbers) and do the affine step and the clamp in fp64 with the fp64 parameters.

The kernels follow the same order: the CPU kernel (``kernels/cpu_fill.c``, with its own Cephes-style
``log/sin/cos``) and the Triton kernel (:mod:`depthinit.kernels.fill`, without FMA contraction). ``unit`` and the
uniform distribution are bit-exact everywhere; normal and truncated-normal values differ from this reference only
through ``log/cos/sin`` (each implementation within about 1 ulp), by a few ulp.

This module is the oracle (integer ops on int64 tensors holding uint32 values, no int64 overflow anywhere);
``counter_block_values`` is the same computation per counter block (the torch path of :mod:`depthinit.fill`
when the C kernel cannot be built).
"""

from __future__ import annotations

import hashlib

import torch

from depthinit.kernels import contract
from depthinit.kernels.contract import (
    DIST_CONSTANT,
    DIST_NORMAL,
    DIST_UNIFORM,
    FillRow,
)

__all__ = [
    "philox4x32_10",
    "stream_id",
    "seed_key",
    "unit",
    "erfinv_f32",
    "ppnd7",
    "trunc_normal_cdf",
    "fill_params",
    "counter_block_values",
    "reference_values",
    "reference_fill_",
]

MASK32 = 0xFFFFFFFF
PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
PHILOX_ROUNDS = 10

TWO_PI = 6.283185307179586  # rounded to fp32 (6.2831855) where it multiplies an fp32 tensor
SQRT2 = 1.4142135623730951
UNIT_SCALE = 2.0**-23
X_MAX = 1.0 - 2.0**-24  # largest fp32 below 1: keeps erfinv finite

# Giles, "Approximating the erfinv function", GPU Computing Gems Jade Edition (2011), single precision.
_ERFINV_CENTRAL = (
    2.81022636e-08,
    3.43273939e-07,
    -3.5233877e-06,
    -4.39150654e-06,
    0.00021858087,
    -0.00125372503,
    -0.00417768164,
    0.246640727,
    1.50140941,
)
_ERFINV_TAIL = (
    -0.000200214257,
    0.000100950558,
    0.00134934322,
    -0.00367342844,
    0.00573950773,
    -0.0076224613,
    0.00943887047,
    1.00167406,
    2.83297682,
)


# ----------------------------------------------------------------------------------------------------------------
# Philox4x32-10
# ----------------------------------------------------------------------------------------------------------------


def _mulhilo(a: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32-bit words of ``a * m`` (``a`` int64 holding uint32, ``m`` a uint32 constant).

    The product is formed from 16-bit halves of ``m`` so no int64 intermediate overflows:
    ``a*m = (a*m_hi + (a*m_lo >> 16)) * 2**16 + (a*m_lo & 0xFFFF)``.
    """
    x = a * (m >> 16)
    y = a * (m & 0xFFFF)
    s = x + (y >> 16)
    return s >> 16, ((s & 0xFFFF) << 16) | (y & 0xFFFF)


def _philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 without argument checks (int64 tensors or ints holding uint32 values)."""
    for r in range(PHILOX_ROUNDS):
        if r:
            k0 = (k0 + PHILOX_W0) & MASK32
            k1 = (k1 + PHILOX_W1) & MASK32
        hi0, lo0 = _mulhilo(c0, PHILOX_M0)
        hi1, lo1 = _mulhilo(c2, PHILOX_M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def philox4x32_10(c0, c1, c2, c3, k0, k1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random123's Philox4x32-10 block cipher, on int64 tensors holding uint32 values.

    Args:
        c0, c1, c2, c3: counter words (int64 tensors or ints in ``[0, 2**32)``; broadcast together).
        k0, k1: key words (ints or int64 tensors in ``[0, 2**32)``).

    Returns:
        The four output words, int64 tensors with values in ``[0, 2**32)``.

    Example:
        >>> philox4x32_10(*(torch.tensor([0]),) * 4, 0, 0)[0].item() == 0x6627E8D5
        True
    """
    words = [w if isinstance(w, torch.Tensor) else torch.tensor(w, dtype=torch.int64) for w in (c0, c1, c2, c3, k0, k1)]
    for w in words:
        if w.dtype != torch.int64:
            raise TypeError(f"philox4x32_10 takes int64 tensors holding uint32 values, got {w.dtype}")
        if w.numel() and (int(w.min()) < 0 or int(w.max()) > MASK32):
            raise ValueError("philox4x32_10 words must lie in [0, 2**32)")
    c0, c1, c2, c3 = torch.broadcast_tensors(*words[:4])
    keys = words[4:]
    return _philox(c0, c1, c2, c3, keys[0], keys[1])


def stream_id(name: str) -> int:
    """Stable 32-bit stream id of a parameter name: blake2b (4-byte digest), little-endian.

    Example:
        >>> stream_id("layers.0.weight") == stream_id("layers.0.weight")
        True
    """
    if not isinstance(name, str):
        raise TypeError(f"stream_id takes a parameter name (str), got {type(name).__name__}")
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=4).digest(), "little")


def seed_key(seed: int) -> tuple[int, int]:
    """Philox key ``(seed & 0xFFFFFFFF, seed >> 32)`` of a seed in ``[0, 2**64)``."""
    seed = contract.check_seed(seed)
    return seed & MASK32, seed >> 32


# ----------------------------------------------------------------------------------------------------------------
# conversions (fp32, one op at a time)
# ----------------------------------------------------------------------------------------------------------------


def unit(w: torch.Tensor) -> torch.Tensor:
    """fp32 ``((w >> 9) + 0.5) * 2**-23`` of uint32 words held in int64 (see the module docstring)."""
    return ((w >> 9).to(torch.float32) + 0.5) * UNIT_SCALE


def _horner(coeffs: tuple[float, ...], w: torch.Tensor) -> torch.Tensor:
    p = torch.full_like(w, coeffs[0])
    for c in coeffs[1:]:
        p = c + p * w
    return p


def erfinv_f32(x: torch.Tensor) -> torch.Tensor:
    """Giles' single-precision erfinv in plain arithmetic (fp32 in, fp32 out; ``|x| < 1``)."""
    w = -torch.log((1.0 - x) * (1.0 + x))
    central = _horner(_ERFINV_CENTRAL, w - 2.5)
    tail = _horner(_ERFINV_TAIL, torch.sqrt(w) - 3.0)
    return torch.where(w < 5.0, central, tail) * x


def _box_muller(wa: torch.Tensor, wb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.sqrt(-2.0 * torch.log(unit(wa)))
    t = TWO_PI * unit(wb)
    return r * torch.cos(t), r * torch.sin(t)


def trunc_normal_cdf(mean: float, std: float, low: float, high: float) -> tuple[float, float]:
    """``(Phi((low - mean) / std), Phi((high - mean) / std))`` in fp64 (``math.erfc``)."""
    cdf_lo, sf_hi, _ = contract.trunc_normal_masses(mean, std, low, high)
    return cdf_lo, 1.0 - sf_hi


# Wichura, "Algorithm AS 241: the percentage points of the normal distribution", Appl. Statist. 37 (1988), PPND7.
_PPND7_A = (5.9109374720e1, 1.5929113202e2, 5.0434271938e1, 3.3871327179)
_PPND7_B = (6.7187563600e1, 7.8757757664e1, 1.7895169469e1, 1.0)
_PPND7_C = (1.7023821103e-1, 1.3067284816, 2.7568153900, 1.4234372777)
_PPND7_D = (1.2021132975e-1, 7.3700164250e-1, 1.0)
_PPND7_E = (1.7337203997e-2, 4.2868294337e-1, 3.0812263860, 6.6579051150)
_PPND7_F = (1.2258202635e-2, 2.4197894225e-1, 1.0)
FLT_MIN = 2.0**-126


def ppnd7(s: torch.Tensor) -> torch.Tensor:
    """``-Phi^-1(s) >= 0`` of fp32 tail probabilities ``s`` in ``(0, 0.5]`` (AS241 PPND7, fp32, both branches
    evaluated then selected, as the kernels do)."""
    q = 0.5 - s
    r = 0.180625 - q * q
    central = q * _horner(_PPND7_A, r) / _horner(_PPND7_B, r)
    t = torch.sqrt(-torch.log(torch.clamp(s, min=FLT_MIN)))
    tc, te = t - 1.6, t - 5.0
    near = _horner(_PPND7_C, tc) / _horner(_PPND7_D, tc)
    far = _horner(_PPND7_E, te) / _horner(_PPND7_F, te)
    return torch.where(q <= 0.425, central, torch.where(t <= 5.0, near, far))


def fill_params(row: FillRow, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> dict:
    """The kernels' parameters of a row for an output dtype (:func:`depthinit.kernels.contract.fill_params`), as
    0-d tensors: fp64 for fp64 outputs, fp32 otherwise."""
    values = contract.fill_params(row.dist, row.mean, row.std, row.low, row.high, dtype)
    work = torch.float64 if dtype == torch.float64 else torch.float32
    return {k: torch.tensor(v, dtype=work, device=device) for k, v in zip(contract.FILL_PARAMS, values)}


def _standard(dist: int, w: tuple, p: dict) -> list[torch.Tensor]:
    """fp32 standard values (z, or u for uniform) of the four words of each counter."""
    if dist == DIST_NORMAL:
        return [*_box_muller(w[0], w[1]), *_box_muller(w[2], w[3])]
    units = [unit(x) for x in w]
    if dist == DIST_UNIFORM:
        return units
    cdf_lo, sf_hi, width = (p[k].float() for k in ("cdf_lo", "sf_hi", "width"))
    out = []
    for u in units:
        lo_tail = cdf_lo + width * u
        hi_tail = sf_hi + width * (1.0 - u)
        lower = lo_tail <= hi_tail
        z = ppnd7(torch.where(lower, lo_tail, hi_tail))
        out.append(torch.where(lower, -z, z))
    return out


def _affine(dist: int, v: torch.Tensor, p: dict, dtype: torch.dtype) -> torch.Tensor:
    """``mean + std * z`` (uniform: ``low + (high - low) * u``) in the working precision, clamped, rounded once."""
    v = v.to(p["mean"].dtype)
    if dist == DIST_UNIFORM:
        x = p["low"] + (p["high"] - p["low"]) * v
    else:
        x = p["mean"] + p["std"] * v
    if dist != DIST_NORMAL:
        x = torch.clamp(x, p["clamp_lo"], p["clamp_hi"])
    return x.to(dtype)


def _check_dtype(dtype: torch.dtype) -> None:
    if dtype not in contract.FILL_DTYPES:
        raise TypeError(f"fill writes floating-point tensors (fp32, fp16, bf16, fp64), got {dtype}")


def counter_block_values(
    dist: int,
    n: int,
    c_start: torch.Tensor,
    stream: torch.Tensor,
    k0: torch.Tensor,
    k1: torch.Tensor,
    params: dict[str, torch.Tensor],
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``[n, 4]`` values (``dtype``) of the counters ``c_start .. c_start + n - 1`` (row ``c`` = elements
    ``4c .. 4c+3``).

    ``c_start, stream, k0, k1`` are int64 0-d tensors on the device to compute on, ``params`` from
    :func:`fill_params` for ``dtype`` (same device); ``dist`` is not ``constant``. This is the per-counter form of
    :func:`reference_values` (Philox once per counter, all four words used).
    """
    c = c_start + torch.arange(n, dtype=torch.int64, device=c_start.device)
    zero = torch.zeros_like(c)
    words = _philox(c & MASK32, c >> 32, zero + stream, zero, k0, k1)
    return torch.stack([_affine(dist, v, params, dtype) for v in _standard(dist, words, params)], dim=1)


def reference_values(
    row: FillRow,
    seed: int,
    numel: int | torch.Tensor,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The exact values of a fill, element by element (the slow oracle).

    Args:
        row: distribution, parameters, stream and shard geometry (``None``: the tensor is the whole tensor).
        seed: int in ``[0, 2**64)``.
        numel: number of local elements (flat indices ``0 .. numel - 1``), or an int64 tensor of local flat indices.
        dtype: output dtype (fp32, fp16, bf16, fp64; see the module docstring for the precision of each).

    Returns:
        1-D tensor of the values at those local indices.

    Example:
        >>> row = FillRow(DIST_UNIFORM, low=-1.0, high=1.0, stream=stream_id("w"))
        >>> reference_values(row, seed=0, numel=8).shape
        torch.Size([8])
    """
    _check_dtype(dtype)
    k0, k1 = seed_key(seed)
    if not 0 <= int(row.stream) <= MASK32:
        raise ValueError(f"stream must be a 32-bit id, got {row.stream}")
    local = torch.arange(numel, dtype=torch.int64) if isinstance(numel, int) else numel.to(torch.int64).reshape(-1)
    p = fill_params(row, local.device, dtype)
    if row.dist == DIST_CONSTANT:
        return torch.full(local.shape, float(p["mean"]), dtype=dtype, device=local.device)
    g = local if row.geometry is None else row.geometry.global_index(local)
    c, j = g >> 2, g & 3
    words = _philox(c & MASK32, c >> 32, torch.full_like(c, int(row.stream)), torch.zeros_like(c), k0, k1)
    v = _standard(row.dist, words, p)
    values = torch.where(j == 0, v[0], torch.where(j == 1, v[1], torch.where(j == 2, v[2], v[3])))
    return _affine(row.dist, values, p, dtype)


def reference_fill_(tensor: torch.Tensor, row: FillRow, seed: int) -> torch.Tensor:
    """Fill ``tensor`` (any layout, CPU) in place with :func:`reference_values`; returns it."""
    values = reference_values(row, seed, tensor.numel(), tensor.dtype)
    with torch.no_grad():
        tensor.copy_(values.reshape(tensor.shape))
    return tensor
