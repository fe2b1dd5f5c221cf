"""Statistics exact where the contract promises it, on every backend (the C kernel, the exact torch path used
without a C compiler, the reference oracle, and the Triton kernel under the interpreter):

* min / max / absmax are elements of the tensor (the C kernel once seeded them with its shift, the mean of the
  first values, which rounds to a non-element: ``[x, x, x]`` with ``x = 1/3 + ulp`` gave ``min = 1/3``);
* magnitudes near 1e300 are scaled by a power of two: the mean is the data's (it was NaN), constant data has
  variance 0 and spread data an infinite variance (it was 0);
* negative-bit views (``x.conj().imag``, ``torch._neg_view``) are measured with their sign;
* a tensor whose storage was freed or shrunk gets one clear error (the reference and Triton backends segfaulted).

Exact comparisons (``==``) where the value is an element or a count; means at 1e-12 relative (fp64 sums).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import depthinit.stats as S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ["kernel", "exact_torch", "reference"]


def _stats(tensors, backend, monkeypatch):
    if backend == "exact_torch":  # the path without a C compiler
        monkeypatch.setattr(S.cpu_kernel, "library", lambda: None)
        return S.tensor_stats(tensors, "torch")
    return S.tensor_stats(tensors, "torch" if backend == "kernel" else "reference")


@pytest.mark.parametrize("backend", BACKENDS)
def test_extremes_are_elements(backend, monkeypatch):
    x = 1 / 3 + 2.0**-54  # 0.33333333333333337: the mean of three copies rounds to 1/3
    g = torch.Generator().manual_seed(0)
    cases = [
        torch.tensor([x, x, x], dtype=torch.float64),
        torch.full((4096 * 2 + 3,), x, dtype=torch.float64),
        torch.randn(10_000, generator=g, dtype=torch.float64) * 1e-3 + x,
        (torch.randn(5000, generator=g) + 0.1).to(torch.bfloat16),
    ]
    rows = _stats(cases, backend, monkeypatch)
    for t, r in zip(cases, rows):
        v = t.double()
        assert float(r[S.MIN]) == float(v.min()) and float(r[S.MAX]) == float(v.max())
        assert float(r[S.ABSMAX]) == float(v.abs().max())
    assert float(rows[0, S.MEAN]) == x and float(rows[0, S.M2]) == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_magnitudes(backend, monkeypatch):
    g = torch.Generator().manual_seed(1)
    const = torch.full((10_000,), 1e300, dtype=torch.float64)
    spread = 1e300 * (1 + 1e-3 * torch.randn(10_000, generator=g, dtype=torch.float64))
    with_nan = spread.clone()
    with_nan[7] = float("nan")
    rows = _stats([const, spread, with_nan], backend, monkeypatch)
    assert float(rows[0, S.MEAN]) == 1e300 and float(rows[0, S.M2]) == 0.0
    for r, t in zip(rows[1:], (spread, spread[torch.isfinite(with_nan)])):
        assert float(r[S.MEAN]) == pytest.approx(float((t / 2.0**996).mean()) * 2.0**996, rel=1e-12)
        assert float(r[S.M2]) == float("inf")  # the true m2 (~1e598) overflows fp64
        assert float(r[S.MIN]) == float(t.min()) and float(r[S.MAX]) == float(t.max())
    assert float(rows[2, S.NONFINITE]) == 1 and float(rows[2, S.COUNT]) == 9_999


@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_bit_views_read_with_their_sign(backend, monkeypatch):
    g = torch.Generator().manual_seed(2)
    z = torch.complex(torch.randn(3000, generator=g) + 2.0, torch.randn(3000, generator=g) + 1.0)
    views = [z.conj().imag, torch._neg_view(torch.randn(5000, generator=g) + 3.0)]
    assert all(v.is_neg() for v in views)
    rows = _stats(views, backend, monkeypatch)
    want = S.stats_reference([v.resolve_neg() for v in views])
    torch.testing.assert_close(rows, want, rtol=1e-12, atol=0)
    assert float(rows[0, S.MEAN]) < 0 and float(rows[1, S.MEAN]) < 0


@pytest.mark.parametrize("backend", ["torch", "reference", "triton"])
def test_freed_or_resized_storage_is_one_clear_error(backend):
    w = torch.randn(1000)
    w.untyped_storage().resize_(0)  # what FSDP does to an unsharded parameter outside forward / backward
    shrunk = torch.randn(1000)
    shrunk.untyped_storage().resize_(400)
    for t in (w, shrunk):
        with pytest.raises(ValueError, match="lies outside its storage"):
            S.tensor_stats([t], backend)


def test_triton_backend_reads_negative_bit_views():
    """Under the interpreter (a fresh process: TRITON_INTERPRET must be set before triton is imported); tile sums
    in fp32: test_stats_kernel.py's ``FP32_RTOL = 1e-4``."""
    script = (
        "import torch, depthinit.stats as S\n"
        "g = torch.Generator().manual_seed(3)\n"
        "v = torch._neg_view(torch.randn(3000, generator=g) + 3.0)\n"
        "got = S.tensor_stats([v], 'triton'); want = S.stats_reference([v.resolve_neg()])\n"
        "torch.testing.assert_close(got, want, rtol=1e-4, atol=0); assert float(got[0, S.MEAN]) < 0\n"
        "print('OK')\n"
    )
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=ROOT)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT)
    assert res.returncode == 0 and res.stdout.strip().endswith("OK"), res.stderr[-3000:]
