"""depthinit.stats on CPU: the torch path and the fp64 oracle against an independent NumPy fp64 reference.

Three CPU code paths are checked:

* the C kernel (``backend="torch"``, the default on CPU): fp64 sums over chunks of 4096 elements
  about a shift, merged in fp64 (``depthinit.kernels.cpu_stats``; its own tests are in
  ``test_cpu_stats_kernel.py``);
* the exact fp64 torch path (the same backend without a C compiler, ``DEPTHINIT_STATS_COMPILE=0``);
* the oracle ``backend="reference"``: two passes in fp64 per tensor.

Tolerance (see ``assert_close_stats``): ``EXACT_RTOL = 1e-10``. fp64 sums of n <= 1e6 terms in
different orders differ by at most ~n * eps64 = 1.1e-10 in the worst case (typically sqrt(n) * eps64);
the kernel's m2 = s2 - s1**2 / n about a shift is used only while s1**2 / n <= (63/64) s2 (otherwise
a second pass about the mean), which amplifies the error of s2 at most 64x over a chunk of 4096
terms (64 * 4096 * 1.1e-16 = 3e-11, worst case). Counts, min, max, absmax, zeros and nonfinite are compared exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import depthinit.stats as S
from depthinit.kernels import cpu_stats as cpu_kernel
from depthinit.stats import FIELDS, LayerStats, layer_stats

EXACT_RTOL = 1e-10
BIG = cpu_kernel.CHUNK * 20 + 123  # 20 full chunks of the C kernel and a short one


def np_stats(x: torch.Tensor) -> np.ndarray:
    """Independent NumPy fp64 reference of one row of FIELDS."""
    v = x.detach().to(torch.float64).reshape(-1).numpy()
    fin = np.isfinite(v)
    f = v[fin]
    n = f.size
    mean = f.mean() if n else math.nan
    return np.array(
        [
            n,
            mean,
            ((f - mean) ** 2).sum() if n else 0.0,
            (f * f).sum(),
            f.min() if n else math.nan,
            f.max() if n else math.nan,
            np.abs(f).max() if n else math.nan,
            (~fin).sum(),
            (v == 0).sum(),
        ]
    )


def assert_close_stats(got: torch.Tensor, want: np.ndarray, rtol: float) -> None:
    got = got.detach().cpu().numpy()
    assert got.shape == want.shape
    for j, name in enumerate(FIELDS):
        g, w = got[..., j], want[..., j]
        if name in ("count", "nonfinite", "zeros", "min", "max", "absmax"):
            np.testing.assert_array_equal(g, w, err_msg=name)  # exact: integers or input values
        elif name == "mean":
            scale = np.abs(want[..., 1]) + np.sqrt(want[..., 2] / np.maximum(want[..., 0], 1))
            np.testing.assert_array_less(np.nan_to_num(np.abs(g - w)), rtol * np.nan_to_num(scale) + 1e-300, name)
            np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=name)
        else:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=0, err_msg=name)


def cases() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    with_bad = r(BIG) * 2 + 3
    with_bad[[5, 100, 7000, BIG - 1]] = torch.tensor([math.nan, math.inf, -math.inf, math.nan])
    return {
        "small_fp32": r(37, 11),
        "big_fp32": r(BIG),
        "big_fp16": r(BIG).half(),
        "big_bf16": r(BIG).bfloat16(),
        "fp64": r(5000).double() * 1e3,
        "with_nonfinite": with_bad,
        "zeros_mixed": torch.where(r(BIG) > 0.3, r(BIG), torch.zeros(())),
        "empty": torch.zeros(0, 5),
        "scalar": torch.tensor(-2.5),
        "transposed": r(300, 200).t(),  # dense permutation: read in place
        "strided": r(400, 300)[::3, 1::2],  # copied
        "expanded": r(1, 64).expand(50, 64),  # stride 0: measured as the 3200 elements it shows
    }


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_matches_numpy(backend):
    cs = cases()
    stats = layer_stats(cs, backend=backend)
    assert stats.names == list(cs)
    for i, t in enumerate(cs.values()):
        assert_close_stats(stats.data[i], np_stats(t), EXACT_RTOL)


def test_accuracy_bar_mean_one_std_1e4():
    """DESIGN.md: mean 1, std 1e-4 (LayerNorm weights): variance within 1e-3 of fp64; naive fp32 fails."""
    g = torch.Generator().manual_seed(1)
    x = 1 + 1e-4 * torch.randn(cpu_kernel.CHUNK * 256, generator=g)
    want = np_stats(x)
    var_ref = want[2] / want[0]
    for backend in ("torch", "reference"):
        var = layer_stats([x], backend=backend).var.item()
        assert abs(var / var_ref - 1) < 1e-3, backend
    naive = ((x * x).mean() - x.mean() ** 2).item()  # E[x^2] - E[x]^2 in fp32
    assert abs(naive / var_ref - 1) > 1e-3  # the bar is meaningful: the naive formula misses it


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_values_near_dtype_limits(dtype):
    """Sums of squares of values near the largest finite value do not overflow (fp64 accumulators)."""
    big = torch.finfo(dtype).max
    g = torch.Generator().manual_seed(2)
    x = ((torch.rand(BIG, generator=g) * 2 - 1) * big).to(dtype)
    x[:10] = big  # the extreme itself, at the start of a row (the shift)
    x[10:20] = -big
    stats = layer_stats([x], backend="torch")
    want = np_stats(x)
    assert math.isfinite(stats.sumsq.item()) and math.isfinite(stats.var.item())
    assert_close_stats(stats.data[0], want, EXACT_RTOL)


@pytest.mark.parametrize("scale", [1e-30, 1e-42])  # tiny normals and subnormals of fp32
def test_tiny_values_do_not_underflow(scale):
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(BIG, generator=g, dtype=torch.float64) * scale).float()
    stats = layer_stats([x], backend="torch")
    want = np_stats(x)
    assert stats.sumsq.item() > 0
    assert_close_stats(stats.data[0], want, EXACT_RTOL)


@pytest.mark.parametrize("n", [1, 77, BIG])
def test_all_equal_has_zero_variance_exactly(n):
    for value in (0.1, -3.0, 1e20):
        stats = layer_stats([torch.full((n,), value)], backend="torch")
        assert stats.var.item() == 0.0 and stats.m2.item() == 0.0
        assert stats.mean.item() == torch.tensor(value).item()  # the fp32 value, exactly


def test_nonfinite_counted_and_excluded():
    x = torch.tensor([1.0, math.nan, 3.0, math.inf, -math.inf, 0.0])
    rec = layer_stats([x])[0]
    assert rec["nonfinite"] == 3 and rec["count"] == 3 and rec["numel"] == 6 and rec["zeros"] == 1
    assert rec["mean"] == pytest.approx(4 / 3) and rec["max"] == 3.0 and rec["min"] == 0.0
    rec = layer_stats([torch.full((10,), math.nan)])[0]
    assert rec["count"] == 0 and rec["nonfinite"] == 10 and math.isnan(rec["mean"]) and math.isnan(rec["std"])


def test_empty_tensors():
    stats = layer_stats({"e": torch.zeros(0), "e2": torch.zeros(3, 0)})
    for rec in stats.to_records():
        assert rec["count"] == 0 and rec["numel"] == 0 and rec["l2"] == 0.0
        assert all(math.isnan(rec[k]) for k in ("mean", "var", "std", "rms", "min", "max", "absmax"))
    assert len(layer_stats([])) == 0


def test_derived_fields_and_records():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1000, generator=g) * 3 + 2
    s = layer_stats({"x": x})
    v = x.double().numpy()
    rec = s["x"]
    assert rec == s.to_records()[0] and s.index("x") == 0
    assert rec["var"] == pytest.approx(v.var(), rel=EXACT_RTOL)  # population variance (ddof = 0)
    assert rec["std"] == pytest.approx(v.std(), rel=EXACT_RTOL)
    assert rec["rms"] == pytest.approx(np.sqrt((v * v).mean()), rel=EXACT_RTOL)
    assert rec["l2"] == pytest.approx(np.linalg.norm(v), rel=EXACT_RTOL)
    assert s.std.shape == (1,) and s.std.dtype == torch.float64  # device tensors
    with pytest.raises(KeyError, match="nope"):
        s["nope"]


def test_repr_is_an_aligned_table():
    s = layer_stats({"a.weight": torch.ones(3), "much.longer.name": torch.zeros(0)})
    lines = str(s).splitlines()
    assert lines[0] == "LayerStats(2 tensors)"
    assert lines[1].split()[:3] == ["name", "numel", "mean"]
    assert len({len(line) for line in lines[1:]}) == 1  # every row has the header's width
    assert lines[2].startswith("a.weight ") and repr(s) == str(s)


def test_cat():
    a = layer_stats({"a": torch.ones(3)})
    b = layer_stats({"b": torch.arange(4.0)})
    c = LayerStats.cat([a, b])
    assert c.names == ["a", "b"] and torch.equal(c.data, torch.cat([a.data, b.data]))
    assert len(S.cat_stats([])) == 0


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.lin = nn.Linear(4, 10, bias=True)
        self.lin.weight = self.emb.weight  # tied: one Parameter
        self.alias = nn.Parameter(torch.empty(0))
        self.alias.data = self.emb.weight.data  # a second Parameter over the same storage
        self.frozen = nn.Parameter(torch.ones(2), requires_grad=False)


def test_module_parameters_each_storage_once():
    torch.manual_seed(0)
    m = Tied()
    s = layer_stats(m)
    # named_parameters() order (the root's own parameters first); the first name of a storage wins:
    # lin.weight is emb.weight's Parameter, and emb.weight aliases the storage of `alias`
    assert s.names == ["alias", "frozen", "lin.bias"]
    for i, name in enumerate(s.names):
        assert_close_stats(s.data[i], np_stats(m.get_parameter(name)), EXACT_RTOL)


def test_module_grads():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    m[2].bias.requires_grad_(False)
    m(torch.randn(5, 4)).square().sum().backward()
    s = layer_stats(m, grads=True)
    assert s.names == ["0.weight", "0.bias", "2.weight"]  # parameters without grad skipped
    for i, name in enumerate(s.names):
        assert_close_stats(s.data[i], np_stats(m.get_parameter(name).grad), EXACT_RTOL)
    with pytest.raises(ValueError, match="grads=True"):
        layer_stats([torch.ones(2)], grads=True)


def test_bad_inputs_have_clear_errors():
    with pytest.raises(TypeError, match=r"'0' has dtype torch.int64.*\.float\(\)"):
        layer_stats([torch.arange(3)])
    with pytest.raises(TypeError, match="torch.bool"):
        layer_stats({"mask": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(ValueError, match="meta tensor.*materialize"):
        layer_stats(nn.Linear(2, 2, device="meta"))
    with pytest.raises(ValueError, match="layout torch.sparse_coo"):
        layer_stats([torch.eye(3).to_sparse()])
    with pytest.raises(TypeError, match="not a tensor"):
        layer_stats([torch.ones(2), 3.0])
    with pytest.raises(ValueError, match="backend must be one of"):
        layer_stats([torch.ones(2)], backend="cuda")
    with pytest.raises(TypeError, match="expected an nn.Module"):
        layer_stats(3)
    with pytest.raises(TypeError, match="triton backend measures fp32"):
        layer_stats([torch.ones(2, dtype=torch.float64)], backend="triton")


def test_deterministic_bitwise():
    cs = cases()
    a = layer_stats(cs, backend="torch").data
    b = layer_stats(cs, backend="torch").data
    assert torch.equal(a.nan_to_num(), b.nan_to_num()) and torch.equal(a.isnan(), b.isnan())


@pytest.fixture
def no_kernel(monkeypatch):
    """The torch backend as on a machine without a C compiler."""
    monkeypatch.setenv("DEPTHINIT_STATS_COMPILE", "0")
    cpu_kernel.library.cache_clear()
    yield
    cpu_kernel.library.cache_clear()


def test_without_the_kernel_the_exact_path_runs(no_kernel, monkeypatch):
    assert cpu_kernel.library() is None
    ran = []
    monkeypatch.setattr(S, "_exact_parts", lambda *a: ran.append(1) or _exact_parts(*a))
    cs = cases()
    stats = layer_stats(cs, backend="torch")
    assert ran
    for i, t in enumerate(cs.values()):
        assert_close_stats(stats.data[i], np_stats(t), EXACT_RTOL)


_exact_parts = S._exact_parts


def test_kernel_runs_by_default(monkeypatch):
    """The default CPU path is the C kernel (this machine has a compiler): the exact path is not used."""
    monkeypatch.setattr(S, "_exact_parts", lambda *a: pytest.fail("exact path used"))
    x = cases()["big_fp32"]
    assert_close_stats(layer_stats([x]).data[0], np_stats(x), EXACT_RTOL)


def test_merge_partials_matches_direct_and_stacked():
    """Chan merge of chunk rows equals the statistics of the whole; segmented and stacked merges agree."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(3, 999, generator=g, dtype=torch.float64) * torch.tensor([[1.0], [1e-3], [50.0]]) + 7
    x[1, 5] = math.nan
    chunks = x.reshape(3, 9, 111)  # 9 chunks per tensor
    rows = S._rows_exact(chunks.reshape(27, 111))
    owner = torch.arange(3).repeat_interleave(9)
    seg = S.merge_partials(rows, owner, 3)
    stacked = S.merge_stacked(rows.reshape(3, 9, -1).transpose(0, 1))
    for i in range(3):
        assert_close_stats(seg[i], np_stats(x[i]), EXACT_RTOL)
        assert_close_stats(stacked[i], np_stats(x[i]), EXACT_RTOL)
    empty = S.merge_partials(rows[:0], owner[:0], 2)  # nothing to merge: count 0, NaN moments
    assert empty[:, 0].eq(0).all() and empty[:, 1].isnan().all()


def _load_bench(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / name
    spec = importlib.util.spec_from_file_location(f"_bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # import-safe: no device query, no run
    return module


def test_benchmark_scripts_run_on_cpu(capsys):
    """bench/gpu_stats.py is import-safe, answers --help and dry-runs on CPU; bench_stats_cpu.py runs (tiny)."""
    gpu = _load_bench("gpu_stats.py")
    with pytest.raises(SystemExit) as exc:
        gpu.main(["--help"])
    assert exc.value.code == 0 and "--peak-gbs" in capsys.readouterr().out
    res = gpu.main(["--device", "cpu", "--width", "32", "--blocks", "2", "--reps", "1", "--loop-reps", "1"])
    assert res["bitwise_equal"] and res["var_rel"] < EXACT_RTOL  # the torch path on CPU: the C kernel, fp64
    cpu = _load_bench("bench_stats_cpu.py")
    out = cpu.main(["--width", "32", "--blocks", "2", "--reps", "1"])
    assert set(out) == {"speedup_vs_var_mean", "ratio_vs_sum", "ratio_vs_sum_loop", "tiny_speedup_vs_var_mean",
                        "host_ms_10000"}
    assert all(math.isfinite(v) and v > 0 for v in out.values()), out
