"""The Triton statistics kernels (depthinit.kernels.stats) on a CPU-only machine.

* Interpreter parity: the kernels run under ``TRITON_INTERPRET=1`` in a subprocess (the variable must be
  set before triton is first imported, and it would turn every kernel of this pytest process into an
  interpreted one), and their results are compared here with the NumPy fp64 reference of test_stats.py
  and with the torch merge (:func:`depthinit.stats.merge_partials`).
* Ahead-of-time compilation for sm_90 / sm_80 of every specialization in ``aot_specs()``.

Tolerances:

* ``FP32_RTOL = 1e-4`` (tile statistics): a tile of 4096 fp32 (8192 fp16 / bf16) values is reduced by a
  tree (16 or 32 sequential terms per thread, then 8 tree levels): worst case ~40 eps32 = 2.4e-6 relative
  for the sums of non-negative terms (M2, sumsq); the mean is summed about the tile minimum, so its
  error is relative to the range of the data (~10 std here). 1e-4 leaves margin on both.
* ``EXACT_RTOL = 1e-10`` (merge kernel vs torch merge, both fp64, different summation orders): n * eps64
  for n <= 1e5 rows.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

if __name__ == "__main__":  # the interpreter child: before triton is imported
    os.environ["TRITON_INTERPRET"] = "1"

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))

import depthinit.stats as S  # noqa: E402
from tests.test_stats import EXACT_RTOL, assert_close_stats, np_stats  # noqa: E402

FP32_RTOL = 1e-4  # tile statistics in fp32: see the module docstring

TILE = 4096  # BLOCK_ELEMS[torch.float32]


def kernel_cases() -> dict[str, list[torch.Tensor]]:
    """Small, seeded inputs (the interpreter runs every program of the grid in numpy)."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s, **kw: torch.randn(*s, generator=g, **kw)  # noqa: E731
    special = r(2 * TILE + 77) * 3 + 1
    special[[0, 5, TILE + 1, 2 * TILE + 76]] = torch.tensor([math.nan, math.inf, -math.inf, math.nan])
    limits = {
        dt: ((torch.rand(TILE + 500, generator=g) * 2 - 1) * torch.finfo(dt).max).to(dt)
        for dt in (torch.float16, torch.bfloat16, torch.float32)
    }
    return {
        "mixed_dtypes": [r(3 * TILE + 5) * 2 + 1, r(10000).half(), (r(9000) * 1e-3).bfloat16(), r(37)],
        "special": [special, torch.full((300,), math.nan), torch.zeros(0), torch.full((TILE * 2 + 3,), 0.1)],
        "views": [r(130, 70).t(), r(90, 80)[::2, 1::3], r(1, 40).expand(30, 40), r(2, 3, 4).permute(2, 0, 1)],
        "zeros_and_sign": [torch.where(r(5000) > 0, r(5000), torch.zeros(())), -torch.zeros(10)],
        "mean1_std1e-4": [1 + 1e-4 * r(16 * TILE)],
        "limits": list(limits.values()),
        "tiny": [(r(TILE + 9, dtype=torch.float64) * 1e-30).float(), (r(700, dtype=torch.float64) * 1e-42).float()],
    }


