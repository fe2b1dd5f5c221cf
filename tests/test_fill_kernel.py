"""The fused fill kernel (Triton interpreter on CPU) and the fill dispatch, against the torch reference.

Tolerances (``close``), all relative to ``scale = |mean| + std * ZMAX``, the largest magnitude in the chain:

* unit uniforms and the uniform distribution: exact (the same correctly rounded fp32 ops; the kernel runs without
  FMA contraction);
* normal: the interpreter evaluates ``log/cos/sin`` with NumPy, torch with its own vectorized libm, each within
  1 ulp; the chain ``sqrt(-2 log u)``, ``r cos t``, ``mean + std z`` adds at most a few roundings:
  ``4 ulp(scale)`` (measured: under 1 ulp);
* trunc_normal: ``log`` and ``sqrt`` inside PPND7's tail branch, then the rational function and the affine map:
  ``8 ulp(scale)``;
* fp16 / bf16 outputs: the fp32 values above rounded once; a few-ulp fp32 difference can move a value across a
  rounding boundary of the output dtype, so at most 1 ulp of the output dtype apart.

``ZMAX = 6``: Box-Muller radii are below sqrt(2 * 24 ln 2) = 5.8 (u >= 2**-24); the truncated normals here stay
within their bounds.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from scipy import stats

from depthinit import rng
from depthinit.fill import fill_tensors
from depthinit.kernels import fill as kfill
from depthinit.kernels.contract import (
    DIST_CONSTANT,
    DIST_NORMAL,
    DIST_TRUNC_NORMAL,
    DIST_UNIFORM,
    FillRow,
    ShardGeometry,
)

SEED = 0xDEADBEEF12345
ZMAX = 6.0
BLOCK = 16  # small programs keep the interpreter quick; 4 * BLOCK = 64 elements per program
ULPS = {DIST_NORMAL: 4, DIST_TRUNC_NORMAL: 8, DIST_UNIFORM: 0, DIST_CONSTANT: 0}
KS_ALPHA = 1e-3  # fixed seeds: deterministic; a correct generator fails one fixed seed with probability 1e-3
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name, global shape, sharded dim, offset, local size); None: the whole tensor
GEOMETRIES = [
    ("contiguous", (13, 11), None, 0, 0),  # 143 elements: 2 full fast blocks and a general tail
    ("shard0", (12, 8), 0, 4, 5),  # start 32: fast path
    ("shard0_odd_start", (15, 3), 0, 5, 7),  # start 15: not a multiple of 4, general path
    ("shard1", (9, 10), 1, 3, 4),  # runs of 4 elements, starts 3, 13, ...
    ("shard1_uneven_last", (7, 10), 1, 8, 2),
    ("shard2_3d", (3, 5, 7), 2, 4, 3),
]


def _row(dist: int, geo: ShardGeometry | None, stream: int) -> FillRow:
    return FillRow(dist, mean=0.25, std=1.5, low=-1.0, high=2.0, stream=stream, geometry=geo)


def _geometry(shape, dim, offset, size) -> ShardGeometry | None:
    return None if dim is None else ShardGeometry.along(shape, dim, offset, size)


def _ulp(x: torch.Tensor) -> torch.Tensor:
    """ulp of |x| in x's dtype, as fp64."""
    x = x.abs()
    return (torch.nextafter(x, torch.full_like(x, math.inf)) - x).double()


def close(out: torch.Tensor, ref: torch.Tensor, row: FillRow) -> None:
    """Assert ``out`` matches the reference ``ref`` (same dtype) within the module's tolerances."""
    if ULPS[row.dist] == 0:
        assert torch.equal(out, ref)
        return
    scale = torch.tensor(abs(row.mean) + row.std * ZMAX, dtype=torch.float32)
    tol = ULPS[row.dist] * float(_ulp(scale))
    if out.dtype != torch.float32:
        tol = torch.maximum(torch.tensor(tol, dtype=torch.float64), _ulp(ref))
    diff = (out.double() - ref.double()).abs()
    assert bool((diff <= tol).all()), f"max diff {float(diff.max())} above tolerance"


