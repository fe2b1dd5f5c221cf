"""depthinit.rng: the torch reference of the random-number contract (DESIGN.md).

Tolerances:

* Philox words, stream ids, unit uniforms, slices: exact (integer ops and single correctly rounded fp32 ops).
* ``ERFINV_RTOL = 4e-7``: Giles' single-precision erfinv has a relative error of about 2 fp32 ulps
  (2.5e-7 measured over 2M points in (-1, 1)); 4e-7 is ~3.4 ulp (2**-23 = 1.19e-7). ``PPND7_RTOL`` likewise
  for AS241 PPND7 (the truncated normal's inverse CDF).
* KS tests: with fixed seeds the tests are deterministic. Each asserts ``p > KS_ALPHA = 1e-3``: a correct
  generator gives a p-value uniform in (0, 1), so one fixed seed fails with probability 1e-3 — and once it
  passes it always passes; a biased transform (wrong pair, wrong scale, off-by-one in the CDF bounds) gives
  p-values of 1e-30 and below at these sizes (n = 2**16).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from depthinit import rng
from depthinit.kernels.contract import (
    DIST_CONSTANT,
    DIST_NORMAL,
    DIST_TRUNC_NORMAL,
    DIST_UNIFORM,
    FillRow,
    ShardGeometry,
)

# Random123 tests/kat_vectors, the three "philox4x32 10" lines: counter (4 words), key (2 words), expected.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]
ERFINV_RTOL = 4e-7
PPND7_RTOL = 4e-7  # AS241 PPND7: 1.2e-7 in exact arithmetic (Wichura), plus a few fp32 roundings
KS_ALPHA = 1e-3
SEED = 20240917
ALL_DISTS = [DIST_NORMAL, DIST_UNIFORM, DIST_TRUNC_NORMAL, DIST_CONSTANT]


def _row(dist: int, geometry: ShardGeometry | None = None, stream: int = 12345) -> FillRow:
    return FillRow(dist, mean=0.25, std=1.5, low=-2.0, high=3.0, stream=stream, geometry=geometry)


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_philox_known_answers(counter, key, expected):
    words = rng.philox4x32_10(*(torch.tensor([c]) for c in counter), *key)
    assert tuple(int(w) for w in words) == expected


def test_philox_batched_equals_one_by_one():
    c0 = torch.tensor([0, 1, 0xFFFFFFFF, 12345])
    batched = torch.stack(rng.philox4x32_10(c0, 7, 0xFFFFFFFF, 0, 3, 0x80000000), 1)
    for i in range(4):
        single = rng.philox4x32_10(torch.tensor([int(c0[i])]), 7, 0xFFFFFFFF, 0, 3, 0x80000000)
        assert batched[i].tolist() == [int(w) for w in single]


def test_philox_rejects_bad_words():
    with pytest.raises(ValueError, match=r"\[0, 2\*\*32\)"):
        rng.philox4x32_10(torch.tensor([2**32]), 0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match=r"\[0, 2\*\*32\)"):
        rng.philox4x32_10(torch.tensor([0]), 0, 0, 0, -1, 0)
    with pytest.raises(TypeError, match="int64"):
        rng.philox4x32_10(torch.tensor([0.5]), 0, 0, 0, 0, 0)


def test_stream_id_is_stable_blake2b():
    # blake2b(b"layers.0.weight", digest_size=4) read little-endian, computed once and pinned here.
    assert rng.stream_id("layers.0.weight") == 3843510026
    ids = {rng.stream_id(f"layers.{i}.weight") for i in range(1000)}
    assert len(ids) == 1000 and all(0 <= i < 2**32 for i in ids)
    with pytest.raises(TypeError, match="name"):
        rng.stream_id(3)


@pytest.mark.parametrize("bad", [-1, 2**64, 1.0, True, "0", None])
def test_seed_validation(bad):
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*64\)"):
        rng.seed_key(bad)


def test_seed_key_words():
    assert rng.seed_key(0) == (0, 0)
    assert rng.seed_key(2**64 - 1) == (0xFFFFFFFF, 0xFFFFFFFF)
    assert rng.seed_key(0x0123456789ABCDEF) == (0x89ABCDEF, 0x01234567)


def test_unit_uniform_is_the_contract_formula():
    w = torch.tensor([0, 255, 256, 2**31 - 1, 2**31, 0xFFFFFF00, 0xFFFFFEFF, 0xFFFFFFFF], dtype=torch.int64)
    u = rng.unit(w)
    assert u.dtype == torch.float32
    # exact midpoints (k + 0.5) / 2**23 of the top 23 bits, computed in fp64 (every value is exact in fp32)
    expected = (((w >> 9).double() + 0.5) / 2.0**23).float()
    np.testing.assert_array_equal(u.numpy(), expected.numpy())
    assert torch.equal(u.double(), ((w >> 9).double() + 0.5) / 2.0**23)  # no rounding anywhere
    assert float(u[0]) == 2.0**-24  # smallest value, never 0
    assert float(u[-1]) == 1.0 - 2.0**-24  # largest value, never 1
    assert bool(((u > 0) & (u < 1)).all())


def test_unit_is_exact_over_the_whole_range():
    m = torch.arange(0, 2**23, 997, dtype=torch.int64)
    u = rng.unit(m << 9).double()
    assert torch.equal(u, (m.double() + 0.5) * 2.0**-23)


def test_ppnd7_against_scipy():
    """AS241 PPND7 in fp32: relative error of about 1 ulp over the whole fp32 range of tail probabilities."""
    s = torch.cat([torch.logspace(-37.9, math.log10(0.5), 200_001), torch.linspace(0.05, 0.5, 100_001)])
    z = rng.ppnd7(s.float()).double().numpy()
    ref = -special.ndtri(s.float().double().numpy())
    nz = ref > 1e-3
    assert (np.abs(z[nz] - ref[nz]) / ref[nz]).max() < PPND7_RTOL
    assert np.abs(z[~nz] - ref[~nz]).max() < 1e-9


def test_erfinv_f32_against_scipy():
    x = torch.linspace(-rng.X_MAX, rng.X_MAX, 400_001, dtype=torch.float32)
    y = rng.erfinv_f32(x).double().numpy()
    ref = special.erfinv(x.double().numpy())
    nz = ref != 0
    rel = np.abs(y[nz] - ref[nz]) / np.abs(ref[nz])
    assert rel.max() < ERFINV_RTOL
    assert np.all(y[~nz] == 0)


@pytest.mark.parametrize("dist", ALL_DISTS)
@pytest.mark.parametrize(
    "shape,dim,offset,size",
    [((41, 7), 0, 13, 11), ((6, 29), 1, 5, 17), ((3, 5, 11), 2, 3, 6), ((3, 5, 11), 1, 1, 3), ((9,), 0, 2, 5)],
)
def test_slice_alone_equals_slice_of_whole(dist, shape, dim, offset, size):
    numel = math.prod(shape)
    whole = rng.reference_values(_row(dist), SEED, numel).reshape(shape)
    geo = ShardGeometry.along(shape, dim, offset, size)
    part = rng.reference_values(_row(dist, geo), SEED, geo.local_numel)
    expected = whole.narrow(dim, offset, size).reshape(-1)
    assert torch.equal(part, expected)


@pytest.mark.parametrize("dist", ALL_DISTS)
def test_index_tensor_form_and_counter_blocks_agree(dist):
    row = _row(dist)
    full = rng.reference_values(row, SEED, 4000)
    idx = torch.tensor([3999, 0, 17, 2048, 5])
    assert torch.equal(rng.reference_values(row, SEED, idx), full[idx])
    if dist != DIST_CONSTANT:  # the per-counter block function (CPU fast path) does the same ops
        key = [torch.tensor(k) for k in rng.seed_key(SEED)]
        block = rng.counter_block_values(
            dist, 1000, torch.tensor(0), torch.tensor(row.stream), *key, rng.fill_params(row)
        )
        assert torch.equal(block.reshape(-1), full)


def test_values_depend_on_seed_stream_and_index_only():
    base = rng.reference_values(_row(DIST_UNIFORM), SEED, 64)
    assert torch.equal(base, rng.reference_values(_row(DIST_UNIFORM), SEED, 64))
    assert not torch.equal(base, rng.reference_values(_row(DIST_UNIFORM), SEED + 1, 64))
    assert not torch.equal(base, rng.reference_values(_row(DIST_UNIFORM, stream=12346), SEED, 64))
    # high key word and high counter word matter (64-bit seeds, tensors beyond 2**34 elements)
    assert not torch.equal(base, rng.reference_values(_row(DIST_UNIFORM), SEED + 2**32, 64))
    far = ShardGeometry(1, 64, 2**40, 1, 2**36)
    assert not torch.equal(base, rng.reference_values(_row(DIST_UNIFORM, far), SEED, 64))


def test_element_takes_its_word_and_normal_pairs():
    row = _row(DIST_UNIFORM)
    w = rng.philox4x32_10(torch.tensor([1]), 0, row.stream, 0, *rng.seed_key(SEED))
    u = rng.reference_values(FillRow(DIST_UNIFORM, low=0.0, high=1.0, stream=row.stream), SEED, 8)[4:]
    assert torch.equal(u, torch.cat([rng.unit(x) for x in w]))  # elements 4..7 = words 0..3 of counter 1
    z = rng.reference_values(FillRow(DIST_NORMAL, stream=row.stream), SEED, 8)[4:]
    for a, b in ((0, 1), (2, 3)):
        r = torch.sqrt(-2.0 * torch.log(rng.unit(w[a])))
        t = rng.TWO_PI * rng.unit(w[b])
        assert torch.equal(z[a : a + 1], r * torch.cos(t)) and torch.equal(z[b : b + 1], r * torch.sin(t))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rounded_once_to_the_output_dtype(dtype):
    row = _row(DIST_NORMAL)
    fp32 = rng.reference_values(row, SEED, 1000)
    assert torch.equal(rng.reference_values(row, SEED, 1000, dtype), fp32.to(dtype))
    with pytest.raises(TypeError, match="floating-point"):
        rng.reference_values(row, SEED, 10, torch.int32)


def test_fp64_outputs_take_fp64_parameters():
    """fp64: the same fp32 standard values, the affine step in fp64 with the unrounded parameters."""
    z = rng.reference_values(FillRow(DIST_NORMAL, stream=5), SEED, 1000).double()
    got = rng.reference_values(FillRow(DIST_NORMAL, mean=1.001, std=0.1, stream=5), SEED, 1000, torch.float64)
    assert torch.equal(got, 1.001 + 0.1 * z)
    assert torch.equal(rng.reference_values(FillRow(DIST_NORMAL, mean=1.001, std=0.0), SEED, 9, torch.float64),
                       torch.full((9,), 1.001, dtype=torch.float64))  # fmt: skip
    u = rng.reference_values(FillRow(DIST_UNIFORM, low=1e-50, high=2e-50), SEED, 1 << 12, torch.float64)
    assert float(u.min()) >= 1e-50 and float(u.max()) < 2e-50 and u.unique().numel() > 4000  # not rounded to 0


def test_reference_fill_in_place_any_layout():
    row = _row(DIST_UNIFORM)
    t = torch.empty(6, 5).t()  # non-contiguous: row-major index of the logical (5, 6) tensor
    rng.reference_fill_(t, row, SEED)
    assert torch.equal(t.reshape(-1), rng.reference_values(row, SEED, 30))


def test_constant_and_bounds():
    c = rng.reference_values(FillRow(DIST_CONSTANT, mean=0.1), SEED, 10)
    assert torch.equal(c, torch.full((10,), 0.1, dtype=torch.float32))
    u = rng.reference_values(FillRow(DIST_UNIFORM, low=-0.5, high=0.25), SEED, 1 << 14)
    assert float(u.min()) >= -0.5 and float(u.max()) <= 0.25
    t = rng.reference_values(FillRow(DIST_TRUNC_NORMAL, mean=1.0, std=2.0, low=0.5, high=1.5), SEED, 1 << 14)
    assert float(t.min()) >= 0.5 and float(t.max()) <= 1.5
    with pytest.raises(ValueError, match="std > 0"):
        rng.fill_params(FillRow(DIST_TRUNC_NORMAL, std=0.0))
    with pytest.raises(ValueError, match="low < high"):
        rng.fill_params(FillRow(DIST_TRUNC_NORMAL, low=1.0, high=1.0))
    with pytest.raises(ValueError, match="distribution code"):
        rng.fill_params(FillRow(9))


N_KS = 1 << 16


def test_ks_uniform():
    u = rng.reference_values(FillRow(DIST_UNIFORM, low=-1.0, high=2.0, stream=1), SEED, N_KS).double().numpy()
    assert stats.kstest(u, stats.uniform(loc=-1.0, scale=3.0).cdf).pvalue > KS_ALPHA


def test_ks_normal_even_odd_and_pairs():
    z = rng.reference_values(FillRow(DIST_NORMAL, mean=0.5, std=2.0, stream=2), SEED, N_KS).double().numpy()
    ref = stats.norm(loc=0.5, scale=2.0).cdf
    assert stats.kstest(z, ref).pvalue > KS_ALPHA
    # the cos and the sin halves separately (a wrong pairing or angle shows up here)
    assert stats.kstest(z[0::2], ref).pvalue > KS_ALPHA
    assert stats.kstest(z[1::2], ref).pvalue > KS_ALPHA
    # independence of the two members of a pair: their correlation is ~N(0, 1/n)
    a, b = (z[0::2] - 0.5) / 2.0, (z[1::2] - 0.5) / 2.0
    assert abs(np.corrcoef(a, b)[0, 1]) < 4.0 / math.sqrt(a.size)


@pytest.mark.parametrize("low,high", [(-2.0, 2.0), (0.5, 3.0), (-4.0, -3.0)])
def test_ks_trunc_normal(low, high):
    mean, std = 0.25, 1.5
    row = FillRow(DIST_TRUNC_NORMAL, mean=mean, std=std, low=low, high=high, stream=3)
    x = rng.reference_values(row, SEED, N_KS).double().numpy()
    lo, hi = special.ndtr((low - mean) / std), special.ndtr((high - mean) / std)

    def cdf(v):  # the truncated normal CDF in fp64 (scipy.stats.truncnorm's, without its slow generic path)
        return np.clip((special.ndtr((v - mean) / std) - lo) / (hi - lo), 0.0, 1.0)

    assert stats.kstest(x, cdf).pvalue > KS_ALPHA
