"""The CPU fill kernel (kernels/cpu_fill.c through depthinit.kernels.cpu_fill) and the transforms of the contract.

The kernel is compared with the torch reference (depthinit.rng) at test_fill_kernel.py's tolerances (``close``):
unit uniforms, uniform, constant values exactly; normal and truncated-normal values within a few ulp of
``|mean| + 6 std`` (the kernel's own Cephes-style ``log/sin/cos`` against torch's, each about 1 ulp). The
invariances (grouping, sizes, thread counts, shards) are exact: one code path computes every element from
``(seed, stream, global index)`` alone.

Sizes aim at the kernel's structure: work units of 4096 elements (a segment of a long run, or several short runs),
runs starting off a multiple of 4, runs longer than a unit, and tensors large enough (2M elements) that a call
spans many units and both threads.
"""

from __future__ import annotations

import logging
import math
import shutil

import numpy as np
import pytest
import torch
from scipy import special, stats

import depthinit.init as dinit
from depthinit import rng
from depthinit.fill import fill_tensors, prepare_fill
from depthinit.kernels import cpu_fill as K
from depthinit.kernels import native
from depthinit.kernels.contract import (
    DIST_CONSTANT,
    DIST_NORMAL,
    DIST_TRUNC_NORMAL,
    DIST_UNIFORM,
    FillRow,
    ShardGeometry,
)
from tests.test_fill_kernel import GEOMETRIES, KS_ALPHA, SEED, _geometry, _row, close

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
DISTS = [DIST_NORMAL, DIST_UNIFORM, DIST_TRUNC_NORMAL, DIST_CONSTANT]
U = 4096  # elements per work unit (CHUNK in cpu_fill.c)
# geometries that cross work units: long runs, a long run starting at an odd offset, many short runs
LONG_GEOMETRIES = [
    ("whole_3_units", (3 * U + 5,), None, 0, 0),
    ("shard0_long_odd", (9, 1001), 0, 3, 5),  # one run of 5005 elements from global index 3003
    ("shard1_long_runs", (3, 3 * U), 1, 7, 2 * U + 3),  # three runs longer than a unit
    ("shard1_short_runs", (5000, 7), 1, 2, 3),  # 5000 runs of 3: several runs per unit
]


@pytest.fixture(autouse=True, scope="module")
def _kernel():
    if K.library() is None:
        pytest.skip("no C compiler: the CPU fill kernel cannot be built")


def _native(tensors, rows, seed=SEED, threads=None):
    K.prepare(tensors, rows)(seed, threads)


@pytest.mark.parametrize("dist", DISTS)
def test_kernel_matches_reference_every_dtype_and_geometry(dist):
    """One call per distribution: every geometry in fp32, fp16, bf16 and fp64 (mixed dtypes in one call)."""
    tensors, rows = [], []
    for k, (_, shape, dim, offset, size) in enumerate(GEOMETRIES + LONG_GEOMETRIES):
        geo = _geometry(shape, dim, offset, size)
        numel = math.prod(shape) if geo is None else geo.local_numel
        for j, dtype in enumerate(DTYPES):
            tensors.append(torch.full((numel,), float("nan"), dtype=dtype))
            rows.append(_row(dist, geo, stream=1000 * k + j))
    _native(tensors, rows)
    for t, row in zip(tensors, rows):
        close(t, rng.reference_values(row, SEED, t.numel(), t.dtype), row)