@pytest.mark.parametrize("dist", [DIST_NORMAL, DIST_UNIFORM, DIST_TRUNC_NORMAL, DIST_CONSTANT])
def test_kernel_matches_reference_every_dtype_and_geometry(dist):
    """One launch per distribution: every geometry in fp32, fp16 and bf16 (mixed dtypes in one launch)."""
    tensors, rows = [], []
    for k, (_, shape, dim, offset, size) in enumerate(GEOMETRIES):
        geo = _geometry(shape, dim, offset, size)
        numel = math.prod(shape) if geo is None else geo.local_numel
        for j, dtype in enumerate((torch.float32, torch.float16, torch.bfloat16)):
            tensors.append(torch.full((numel,), float("nan"), dtype=dtype))
            rows.append(_row(dist, geo, stream=1000 * k + j))
    launch = kfill.prepare_fill(tensors, rows, block=BLOCK)
    launch(SEED)
    for t, row in zip(tensors, rows):
        close(t, rng.reference_values(row, SEED, t.numel(), t.dtype), row)


def test_fill_tensors_triton_equals_torch_backend():
    shape = (33, 7)
    rows = [_row(d, None, stream=d) for d in (DIST_NORMAL, DIST_UNIFORM, DIST_TRUNC_NORMAL, DIST_CONSTANT)]
    a = [torch.empty(shape) for _ in rows]
    b = [torch.empty(shape) for _ in rows]
    fill_tensors(a, rows, SEED, backend="triton")
    fill_tensors(b, rows, SEED, backend="torch")
    for x, y, row in zip(a, b, rows):
        close(x, y, row)


def test_indices_beyond_2_31():
    """64-bit element and counter indices: shard offsets past 2**31 and 2**32, runs whose starts cross them."""
    geos = [
        ShardGeometry(1, 150, 2**40, 1, 2**33 + 8),  # fast path, counters above 2**31
        ShardGeometry(1, 150, 2**40, 1, 2**32 - 75),  # crosses the 2**32 element boundary, start % 4 = 1
        ShardGeometry(3, 50, 2**31 + 7, 1, 2**31 - 20),  # runs at 2**31 - 20, 2**32 - 13, 3 * 2**31 - 6
    ]
    tensors = [torch.empty(g.local_numel) for g in geos]
    rows = [FillRow(DIST_UNIFORM, low=-1.0, high=1.0, stream=9, geometry=g) for g in geos]
    kfill.prepare_fill(tensors, rows, block=BLOCK)(SEED)
    for t, row in zip(tensors, rows):
        assert torch.equal(t, rng.reference_values(row, SEED, t.numel()))
    # the same counters from a tensor laid out differently: element 2**33 + 8 + i of the first geometry
    direct = rng.reference_values(FillRow(DIST_UNIFORM, low=-1.0, high=1.0, stream=9), SEED, torch.tensor([2**33 + 8]))
    assert float(direct) == float(tensors[0][0])


def test_unaligned_view_and_launch_reuse():
    base = torch.empty(300)
    view = base[1:258]  # 4-byte aligned only: the launch drops its 16-byte alignment hint
    row = _row(DIST_UNIFORM, None, stream=4)
    launch = kfill.prepare_fill([view], [row], block=BLOCK)
    assert not launch.aligned and launch.n_programs == math.ceil(257 / (4 * BLOCK))
    for seed in (1, 2):  # the cached tables serve any seed
        launch(seed)
        assert torch.equal(view, rng.reference_values(row, seed, 257))