def merge_input() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random partial rows of 5 tensors (tile counts 0, 1, 3, 700, 2), some tiles empty."""
    counts = [0, 1, 3, 700, 2]
    g = torch.Generator().manual_seed(1)
    m = sum(counts)
    x = torch.randn(m, 64, generator=g, dtype=torch.float64) * torch.rand(m, 1, generator=g) * 5 + 3
    x[torch.rand(m, 64, generator=g) < 0.01] = math.nan
    x[10] = math.nan  # a tile without finite values
    parts = S._rows_exact(x)
    start = torch.tensor([0] + counts[:-1]).cumsum(0)
    return parts, start, torch.tensor(counts)


def reuse_input() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(5000, generator=g), torch.randn(5000, generator=g) + 4


def _child_main(out: Path) -> None:
    from depthinit.kernels import stats as K

    assert not isinstance(K._stats_partials_kernel, __import__("triton").runtime.JITFunction), "interpreter is off"
    res = {}
    for name, tensors in kernel_cases().items():
        res[name] = S.tensor_stats(tensors, backend="triton")
        res[name + "/again"] = S.tensor_stats(tensors, backend="triton")
    # tile partials of one tensor, straight from a prepared launch
    x = kernel_cases()["mixed_dtypes"][0]
    launch = K.StatsLaunch([x])
    launch([x])
    res["partials"] = launch.partials[: launch.n_tiles].clone()
    # the merge kernel alone
    parts, start, count = merge_input()
    out_rows = torch.empty((len(count), K.N_FIELDS), dtype=torch.float64)
    K.launch_merge(parts, start, count, out_rows)
    res["merge"] = out_rows
    # a prepared launch reused on other storage of the same layout, and refused on another layout
    a, b = reuse_input()
    launch = K.StatsLaunch([a])
    res["reuse"] = torch.stack([launch([a])[0], launch([b])[0]])
    res["matches"] = torch.tensor([launch.matches([b]), launch.matches([torch.randn(5001)])])
    try:
        launch([torch.randn(5001)])
        res["refused"] = torch.tensor(False)
    except ValueError:
        res["refused"] = torch.tensor(True)
    torch.save(res, out)


def _child_offset64(out: Path) -> None:
    """Programs whose element offsets are >= 2**31: the table points 2**31 elements before the data."""
    from depthinit.kernels import stats as K

    res = {}
    for dtype in (torch.float32, torch.bfloat16):
        block = K.BLOCK_ELEMS[dtype]
        x = (torch.randn(3 * block + 100, generator=torch.Generator().manual_seed(2)) * 2 + 1).to(dtype)
        skip = 2**31  # elements; a multiple of the block
        ptrs = torch.tensor([x.data_ptr() - skip * x.element_size()], dtype=torch.int64)
        numels = torch.tensor([skip + x.numel()], dtype=torch.int64)
        tiles = -(-x.numel() // block)
        tile_tensor = torch.zeros(tiles, dtype=torch.int32)
        tile_block = torch.arange(tiles, dtype=torch.int64) + skip // block
        partials = torch.empty((tiles, K.N_FIELDS), dtype=torch.float64)
        K.launch_partials(ptrs, numels, tile_tensor, tile_block, partials, 0, dtype, aligned=False)
        row = torch.empty((1, K.N_FIELDS), dtype=torch.float64)
        K.launch_merge(partials, torch.tensor([0]), torch.tensor([tiles]), row)
        res[str(dtype)] = (x, row)
    torch.save(res, out)


@pytest.fixture(scope="module")
def child(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """ONE interpreter subprocess: the main cases (main.pt), then the 64-bit offsets (offset64.pt), which
    would crash the process (out-of-range reads) if offsets were 32-bit."""
    out = tmp_path_factory.mktemp("interp")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, __file__, str(out)], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    return proc, out


def _load(child, part: str) -> dict:
    proc, out = child
    path = out / f"{part}.pt"
    assert path.exists(), f"interpreter child failed ({proc.returncode}) before {part}:\n{proc.stderr[-4000:]}"
    return torch.load(path)


@pytest.fixture(scope="module")
def interp(child) -> dict:
    return _load(child, "main")


@pytest.mark.parametrize("case", list(kernel_cases()))
def test_interpreter_matches_numpy(interp, case):
    got = interp[case]
    tensors = kernel_cases()[case]
    assert got.shape == (len(tensors), S.N_FIELDS) and got.dtype == torch.float64
    for i, t in enumerate(tensors):
        assert_close_stats(got[i], np_stats(t), FP32_RTOL)


def test_interpreter_deterministic(interp):
    for case in kernel_cases():
        a, b = interp[case], interp[case + "/again"]
        assert torch.equal(a.nan_to_num(), b.nan_to_num()) and torch.equal(a.isnan(), b.isnan()), case


def test_accuracy_bar_and_constant_data(interp):
    x = kernel_cases()["mean1_std1e-4"][0]
    want = np_stats(x)
    var = (interp["mean1_std1e-4"][0, S.M2] / interp["mean1_std1e-4"][0, S.COUNT]).item()
    assert abs(var / (want[2] / want[0]) - 1) < 1e-3  # DESIGN.md accuracy bar
    const = interp["special"][3]  # 0.1 repeated over three tiles
    assert const[S.M2].item() == 0.0 and const[S.MEAN].item() == torch.tensor(0.1).item()
    assert math.isfinite(interp["limits"][:, S.SUMSQ].sum().item())  # no overflow near the dtype limits


def test_tile_partials_match_reference(interp):
    """Each program's row equals the exact statistics of its tile (the kernel's torch reference)."""
    x = kernel_cases()["mixed_dtypes"][0]
    tiles = [x[i : i + TILE] for i in range(0, x.numel(), TILE)]
    want = np.stack([np_stats(t) for t in tiles])
    assert_close_stats(interp["partials"], want, FP32_RTOL)


def test_merge_kernel_matches_torch_merge(interp):
    parts, start, count = merge_input()
    owner = torch.repeat_interleave(torch.arange(len(count)), count)
    want = S.merge_partials(parts, owner, len(count)).numpy()
    assert_close_stats(interp["merge"], want, EXACT_RTOL)


def test_prepared_launch_reuse(interp):
    """Same layout, other storage: the pointer table is updated; another layout is refused."""
    a, b = reuse_input()
    assert_close_stats(interp["reuse"], np.stack([np_stats(a), np_stats(b)]), FP32_RTOL)
    assert interp["matches"].tolist() == [True, False] and interp["refused"].item()


def test_offsets_beyond_2_31(child):
    res = _load(child, "offset64")
    assert child[0].returncode == 0, child[0].stderr[-4000:]
    assert len(res) == 2
    for x, row in res.values():
        assert_close_stats(row[0], np_stats(x), FP32_RTOL)


def test_cpu_tensors_without_interpreter_fail_clearly():
    triton = pytest.importorskip("triton")
    from depthinit.kernels import stats as K

    if not isinstance(K._stats_partials_kernel, triton.runtime.JITFunction):
        pytest.skip("this process runs the Triton interpreter")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1.*backend='torch'"):
        S.layer_stats([torch.ones(10)], backend="triton")


# sm_90: every specialization; sm_80: the bf16 one (bf16 is emulated differently there) and the merge.
AOT_TARGETS = [(90, None), (80, {"stats_partials_bfloat16_aligned", "stats_merge"})]


@pytest.mark.parametrize("cc,only", AOT_TARGETS)
def test_aot_compiles(cc, only):
    triton = pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from depthinit.kernels.stats import aot_specs

    specs = aot_specs()
    names = {s.name for s in specs}
    dtypes, alignments = ("float32", "float16", "bfloat16"), ("aligned", "unaligned")
    assert {f"stats_partials_{d}_{a}" for d in dtypes for a in alignments} | {"stats_merge"} == names
    for spec in specs:
        if only is not None and spec.name not in only:
            continue
        src = ASTSource(fn=spec.fn, signature=spec.signature, constexprs=spec.constexprs)
        k = triton.compile(src, target=GPUTarget("cuda", cc, 32), options={"num_warps": spec.num_warps})
        ptx = k.asm["ptx"]
        assert len(k.asm["cubin"]) > 0, spec.name
        assert "atom." not in ptx, spec.name  # no atomics: deterministic
        if "_aligned" in spec.name:  # full tiles load 16 bytes per instruction
            assert re.search(r"ld\.global(\.\w+)*\.v4\.b32", ptx), spec.name


if __name__ == "__main__":
    _child_main(Path(sys.argv[1]) / "main.pt")
    _child_offset64(Path(sys.argv[1]) / "offset64.pt")