@pytest.mark.parametrize("dist", [DIST_NORMAL, DIST_UNIFORM, DIST_TRUNC_NORMAL])
def test_standard_values_against_the_reference(dist):
    """Before the affine step: unit uniforms bit for bit; z of normal and trunc_normal within 4 ulp of |z|
    (log, sqrt, cos or sin, and the product each round: 3 ulp measured over 800k values)."""
    row = FillRow(dist, low=-1.5, high=2.5, stream=31)
    n = 5000
    got = K.standard_values(dist, 2**32 - 7, n, row.stream, SEED, row).reshape(-1)  # counters cross 2**32
    c = torch.arange(2**32 - 7, 2**32 - 7 + n, dtype=torch.int64)
    words = rng.philox4x32_10(c & rng.MASK32, c >> 32, row.stream, 0, *rng.seed_key(SEED))
    want = torch.stack(rng._standard(dist, words, rng.fill_params(row)), 1).reshape(-1)
    if dist == DIST_UNIFORM:
        assert torch.equal(got, want) and torch.equal(want, torch.stack([rng.unit(w) for w in words], 1).reshape(-1))
    else:
        ulp = (torch.nextafter(want.abs(), torch.tensor(math.inf)) - want.abs()).double()
        assert bool(((got.double() - want.double()).abs() <= 4 * torch.maximum(ulp, torch.tensor(2.0**-24))).all())


def test_values_independent_of_grouping_sizes_and_threads():
    """The 0.weight of a Linear(600, 500) gets the same bits alone, beside a 2M-element weight, in any order,
    and with any thread count (before the C kernel: 60,957 of 300,000 elements differed)."""
    small, big = torch.empty(500, 600), torch.empty(1000, 2000)
    rows = {d: FillRow(d, mean=0.01, std=0.02, low=-0.03, high=0.05, stream=rng.stream_id("0.weight")) for d in DISTS}
    other = FillRow(DIST_NORMAL, std=0.02, stream=rng.stream_id("1.weight"))
    for dist, row in rows.items():
        fill_tensors([small], [row], SEED)
        alone = small.clone()
        fill_tensors([big, small], [other, row], SEED)
        assert torch.equal(small, alone)
        for threads in (1, 2, 3, 8):
            small.zero_()
            _native([small, big], [row, other], threads=threads)
            assert torch.equal(small, alone), (dist, threads)
        big_alone = big.clone()
        _native([big], [other], threads=1)
        assert torch.equal(big, big_alone)