def test_prepare_fill_errors():
    t = torch.empty(8)
    with pytest.raises(ValueError, match="2 tensors but 1 rows"):
        kfill.prepare_fill([t, t], [_row(DIST_NORMAL, None, 0)])
    with pytest.raises(TypeError, match="writes"):
        kfill.prepare_fill([t.double()], [_row(DIST_NORMAL, None, 0)])
    with pytest.raises(ValueError, match="contiguous"):
        kfill.prepare_fill([torch.empty(4, 4).t()], [_row(DIST_NORMAL, None, 0)])
    with pytest.raises(ValueError, match="power of two"):
        kfill.prepare_fill([t], [_row(DIST_NORMAL, None, 0)], block=100)
    with pytest.raises(ValueError, match="geometry"):
        kfill.prepare_fill([t], [_row(DIST_NORMAL, ShardGeometry.full(9), 0)])
    with pytest.raises(ValueError, match="32-bit"):
        kfill.prepare_fill([t], [_row(DIST_NORMAL, None, 2**32)])
    with pytest.raises(ValueError, match="seed"):
        kfill.prepare_fill([t], [_row(DIST_NORMAL, None, 0)])(-1)


@pytest.mark.parametrize(
    "dist,cdf",
    [
        (DIST_UNIFORM, stats.uniform(loc=-1.0, scale=3.0).cdf),
        (DIST_NORMAL, stats.norm(loc=0.25, scale=1.5).cdf),
        (DIST_TRUNC_NORMAL, stats.truncnorm(-1.25 / 1.5, 1.75 / 1.5, loc=0.25, scale=1.5).cdf),
    ],
)
def test_ks_on_kernel_output(dist, cdf):
    t = torch.empty(1 << 14)
    kfill.prepare_fill([t], [_row(dist, None, stream=77)])(SEED)
    assert stats.kstest(t.double().numpy(), cdf).pvalue > KS_ALPHA


def test_tl_philox_and_kernel_helpers_under_interpreter():
    """In a process with TRITON_INTERPRET=1 from the start: ``tl.philox`` and the kernel's own Philox give
    the reference words, and the kernel module runs as imported (no second interpreted copy)."""
    script = textwrap.dedent(
        """
        import torch, triton, triton.language as tl
        from depthinit import rng
        from depthinit.fill import fill_tensors
        from depthinit.kernels import fill as kfill
        from depthinit.kernels.contract import FillRow

        @triton.jit
        def words(c_ptr, out_ptr, k0, k1, N: tl.constexpr, OWN: tl.constexpr):
            i = tl.arange(0, N)
            c0 = tl.load(c_ptr + 4 * i).to(tl.uint32)
            c1 = tl.load(c_ptr + 4 * i + 1).to(tl.uint32)
            c2 = tl.load(c_ptr + 4 * i + 2).to(tl.uint32)
            c3 = tl.load(c_ptr + 4 * i + 3).to(tl.uint32)
            if OWN:
                a, b, c, d = kfill._philox4x32_10(c0, c1, c2, c3, k0.to(tl.uint32), k1.to(tl.uint32))
            else:
                seed = (k1.to(tl.uint64) << 32) | k0.to(tl.uint64)
                a, b, c, d = tl.philox(seed, c0, c1, c2, c3)
            tl.store(out_ptr + 4 * i, a.to(tl.int64))
            tl.store(out_ptr + 4 * i + 1, b.to(tl.int64))
            tl.store(out_ptr + 4 * i + 2, c.to(tl.int64))
            tl.store(out_ptr + 4 * i + 3, d.to(tl.int64))

        g = torch.Generator().manual_seed(0)
        c = torch.randint(0, 2**32, (64, 4), generator=g, dtype=torch.int64)
        c[0] = 0
        c[1] = 2**32 - 1
        for k0, k1 in ((0, 0), (2**32 - 1, 2**32 - 1), (0xA4093822, 0x299F31D0)):
            ref = torch.stack(rng.philox4x32_10(c[:, 0], c[:, 1], c[:, 2], c[:, 3], k0, k1), 1)
            for own in (False, True):
                out = torch.zeros(64, 4, dtype=torch.int64)
                words[(1,)](c, out, k0, k1, N=64, OWN=own)
                assert torch.equal(out, ref), (own, k0, k1)
        assert kfill._interpreted_module() is kfill
        t = torch.empty(300)
        row = FillRow(1, low=-1.0, high=1.0, stream=5)
        fill_tensors([t], [row], 7, backend="triton")
        assert torch.equal(t, rng.reference_values(row, 7, 300))
        print("OK")
        """
    )
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=ROOT)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT)
    assert res.returncode == 0 and res.stdout.strip().endswith("OK"), res.stderr[-3000:]


