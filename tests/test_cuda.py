"""CUDA tests (marker ``cuda``): the kernels, the monitor and materialize on a GPU, against the torch references.

``pytest -m cuda tests/test_cuda.py`` runs them on a CUDA machine (``bench/gpu_check.py`` does, first); without
CUDA they are skipped. With ``DEPTHINIT_CUDA_TESTS_ON_CPU=1`` and ``TRITON_INTERPRET=1`` the same test bodies
run on CPU tensors under the Triton interpreter at tiny sizes (``bench/gpu_check.py --dry-run``, which the suite
runs in tests/test_gpu_check.py), so that their logic is exercised where there is no GPU. What only a GPU can
show (host syncs, device memory peaks, tensors past 2**31 elements) is checked on the GPU only.

Everything goes through the public API (``depthinit.fill.fill_tensors``, ``plan`` / ``init_``, ``layer_stats``,
``VarianceMonitor``, ``materialize``) with ``backend="triton"``; the references are ``depthinit.rng`` (fill, on
the CPU) and fp64 statistics (NumPy on the host, ``backend="reference"`` on the device). Imports: torch, numpy,
pytest and the project only (the GPU image has nothing else).

Tolerances:

* fill: uniform values (unit uniforms included) bit for bit: the kernel is compiled without FMA contraction
  (``enable_fp_fusion=False``) and every op of the uniform chain is a correctly rounded fp32 op. Normal and
  truncated normal: ``log/sin/cos`` come from libdevice on the GPU (<= 2 ulp), NumPy in the interpreter and
  torch's libm in the reference (<= 1 ulp each); the bounds of tests/test_fill_kernel.py hold: 4 ulp (normal),
  8 ulp (truncated normal) of ``scale = |mean| + 6 std``, the largest magnitude in the chain; fp16 / bf16 outputs
  are the fp32 values rounded once, so at most 1 ulp of the output dtype apart.
* statistics: ``FP32_RTOL = 1e-4`` of tests/test_stats_kernel.py (fp32 sums within a tile, worst case ~40 eps32
  relative, then an fp64 merge); counts, min, max and abs-max exactly.
* device against CPU training (monitor): ``1e-3``: the GPU's matmuls and attention round differently from the
  CPU's (~1e-6 relative per op), which 8 training steps grow to ~1e-5; 1e-3 still catches any wrong row.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import depthinit as di
from depthinit import models, rng
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
from depthinit.monitor import VarianceMonitor
from tests.test_stats import assert_close_stats, np_stats
from tests.test_stats_kernel import FP32_RTOL, TILE, kernel_cases

ON_CPU = os.environ.get("DEPTHINIT_CUDA_TESTS_ON_CPU") == "1"
INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
GPU = torch.cuda.is_available() and not ON_CPU
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not (GPU or (ON_CPU and INTERPRETING)),
        reason="needs a CUDA device (DEPTHINIT_CUDA_TESTS_ON_CPU=1 TRITON_INTERPRET=1 runs them on CPU: "
        "bench/gpu_check.py --dry-run)",
    ),
]

SEED = 0xDEADBEEF12345
ZMAX = 6.0  # Box-Muller radii < 5.8, inverse-CDF values < 5.4 (see tests/test_fill_kernel.py)
ULPS = {DIST_NORMAL: 4, DIST_TRUNC_NORMAL: 8, DIST_UNIFORM: 0, DIST_CONSTANT: 0}
DISTS = {"normal": DIST_NORMAL, "uniform": DIST_UNIFORM, "trunc_normal": DIST_TRUNC_NORMAL, "constant": DIST_CONSTANT}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEVICE_RTOL = 1e-3  # device vs CPU training: see the module docstring

# (name, global shape, sharded dim, offset, local size); None: the whole tensor. Interpreter sizes (a few
# programs of 1024 elements each) and GPU sizes (hundreds of programs); the same paths: fast blocks and a general
# tail, Shard(0) at a multiple of 4 (fast) and not (general), Shard(1) runs, an uneven last shard, a 3-d Shard(2).
GEOMETRIES = {
    False: [
        ("contiguous", (43, 61), None, 0, 0),
        ("shard0", (24, 96), 0, 4, 12),
        ("shard0_odd_start", (15, 103), 0, 5, 7),
        ("shard1", (9, 250), 1, 3, 100),
        ("shard1_uneven_last", (7, 210), 1, 200, 10),
        ("shard2_3d", (3, 5, 97), 2, 40, 50),
    ],
    True: [
        ("contiguous", (1031, 1029), None, 0, 0),
        ("shard0", (4096, 260), 0, 1024, 1500),
        ("shard0_odd_start", (3001, 333), 0, 1001, 999),
        ("shard1", (999, 2050), 1, 513, 1025),
        ("shard1_uneven_last", (777, 2049), 1, 1800, 249),
        ("shard2_3d", (33, 65, 513), 2, 256, 255),
    ],
}
GPT2_SPEC = {False: "gpt2:n_layer=2,n_embd=32,n_head=4,vocab=64,block=16",
             True: "gpt2:n_layer=4,n_embd=256,n_head=4,vocab=4096,block=128"}  # fmt: skip


@dataclass(frozen=True)
class Target:
    """Where the tests run: a GPU at real sizes, or CPU tensors under the interpreter at tiny sizes."""

    device: torch.device
    gpu: bool

    def no_host_sync(self):
        """A context in which any host synchronization raises (CUDA's sync debug mode); nothing on CPU."""
        return _sync_error_mode() if self.gpu else contextlib.nullcontext()

    @property
    def compile_backend(self) -> str:
        # inductor on the GPU (Triton code generation, the real thing); on CPU dynamo's graph capture of the
        # model with its hooks (where graph breaks happen) without inductor's C++ compilation in the dry run
        return "inductor" if self.gpu else "eager"


@contextlib.contextmanager
def _sync_error_mode():
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.fixture(autouse=True)
def _eager_cpu_fill(monkeypatch):
    """CPU-side references fill eagerly: the same values as the compiled CPU path (tests/test_fill_kernel.py)
    without an inductor compile inside a GPU check."""
    monkeypatch.setenv("DEPTHINIT_CPU_COMPILE", "0")


@pytest.fixture(scope="module")
def target() -> Target:
    return Target(torch.device("cuda" if GPU else "cpu"), GPU)


def gpu_only(target: Target, why: str) -> None:
    if not target.gpu:
        pytest.skip(f"GPU only: {why}")


def _row(dist: int, geo: ShardGeometry | None, stream: int) -> FillRow:
    return FillRow(dist, mean=0.25, std=1.5, low=-1.0, high=2.0, stream=stream, geometry=geo)


def _ulp(x: torch.Tensor) -> torch.Tensor:
    x = x.abs()
    return (torch.nextafter(x, torch.full_like(x, math.inf)) - x).double()


def assert_fill_close(out: torch.Tensor, ref: torch.Tensor, row: FillRow,
                      again: Callable[[], torch.Tensor] | None = None) -> None:
    """``out`` (any device) against the CPU reference ``ref`` of the same dtype, within the module's bounds.
    ``again``: computes the reference once more, for the message of a failure (is the reference itself
    reproducible in this process?)."""
    out = out.detach().cpu().reshape(-1)
    ref = ref.reshape(-1)
    assert out.dtype == ref.dtype and out.shape == ref.shape
    if ULPS[row.dist] == 0:
        bad = (out.view(torch.int16 if out.element_size() == 2 else torch.int32)
               != ref.view(torch.int16 if ref.element_size() == 2 else torch.int32))  # fmt: skip
        assert not bool(bad.any()), f"{int(bad.sum())} values differ in their bits, first at {int(bad.nonzero()[0])}"
        return
    tol = ULPS[row.dist] * float(_ulp(torch.tensor(abs(row.mean) + row.std * ZMAX, dtype=torch.float32)))
    tol = torch.full(ref.shape, tol, dtype=torch.float64)
    if out.dtype != torch.float32:
        tol = torch.maximum(tol, _ulp(ref))
    diff = (out.double() - ref.double()).abs()
    if not bool((diff <= tol).all()):
        i = int(diff.argmax())
        raise AssertionError(f"max diff {float(diff.max())} above tolerance at {i} (out {float(out[i])!r}, ref "
                             f"{float(ref[i])!r}; {int((diff > tol).sum())} of {diff.numel()} over); "
                             f"{_transcendental_errors()}{_reference_again(ref, again, i)}")


def _reference_again(ref: torch.Tensor, again: Callable[[], torch.Tensor] | None, i: int) -> str:
    if again is None:
        return ""
    ref2 = again().reshape(-1)
    differ = int((ref2 != ref).sum())
    return f"; the reference computed again differs in {differ} elements (at the worst one: {float(ref2[i])!r})"


def _transcendental_errors() -> str:
    """The worst relative errors of this process's fp32 ``log`` (NumPy: the interpreter's; torch: the
    reference's) and absolute errors of ``sin`` / ``cos`` on the contract's arguments, against fp64: what tells
    which side of a failed normal-value comparison is off."""
    g = torch.Generator().manual_seed(0)
    u = ((torch.randint(0, 2**23, (1 << 16,), generator=g).float() + 0.5) * 2**-23)
    t = u * 6.2831855
    exact = {"log": u.double().log(), "sin": t.double().sin(), "cos": t.double().cos()}
    out = []
    for name, ex in exact.items():
        x = u if name == "log" else t
        for lib, got in (("numpy", torch.from_numpy(getattr(np, name)(x.numpy()))), ("torch", getattr(x, name)())):
            err = (got.double() - ex).abs() / (ex.abs() if name == "log" else 1.0)
            out.append(f"{lib} {name} {float(err.max()):.2e}")
    return "fp32 errors in this process: " + ", ".join(out)


def assert_plan_close(plan, got_model, want_model, device: torch.device) -> None:
    """Every planned parameter of ``got_model`` (on ``device``) against ``want_model`` (the CPU torch path)."""
    got, want = dict(got_model.named_parameters()), dict(want_model.named_parameters())
    planned = [r for r in plan.rows if r.distribution != "keep"]
    assert len(planned) == len(got) == len(want)
    for r, fill_row in zip(planned, plan.fill_rows()):
        a, b = got[r.name], want[r.name]
        assert a.device.type == device.type and a.dtype == b.dtype, r.name
        assert_fill_close(a, b.detach(), fill_row)


class LaunchCounter:
    """Counts fused fill launches (``FillLaunch.__call__``)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = kfill.FillLaunch.__call__

        def counted(launch, seed):
            self.calls += 1
            return original(launch, seed)

        monkeypatch.setattr(kfill.FillLaunch, "__call__", counted)


# ----------------------------------------------------------------------------------------------------------------
# fill
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("dist", list(DISTS))
def test_fill_matches_reference_every_geometry(target, dist, dtype, monkeypatch):
    """Every shard geometry of one distribution and dtype in ONE launch, each tensor against the reference."""
    counter = LaunchCounter(monkeypatch)
    tensors, rows = [], []
    for k, (_, shape, dim, offset, size) in enumerate(GEOMETRIES[target.gpu]):
        geo = None if dim is None else ShardGeometry.along(shape, dim, offset, size)
        numel = math.prod(shape) if geo is None else geo.local_numel
        tensors.append(torch.full((numel,), math.nan, dtype=DTYPES[dtype], device=target.device))
        rows.append(_row(DISTS[dist], geo, stream=1000 * k + 7))
    fill_tensors(tensors, rows, SEED, backend="triton")
    assert counter.calls == 1
    for t, row in zip(tensors, rows):
        assert_fill_close(t, rng.reference_values(row, SEED, t.numel(), t.dtype), row,
                          again=lambda row=row, t=t: rng.reference_values(row, SEED, t.numel(), t.dtype))


def test_unit_uniforms_bitwise_with_64bit_indices(target):
    """Unit uniforms (low 0, high 1: the value is ``unit(w)`` itself) bit for bit, at element indices past 2**31
    and 2**32 (64-bit counters), strictly inside (0, 1)."""
    geos = [
        ShardGeometry(1, 4096 if target.gpu else 150, 2**40, 1, 2**33 + 8),  # fast path, counters above 2**31
        ShardGeometry(1, 4096 if target.gpu else 150, 2**40, 1, 2**32 - 75),  # crosses 2**32, start % 4 = 1
        ShardGeometry(3, 2000 if target.gpu else 50, 2**31 + 8192, 1, 2**31 - 20),  # runs across 2**31, past 2**32
    ]
    tensors = [torch.empty(g.local_numel, device=target.device) for g in geos]
    rows = [FillRow(DIST_UNIFORM, low=0.0, high=1.0, stream=rng.stream_id(f"u{i}"), geometry=g)
            for i, g in enumerate(geos)]  # fmt: skip
    fill_tensors(tensors, rows, SEED, backend="triton")
    for t, row in zip(tensors, rows):
        got = t.cpu()
        assert torch.equal(got, rng.reference_values(row, SEED, t.numel()))
        assert bool((got > 0).all() and (got < 1).all())


def test_fill_tensor_past_2_31_elements(target):
    """A real bf16 tensor of 2**31 + 4099 elements (4.3 GB): the kernel's 64-bit element offsets."""
    gpu_only(target, "a 4.3 GB tensor")
    n = 2**31 + 4099
    t = torch.full((n,), math.nan, dtype=torch.bfloat16, device=target.device)
    row = FillRow(DIST_UNIFORM, low=-2.0, high=2.0, stream=rng.stream_id("big"))
    fill_tensors([t], [row], SEED, backend="triton")
    g = torch.Generator().manual_seed(0)
    idx = torch.cat([torch.arange(0, 4096), torch.arange(2**31 - 4096, 2**31 + 4096), torch.arange(n - 8192, n),
                     torch.randint(0, n, (200_000,), generator=g)])  # fmt: skip
    got = t[idx.to(target.device)].cpu()
    assert torch.equal(got, rng.reference_values(row, SEED, idx, torch.bfloat16))
    assert not bool(t.isnan().any())  # every element written
    del t


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_init_same_weights_as_cpu_one_launch(target, distribution, monkeypatch):
    """``di.init_`` of a model mixing fp32, fp16 and bf16 layers: one launch on the device, the weights of the CPU
    torch path (uniform: bit for bit; normal: within the ulp bounds)."""
    width, depth = (512, 8) if target.gpu else (48, 4)
    dev_model = models.mlp(depth=depth, width=width).to(target.device)
    dev_model[2].half()
    dev_model[4].bfloat16()
    cpu_model = models.mlp(depth=depth, width=width)
    cpu_model[2].half()
    cpu_model[4].bfloat16()
    counter = LaunchCounter(monkeypatch)
    p = di.init_(dev_model, "depth_aware", K=1.0, distribution=distribution, seed=3, backend="triton")
    assert counter.calls == 1
    di.init_(cpu_model, "depth_aware", K=1.0, distribution=distribution, seed=3, backend="torch")
    assert_plan_close(p, dev_model, cpu_model, target.device)


# ----------------------------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------------------------


def stats_cases(gpu: bool) -> dict[str, list[torch.Tensor]]:
    """The interpreter cases of tests/test_stats_kernel.py, plus many-tile cases (hundreds of tiles on the GPU:
    several iterations of the merge loop) of huge, tiny and non-finite values."""
    cases = kernel_cases()
    n = 3_000_017 if gpu else 3 * TILE + 11
    g = torch.Generator().manual_seed(5)
    x = torch.randn(n, generator=g)
    u = torch.rand(n, generator=g) * 2 - 1
    bad = x * 3 + 1
    bad[::997] = math.nan
    bad[5::1009] = math.inf
    bad[7::1013] = -math.inf
    cases["many_tiles"] = [x * 2 + 1, (x * 0.02).bfloat16(), (x[: n // 2] - 5).half(), x[: n // 3] * 1e-3 + 1]
    cases["huge_and_tiny"] = [u * 3.0e38, (u * 3.0e38).bfloat16(), (u * 6.0e4).half(),
                              (u.double() * 1e-40).float(), (u.double() * 1e-6).half()]  # fmt: skip
    cases["nonfinite_many_tiles"] = [bad, bad.bfloat16(), torch.full((n // 2,), math.nan), torch.zeros(n // 3)]
    return cases


STATS_CASES = list(stats_cases(False))


@pytest.mark.parametrize("case", STATS_CASES)
def test_stats_match_fp64(target, case):
    """``layer_stats(backend="triton")`` on the device against NumPy fp64 (host) and the fp64 reference on the
    device: non-finite values excluded and counted, magnitudes near the dtype limits and subnormal ones."""
    tensors = stats_cases(target.gpu)[case]
    on_dev = [t.to(target.device) for t in tensors]
    got = di.layer_stats(on_dev, backend="triton").data
    assert got.device.type == target.device.type and got.dtype == torch.float64
    want = np.stack([np_stats(t) for t in tensors])
    assert_close_stats(got, want, FP32_RTOL)
    ref = di.layer_stats(on_dev, backend="reference").data  # fp64 on the device
    assert_close_stats(got, ref.cpu().numpy(), FP32_RTOL)


def test_stats_repeatable_without_host_sync(target):
    """The prepared launch reused on the same layout: no host synchronization, bitwise equal results, and the
    result stays on the device."""
    tensors = [t.to(target.device) for t in stats_cases(target.gpu)["many_tiles"]]
    first = di.layer_stats(tensors, backend="triton").data
    with target.no_host_sync():
        again = di.layer_stats(tensors, backend="triton").data
        other = [t * 1 for t in tensors]  # same layout, other storage: new pointer tables, still no sync
        moved = di.layer_stats(other, backend="triton").data
    assert torch.equal(first.nan_to_num(), again.nan_to_num()) and torch.equal(first.isnan(), again.isnan())
    assert torch.equal(first.nan_to_num(), moved.nan_to_num())


def test_stats_tensor_past_2_31_elements(target):
    """A bf16 tensor of 2**31 + 3 tiles + 77 elements (4.3 GB) with known statistics: 64-bit tile offsets."""
    gpu_only(target, "a 4.3 GB tensor")
    n = 2**31 + 3 * 8192 + 77
    x = torch.ones(n, dtype=torch.bfloat16, device=target.device)
    x[-1000:] = -3.0
    x[12345] = math.nan
    x[2**31 + 5] = 0.0
    got = di.layer_stats([x], backend="triton").data[0].cpu()
    count = n - 1
    ones = n - 1000 - 2
    mean = (ones - 3000) / count
    m2 = ones * (1 - mean) ** 2 + 1000 * (-3 - mean) ** 2 + mean**2
    want = np.array([[count, mean, m2, ones + 9000, -3.0, 1.0, 3.0, 1, 1]])
    assert_close_stats(got[None], want, FP32_RTOL)
    del x


def test_layer_stats_of_model_weights_and_grads(target):
    torch.manual_seed(0)
    width = 1024 if target.gpu else 64
    model = models.mlp(depth=4, width=width).to(target.device)
    x = torch.randn(32, width, device=target.device)
    model(x).square().mean().backward()
    for grads in (False, True):
        got = di.layer_stats(model, grads=grads, backend="triton")
        ref = di.layer_stats(model, grads=grads, backend="reference")
        assert got.names == ref.names and len(got) == 8
        assert_close_stats(got.data, ref.data.cpu().numpy(), FP32_RTOL)


# ----------------------------------------------------------------------------------------------------------------
# monitor
# ----------------------------------------------------------------------------------------------------------------


def _gpt2(target: Target, device: torch.device) -> torch.nn.Module:
    model = models.build(GPT2_SPEC[target.gpu]).to(device)
    di.init_(model, "gpt2", seed=1, backend="torch")  # the same weights on both devices
    return model


def _tokens(model, n: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    vocab, block = model.transformer.wte.num_embeddings, model.block_size
    return torch.randint(0, vocab, (n, block + 1), generator=g)


def _train(model, tokens, device, steps: int, mon=None, fwd=None, guard=None) -> None:
    """SGD steps on fixed tokens; ``guard(step)`` is a context around the monitor's parts of step ``step``."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    fwd = model if fwd is None else fwd
    tokens = tokens.to(device)
    x, y = tokens[:, :-1], tokens[:, 1:]
    guard = guard or (lambda s: contextlib.nullcontext())
    for s in range(steps):
        with guard(s):  # the forward runs the monitor's activation hooks
            logits = fwd(x)
        F.cross_entropy(logits.flatten(0, 1), y.flatten()).backward()
        opt.step()
        if mon is not None:
            with guard(s):
                mon.step()
        opt.zero_grad(set_to_none=True)


def _assert_records_close(got: list[dict], want: list[dict], rtol: float) -> None:
    key = lambda r: (r["step"], r["kind"], r["name"], r.get("qkv"), r.get("head"))  # noqa: E731
    assert [key(r) for r in got] == [key(r) for r in want]
    for a, b in zip(got, want):
        if b["kind"] == "update":  # a difference of two fp32 norms: not comparable across devices
            continue
        for k in ("count", "nonfinite", "zeros"):
            assert a[k] == b[k], (key(a), k)
        spread = b["std"] + abs(b["mean"])
        assert abs(a["mean"] - b["mean"]) <= rtol * spread + 1e-12, (key(a), "mean", a["mean"], b["mean"])
        for k in ("std", "rms", "l2", "absmax"):
            assert a[k] == pytest.approx(b[k], rel=rtol, abs=1e-12), (key(a), k)


def test_monitor_steps_make_no_host_sync(target):
    """Monitored steps (activation hooks in the forward, ``mon.step()``) under CUDA's sync debug mode "error"
    once warm; the records agree with the same training on the CPU."""
    steps, every = 9, 2
    model = _gpt2(target, target.device)
    tokens = _tokens(model)
    x = tokens[:, :-1].to(target.device)
    with torch.no_grad(), target.no_host_sync():  # the control: the model's own forward does not sync
        model(x)
    mon = VarianceMonitor(model, every=every, history=None)
    # steps 0-2 warm up (first monitored steps build the monitor's cached tables and launches); then none syncs
    _train(model, tokens, target.device, steps, mon, guard=lambda s: target.no_host_sync() if s >= 3
           else contextlib.nullcontext())  # fmt: skip
    mon.close()
    got = mon.history
    assert {r["step"] for r in got} == {0, 2, 4, 6, 8}
    assert {r["kind"] for r in got} == {"weight", "grad", "act", "update"}
    ref_model = _gpt2(target, torch.device("cpu"))
    ref = VarianceMonitor(ref_model, every=every, history=None)
    _train(ref_model, tokens, torch.device("cpu"), steps, ref)
    ref.close()
    _assert_records_close(got, ref.history, DEVICE_RTOL)


def test_monitor_under_torch_compile(target):
    """The monitor created before ``torch.compile``: its hooks trace into the graph (no graph break) and the
    records match an eager run of the same training on the device."""
    from torch._dynamo.utils import counters

    def run(compiled: bool) -> list[dict]:
        model = _gpt2(target, target.device)
        mon = VarianceMonitor(model, every=2, alerts=None, history=None)
        fwd = torch.compile(model, backend=target.compile_backend) if compiled else model
        _train(model, _tokens(model), target.device, 5, mon, fwd=fwd)
        mon.close()
        return mon.history

    torch._dynamo.reset()
    eager = run(False)
    counters.clear()
    with pytest.warns(UserWarning, match="residual stream are not recorded under torch.compile"):
        compiled = run(True)
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert {r["step"] for r in compiled if r["kind"] == "act"} == {0, 2, 4}
    assert any(r["kind"] == "act" and r.get("stream") for r in compiled)  # block outputs are traced
    # gradients w.r.t. the stream need a tensor hook, which the compiled graph does not take (the warning)
    stream_grad = lambda r: r["kind"] == "grad" and r.get("stream")  # noqa: E731
    assert any(stream_grad(r) for r in eager) and not any(stream_grad(r) for r in compiled)
    _assert_records_close(compiled, [r for r in eager if not stream_grad(r)], DEVICE_RTOL)


# ----------------------------------------------------------------------------------------------------------------
# materialize
# ----------------------------------------------------------------------------------------------------------------


def test_materialize_meta_gpt2_keeps_ties(target, monkeypatch):
    """A meta GPT-2 allocated once on the device (the tied embedding once), filled by one launch, equal to the
    same plan applied on the CPU, and runnable."""
    spec = GPT2_SPEC[target.gpu]
    meta = models.build(spec, device="meta")
    counter = LaunchCounter(monkeypatch)
    if target.gpu:
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    plan = di.materialize(meta, device=target.device, scheme="gpt2", seed=4, backend="triton")
    assert counter.calls == 1
    assert meta.lm_head.weight is meta.transformer.wte.weight
    assert all(p.device.type == target.device.type for p in meta.parameters())
    assert all(b.device.type == target.device.type for b in meta.buffers())
    if target.gpu:  # allocated once: the peak is the model itself (the tied weight counted once)
        unique = {t.data_ptr(): t.numel() * t.element_size() for t in [*meta.parameters(), *meta.buffers()]}
        peak = torch.cuda.max_memory_allocated() - before
        assert peak <= 1.1 * sum(unique.values()) + (1 << 20), (peak, sum(unique.values()))
    cpu = models.build(spec)
    di.plan(cpu, "gpt2", seed=4).apply(backend="torch")
    assert_plan_close(plan, meta, cpu, target.device)
    idx = torch.randint(0, meta.transformer.wte.num_embeddings, (2, 8), device=target.device)
    assert bool(torch.isfinite(meta(idx)).all())


# ----------------------------------------------------------------------------------------------------------------
# tensor metadata
# ----------------------------------------------------------------------------------------------------------------


def test_tensor_metadata_on_the_device_reads_as_python_gives_it(target):
    """A plan applied again checks its device targets with one native metadata read (kernels/tensor_meta.py, the
    stable C shim): on the device's tensors it gives what their Python attributes give."""
    from depthinit.kernels import tensor_meta

    x = torch.randn(40, 30, device=target.device)
    ts = [x, x[3:], x.t(), x[:, 5:9], torch.empty(0, device=target.device),
          *(torch.ones(3, 5, dtype=dt, device=target.device)[1:] for dt in (torch.float16, torch.bfloat16,
                                                                            torch.float64))]  # fmt: skip
    got = tensor_meta.read(ts)
    assert np.array_equal(got, tensor_meta._read_python(ts)), got.tolist()
    if tensor_meta.reader() is not None:
        assert tensor_meta.reader()(ts) is not None  # read natively, not through the Python fallback
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 8)).to(target.device)
    plan = di.plan(model, "he", seed=1)
    plan.apply(model, backend="triton")
    first = [p.detach().clone() for p in model.parameters()]
    plan.apply(model, backend="triton")  # the cached tables, checked by the metadata read
    assert all(torch.equal(a, b) for a, b in zip(first, model.parameters()))