@pytest.mark.parametrize("dim", [0, 1])
@pytest.mark.parametrize("parts", [2, 4, 3])
def test_large_shards_equal_slices_of_the_whole(dim, parts):
    """A 2000 x 1000 weight split into shards (even and uneven) is exactly the slices of the unsharded fill."""
    shape = (2000, 1000)
    for dist in (DIST_NORMAL, DIST_TRUNC_NORMAL):
        row = FillRow(dist, std=0.02, low=-0.04, high=0.04, stream=rng.stream_id(f"w{dim}{parts}"))
        whole = torch.empty(shape)
        fill_tensors([whole], [row], SEED)
        bounds = np.linspace(0, shape[dim], parts + 1).astype(int)
        shards, shard_rows = [], []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            geo = ShardGeometry.along(shape, dim, int(lo), int(hi - lo))
            shards.append(torch.empty(geo.local_numel))
            shard_rows.append(row._replace(geometry=geo))
        fill_tensors(shards, shard_rows, SEED)
        for (lo, hi), shard in zip(zip(bounds[:-1], bounds[1:]), shards):
            assert torch.equal(shard, whole.narrow(dim, int(lo), int(hi - lo)).reshape(-1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_uniform_is_half_open_after_rounding(dtype):
    """uniform_(0, 1) never returns 1.0 in the target dtype (before: 998 times in fp16, 7,959 in bf16 in 4M),
    nor b in fp32 where low + (high - low) * u rounds up to it ([1, 2): the largest u gives a tie to 2.0)."""
    for low, high in ((0.0, 1.0), (1.0, 2.0), (-0.1, 0.3)):
        w = torch.empty(1 << 22, dtype=dtype)
        dinit.uniform_(w, low, high, seed=3)
        v = w.double()
        assert float(v.max()) < high and float(v.min()) >= low, (low, high)
        ref = rng.reference_values(FillRow(DIST_UNIFORM, low=low, high=high), 3, 1 << 16, dtype)
        assert torch.equal(w[: 1 << 16], ref)


def test_fp64_targets_get_fp64_parameters():
    """seed= on fp64 tensors: no rounding of the parameters to fp32 (before: all zeros, 1.0010000467, values
    outside [a, b])."""
    w = torch.empty(1 << 16, dtype=torch.float64)
    dinit.uniform_(w, 1e-50, 2e-50, seed=0)
    assert float(w.min()) >= 1e-50 and float(w.max()) < 2e-50 and w.unique().numel() > 60000
    dinit.normal_(w, 1.001, 0.0, seed=0)
    assert bool((w == 1.001).all())
    a, b = -0.1 + 1e-12, 0.2 - 1e-12  # bounds between fp32 values
    dinit.trunc_normal_(w, mean=0.05, std=0.1, a=a, b=b, seed=0)
    assert float(w.min()) >= a and float(w.max()) <= b
    row = FillRow(DIST_TRUNC_NORMAL, 0.05, 0.1, a, b)
    close(w, rng.reference_values(row, 0, w.numel(), w.dtype), row)


@pytest.mark.parametrize("dtype", DTYPES)
def test_trunc_normal_inside_bounds_in_the_target_dtype(dtype):
    """Bounds that are not values of the dtype: every value lies in [a, b] after rounding."""
    w = torch.empty(1 << 18, dtype=dtype)
    a, b = -0.1, 0.1
    dinit.trunc_normal_(w, mean=0.0, std=1.0, a=a, b=b, seed=1)
    v = w.double()
    assert float(v.min()) >= a and float(v.max()) <= b


def test_trunc_normal_keeps_its_shape_in_a_far_tail():
    """[5, 8] standard deviations out: the inverse CDF works on 1 - p in the upper tail (before: 6 distinct
    values in 2M draws; torch.nn.init.trunc_normal_: about 859k). KS against the exact truncated CDF."""
    n = 1 << 21
    w = torch.empty(n)
    with pytest.warns(UserWarning, match="more than 2 std"):  # torch's own warning, kept by the drop-in
        dinit.trunc_normal_(w, mean=0.0, std=1.0, a=5.0, b=8.0, seed=7)
    assert float(w.min()) >= 5.0 and float(w.max()) <= 8.0
    assert w.unique().numel() > 500_000
    x = w.double().numpy()
    lo, hi = special.ndtr(-8.0), special.ndtr(-5.0)  # upper tail by symmetry, exact in fp64

    def cdf(v):
        return np.clip((hi - special.ndtr(-v)) / (hi - lo), 0.0, 1.0)

    assert stats.kstest(x, cdf).pvalue > KS_ALPHA
    for a, b in ((-8.0, -5.0), (-12.0, -9.0)):  # the lower tail, and far enough that 1 - p is not representable
        row = FillRow(DIST_TRUNC_NORMAL, low=a, high=b, stream=5)
        t = torch.empty(1 << 16)
        fill_tensors([t], [row], 7)
        close(t, rng.reference_values(row, 7, t.numel()), row._replace(mean=abs(a) - 6))
        p_lo, p_hi = special.ndtr(a), special.ndtr(b)
        tail_cdf = lambda v, p_lo=p_lo, p_hi=p_hi: (special.ndtr(v) - p_lo) / (p_hi - p_lo)  # noqa: E731
        assert stats.kstest(t.double().numpy(), tail_cdf).pvalue > KS_ALPHA


def test_trunc_normal_refuses_bounds_fp32_cannot_resolve():
    with pytest.raises(ValueError, match="within ~11 std"):
        fill_tensors([torch.empty(4)], [FillRow(DIST_TRUNC_NORMAL, low=20.0, high=30.0)], SEED)


def test_prepared_fill_is_reused_and_any_seed():
    ts = [torch.empty(37, 5), torch.empty(U + 1, dtype=torch.bfloat16)]
    rows = [_row(DIST_UNIFORM, None, 3), _row(DIST_NORMAL, None, 4)]
    prepared = prepare_fill(ts, rows)
    assert len(prepared.native) == 1 and not prepared.torch_jobs
    for seed in (0, 2**64 - 1):
        prepared(seed)
        for t, row in zip(ts, rows):
            close(t.reshape(-1), rng.reference_values(row, seed, t.numel(), t.dtype), row)


def test_no_compiler_falls_back_with_one_warning(tmp_path, monkeypatch, caplog):
    """Without a C compiler: one logged warning, and the torch path gives the contract values."""
    monkeypatch.setenv("DEPTHINIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "false")
    monkeypatch.setattr("shutil.which", lambda name: "/bin/false" if name == "false" else None)
    K.library.cache_clear()
    try:
        rows = [_row(d, None, 9) for d in DISTS]
        ts = [torch.empty(300, dtype=torch.float64) for _ in rows]
        with caplog.at_level(logging.WARNING, logger=K.__name__):
            fill_tensors(ts, rows, SEED)
            fill_tensors(ts, rows, SEED)
        assert len(caplog.records) == 1 and "CPU kernel unavailable" in caplog.text
        for t, row in zip(ts, rows):
            assert torch.equal(t, rng.reference_values(row, SEED, 300, t.dtype))
        with pytest.raises(RuntimeError, match="could not be built"):
            fill_tensors(ts, rows, SEED, backend="native")
    finally:
        monkeypatch.undo()
        K.library.cache_clear()
    assert K.library() is not None


def test_the_two_sources_build_side_by_side_into_one_library_keyed_by_both(tmp_path):
    """cpu_fill.c and cpu_random.c compile in parallel and link into one library that has both halves' entry
    points and writes the bits of the default build; a change in either source is a new build; a compile error
    names the source's problem and leaves no partial file in the cache."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for path in [*K.SOURCES, *K.SOURCE.parent.glob("*.h")]:
        shutil.copy(path, src)
    sources = [src / p.name for p in K.SOURCES]
    first = native.build(sources, K.compile_flags(avx512=True), out)
    lib = K.load(first)
    row = _row(DIST_UNIFORM, ShardGeometry.along((3, 2 * U + 1), 1, 5, U + 7), 9)
    a, b = (torch.empty(row.geometry.local_numel) for _ in range(2))
    K.prepare([a], [row])(SEED)
    K.prepare([b], [row], lib=lib)(SEED)
    assert torch.equal(a, b) and torch.equal(a, rng.reference_values(row, SEED, a.numel(), a.dtype))
    assert native.build(sources, K.compile_flags(avx512=True), out) == first  # cached
    sources[1].write_text(sources[1].read_text() + "\n/* another version */\n")
    second = native.build(sources, K.compile_flags(avx512=True), out)
    assert second != first
    sources[1].write_text(sources[1].read_text() + "\n#error broken on purpose\n")
    with pytest.raises(RuntimeError, match="broken on purpose"):
        native.build(sources, K.compile_flags(avx512=True), out)
    assert sorted(p.name for p in out.iterdir()) == sorted([first.name, second.name])


def test_portable_build_gives_the_same_bits(tmp_path, monkeypatch):
    """A build without AVX2 / FMA / F16C (scalar Philox, other vector widths) writes the same bits: every step is
    one IEEE operation in a fixed order (no contraction, no fast-math), so the values do not depend on the CPU."""
    flags = [f for f in K.compile_flags() if not f.startswith("-m")]
    monkeypatch.setattr(K, "compile_flags", lambda avx512=False: flags)
    plain = K.load(K.build(tmp_path))
    for dist in DISTS:
        for dtype in DTYPES:
            row = _row(dist, ShardGeometry.along((3, 3 * U + 1), 1, 5, 2 * U + 7), 41)
            a, b = (torch.empty(row.geometry.local_numel, dtype=dtype) for _ in range(2))
            K.prepare([a], [row])(SEED)
            K.prepare([b], [row], lib=plain)(SEED)
            assert torch.equal(a.view(torch.uint8), b.view(torch.uint8)), (dist, dtype)