# ------------------------------------------------------------------------------------------------------------
# depthinit.fill dispatch
# ------------------------------------------------------------------------------------------------------------


def test_fill_tensors_layouts_dtypes_and_ties():
    row = _row(DIST_UNIFORM, None, stream=11)
    ref = rng.reference_values(row, SEED, 20).reshape(4, 5)
    nc = torch.empty(5, 4).t()  # non-contiguous (4, 5) view: filled through a buffer, row-major logical order
    f64 = torch.empty(4, 5, dtype=torch.float64)
    tied = torch.empty(4, 5)
    ref64 = rng.reference_values(row, SEED, 20, torch.float64).reshape(4, 5)  # fp64 parameters, fp64 affine step
    for backend in ("torch", "native", "triton"):
        fill_tensors([nc, f64, tied, tied], [row, row, row, row], SEED, backend=backend)
        assert torch.equal(nc, ref) and torch.equal(f64, ref64) and torch.equal(tied, ref)
    with pytest.raises(ValueError, match="twice with different rows"):
        fill_tensors([tied, tied], [row, row._replace(stream=12)], SEED)


def test_fill_tensors_parameters_and_empty():
    p = torch.nn.Parameter(torch.empty(3, 4))
    fill_tensors([p, torch.empty(0)], [_row(DIST_NORMAL, None, 1), _row(DIST_NORMAL, None, 2)], SEED)
    ref = rng.reference_values(_row(DIST_NORMAL, None, 1), SEED, 12).view(3, 4)
    assert p.requires_grad
    close(p.detach(), ref, _row(DIST_NORMAL, None, 1))


@pytest.mark.parametrize(
    "tensor,error,match",
    [
        (torch.empty(3, device="meta"), ValueError, "materialize"),
        (torch.empty(3, dtype=torch.int64), TypeError, "integer, bool and complex"),
        (torch.empty(3, dtype=torch.bool), TypeError, "integer, bool and complex"),
        (torch.empty(3, dtype=torch.complex64), TypeError, "integer, bool and complex"),
        ([1.0, 2.0], TypeError, "not a tensor"),
        (torch.eye(3).to_sparse(), ValueError, "layout torch.sparse_coo; the fill writes dense"),
    ],
)
def test_fill_tensors_rejects_bad_targets(tensor, error, match):
    with pytest.raises(error, match=match):
        fill_tensors([tensor], [_row(DIST_NORMAL, None, 0)], SEED)


def test_fill_tensors_rejects_bad_arguments():
    t = torch.empty(3)
    with pytest.raises(ValueError, match="backend"):
        fill_tensors([t], [_row(DIST_NORMAL, None, 0)], SEED, backend="cuda")
    with pytest.raises(ValueError, match="1 tensors but 2 rows"):
        fill_tensors([t], [_row(DIST_NORMAL, None, 0)] * 2, SEED)
    with pytest.raises(ValueError, match="seed"):
        fill_tensors([t], [_row(DIST_NORMAL, None, 0)], 2**64)
    with pytest.raises(TypeError, match="FillRow"):
        fill_tensors([t], [(0, 0.0, 1.0)], SEED)
    with pytest.raises(ValueError, match="geometry"):
        fill_tensors([t], [_row(DIST_NORMAL, ShardGeometry.full(4), 0)], SEED)


def test_numpy_free_of_nan_after_fill():
    # every element is written: NaN-initialized targets of every geometry end up finite
    t = torch.full((1000,), float("nan"))
    fill_tensors([t], [_row(DIST_TRUNC_NORMAL, None, 3)], SEED, backend="triton")
    assert np.isfinite(t.numpy()).all()
