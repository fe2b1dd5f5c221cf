"""Property tests: random tensors (shapes including zero-size, dtypes, NaN/Inf/huge/denormal values,
non-contiguous views) -> ``layer_stats`` equals an independent fp64 NumPy reference.

Tolerances: counts, min, max, absmax are exact (no arithmetic). Sums are accumulated in fp32 per row of at
most 4,096 elements about a shift taken from the row, then merged in fp64; a pairwise/blocked fp32 sum of
n <= 4096 terms has a relative error below ~n_levels * 2**-24 ~ 1e-6 of the sum of magnitudes, so the mean
is checked to 1e-5 * max|x| and the second moments (M2, sumsq) to 1e-4 relative plus 1e-5 * count * max|x|^2
(the error of squaring about a shift that is itself within the data's range).
"""

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import depthinit as di

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
SPECIALS = [float("nan"), float("inf"), -float("inf"), 0.0, -0.0]


@st.composite
def tensors(draw):
    dtype = DTYPES[draw(st.sampled_from(sorted(DTYPES)))]
    shape = tuple(draw(st.lists(st.integers(0, 70), min_size=1, max_size=3)))
    n = int(np.prod(shape))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    scale = draw(st.sampled_from([1e-30, 1e-6, 1.0, 1e3, 1e30]))
    mean = draw(st.sampled_from([0.0, 1.0, -5.0]))
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * scale + mean).to(dtype)
    if n and draw(st.booleans()):
        k = draw(st.integers(1, min(n, 5)))
        flat = x.view(-1)
        for _ in range(k):
            flat[draw(st.integers(0, n - 1))] = draw(st.sampled_from(SPECIALS))
    if len(shape) >= 2 and draw(st.booleans()):
        x = x.transpose(0, 1)  # non-contiguous view
    elif shape[0] > 1 and draw(st.booleans()):
        x = x[::2]  # strided view
    return x


def reference(x: torch.Tensor) -> dict:
    a = x.detach().double().reshape(-1).numpy()
    fin = a[np.isfinite(a)]
    d = {"count": fin.size, "nonfinite": int(a.size - fin.size), "zeros": int(np.sum(a == 0))}
    if fin.size:
        m = fin.mean()
        d.update(mean=m, m2=float(np.sum((fin - m) ** 2)), sumsq=float(np.sum(fin**2)), min=fin.min(),
                 max=fin.max(), absmax=np.abs(fin).max())
    return d


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(xs=st.lists(tensors(), min_size=1, max_size=4))
def test_layer_stats_equal_fp64_reference(xs):
    s = di.layer_stats(list(xs))
    recs = s.to_records()
    for x, r in zip(xs, recs):
        ref = reference(x)
        assert r["count"] == ref["count"] and r["nonfinite"] == ref["nonfinite"] and r["zeros"] == ref["zeros"]
        if not ref["count"]:
            assert np.isnan(r["mean"])
            continue
        for k in ("min", "max", "absmax"):
            assert r[k] == ref[k], (k, r[k], ref[k])
        big = ref["absmax"]
        assert abs(r["mean"] - ref["mean"]) <= 1e-5 * big
        var_ref = ref["m2"] / ref["count"]
        assert abs(r["var"] - var_ref) <= 1e-4 * var_ref + 1e-5 * big**2
        rms_ref = np.sqrt(ref["sumsq"] / ref["count"])
        assert abs(r["rms"] - rms_ref) <= 1e-4 * rms_ref
