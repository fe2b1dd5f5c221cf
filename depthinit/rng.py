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
  ``t = fp32(2 pi) * unit(w_odd)``, the even element gets ``r * cos(t)``, the odd one ``r * sin(t)``; then
  ``mean + std * z``.
* uniform: ``low + (high - low) * unit(w)``.
* truncated normal (inverse CDF): ``cdf_lo, cdf_hi = Phi((low - mean) / std), Phi((high - mean) / std)`` in fp64
  on the host (``math.erf``), rounded to fp32; ``p = cdf_lo + (cdf_hi - cdf_lo) * unit(w)``;
  ``x = clamp(2 * p - 1, -(1 - 2**-24), 1 - 2**-24)``; ``z = fp32(sqrt 2) * erfinv_f32(x)`` with Giles'
  single-precision erfinv (plain log/sqrt/polynomials, both branches evaluated, then selected);
  ``clamp(mean + std * z, low, high)``.
* constant: ``mean``.

All of it is fp32, one IEEE op at a time, in the order written above (``a + b * c`` is a multiply, then an add);
parameters are rounded to fp32 first. The value is rounded once to the output dtype. The Triton kernel
(:mod:`depthinit.kernels.fill`) follows the same order; on a GPU, FMA contraction and the device's
``log/cos/sin`` make scaled and transformed values differ from this reference by a few ulp, while ``unit`` is
bit-exact.

This module is the oracle (integer ops on int64 tensors holding uint32 values, no int64 overflow anywhere);
``counter_block_values`` is the same computation per counter block, which :mod:`depthinit.fill` compiles with
``torch.compile`` for the fast CPU path.
"""

from __future__ import annotations

import hashlib
import math

import torch

from depthinit.kernels._tables import (
    DIST_CODES,
    DIST_CONSTANT,
    DIST_NORMAL,
    DIST_TRUNC_NORMAL,
    DIST_UNIFORM,
    FillRow,
)

__all__ = [
    "philox4x32_10",
    "stream_id",
    "seed_key",
    "unit",
    "erfinv_f32",
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
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int in [0, 2**64), got {type(seed).__name__} {seed!r}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an int in [0, 2**64), got {seed}")
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
    """``(Phi((low - mean) / std), Phi((high - mean) / std))`` in fp64 (``math.erf``)."""
    if not std > 0:
        raise ValueError(f"trunc_normal needs std > 0, got {std}")
    if not low < high:
        raise ValueError(f"trunc_normal needs low < high, got [{low}, {high}]")

    def phi(x: float) -> float:
        return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))

    return phi((low - mean) / std), phi((high - mean) / std)


def fill_params(row: FillRow, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """fp32 0-d tensors ``mean, std, low, high, cdf_lo, cdf_hi`` of a row (what the kernel's table holds)."""
    if row.dist not in DIST_CODES.values():
        raise ValueError(f"unknown distribution code {row.dist!r}; expected one of {DIST_CODES}")
    cdf = trunc_normal_cdf(row.mean, row.std, row.low, row.high) if row.dist == DIST_TRUNC_NORMAL else (0.0, 0.0)
    values = dict(mean=row.mean, std=row.std, low=row.low, high=row.high, cdf_lo=cdf[0], cdf_hi=cdf[1])
    return {k: torch.tensor(float(v), dtype=torch.float32, device=device) for k, v in values.items()}


def _normal(wa: torch.Tensor, wb: torch.Tensor, p: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean + std * z`` for the Box-Muller pair of words ``(wa, wb)``: (even element, odd element)."""
    z_cos, z_sin = _box_muller(wa, wb)
    return p["mean"] + p["std"] * z_cos, p["mean"] + p["std"] * z_sin


def _from_word(dist: int, w: torch.Tensor, p: dict) -> torch.Tensor:
    """fp32 value of an element of a one-word distribution (uniform, trunc_normal) from its word."""
    if dist == DIST_UNIFORM:
        return p["low"] + (p["high"] - p["low"]) * unit(w)
    if dist == DIST_TRUNC_NORMAL:
        prob = p["cdf_lo"] + (p["cdf_hi"] - p["cdf_lo"]) * unit(w)
        x = torch.clamp(2.0 * prob - 1.0, -X_MAX, X_MAX)
        z = SQRT2 * erfinv_f32(x)
        return torch.clamp(p["mean"] + p["std"] * z, p["low"], p["high"])
    raise ValueError(f"no one-word transform for distribution code {dist}")


def counter_block_values(
    dist: int,
    n: int,
    c_start: torch.Tensor,
    stream: torch.Tensor,
    k0: torch.Tensor,
    k1: torch.Tensor,
    params: dict[str, torch.Tensor],
) -> torch.Tensor:
    """fp32 ``[n, 4]`` values of the counters ``c_start .. c_start + n - 1`` (row ``c`` = elements ``4c .. 4c+3``).

    ``c_start, stream, k0, k1`` are int64 0-d tensors on the device to compute on, ``params`` from
    :func:`fill_params` (same device); ``dist`` is not ``constant``. This is the per-counter form of
    :func:`reference_values` (Philox once per counter, all four words used), the function the CPU fast path
    compiles.
    """
    c = c_start + torch.arange(n, dtype=torch.int64, device=c_start.device)
    zero = torch.zeros_like(c)
    w0, w1, w2, w3 = _philox(c & MASK32, c >> 32, zero + stream, zero, k0, k1)
    if dist == DIST_NORMAL:
        values = [*_normal(w0, w1, params), *_normal(w2, w3, params)]
    else:
        values = [_from_word(dist, w, params) for w in (w0, w1, w2, w3)]
    return torch.stack(values, dim=1)


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
        dtype: output dtype (fp32 values rounded once; fp32, fp16, bf16, fp64).

    Returns:
        1-D tensor of the values at those local indices.

    Example:
        >>> row = FillRow(DIST_UNIFORM, low=-1.0, high=1.0, stream=stream_id("w"))
        >>> reference_values(row, seed=0, numel=8).shape
        torch.Size([8])
    """
    if not (dtype.is_floating_point and dtype.itemsize >= 2):
        raise TypeError(f"fill writes floating-point tensors (fp32, fp16, bf16, fp64), got {dtype}")
    k0, k1 = seed_key(seed)
    if not 0 <= int(row.stream) <= MASK32:
        raise ValueError(f"stream must be a 32-bit id, got {row.stream}")
    local = torch.arange(numel, dtype=torch.int64) if isinstance(numel, int) else numel.to(torch.int64).reshape(-1)
    p = fill_params(row, local.device)
    if row.dist == DIST_CONSTANT:
        return torch.full(local.shape, float(p["mean"]), dtype=torch.float32, device=local.device).to(dtype)
    g = local if row.geometry is None else row.geometry.global_index(local)
    c, j = g >> 2, g & 3
    w0, w1, w2, w3 = _philox(c & MASK32, c >> 32, torch.full_like(c, int(row.stream)), torch.zeros_like(c), k0, k1)
    if row.dist == DIST_NORMAL:  # pair (0, 1) or (2, 3); cos for the even element, sin for the odd one
        first = j < 2
        even, odd = _normal(torch.where(first, w0, w2), torch.where(first, w1, w3), p)
        values = torch.where(j % 2 == 0, even, odd)
    else:
        word = torch.where(j == 0, w0, torch.where(j == 1, w1, torch.where(j == 2, w2, w3)))
        values = _from_word(row.dist, word, p)
    return values.to(dtype)


def reference_fill_(tensor: torch.Tensor, row: FillRow, seed: int) -> torch.Tensor:
    """Fill ``tensor`` (any layout, CPU) in place with :func:`reference_values`; returns it."""
    values = reference_values(row, seed, tensor.numel(), tensor.dtype)
    with torch.no_grad():
        tensor.copy_(values.reshape(tensor.shape))
    return tensor
