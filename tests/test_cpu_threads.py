"""Where the CPU kernels (statistics and fill) run their threads: on torch's OpenMP team where torch has one
(kernels/cpu_parallel.h, kernels/native.py), else on threads of their own.

Measured on 2 cores (bench/bench_stats_cpu.py): threads of their own shared the cores with torch's OpenMP threads,
which spin for a while after each of torch's parallel regions, so a kernel called just after a torch operator
took up to 4x longer. The values never depend on where the ranges run; a child process forked after a parallel
region (where GNU's runtime waits forever on the parent's threads) goes back to threads of its own.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from depthinit.kernels import cpu_fill, cpu_stats, native
from depthinit.kernels.contract import DIST_NORMAL, DIST_UNIFORM, FillRow

OPENMP = "parallel backend: OpenMP" in torch.__config__.parallel_info()


@pytest.fixture(autouse=True, scope="module")
def _kernels():
    if cpu_stats.library() is None or cpu_fill.library() is None:
        pytest.skip("no C compiler: the CPU kernels cannot be built")


def _own_threads(lib, own: bool) -> None:
    rt = None if own else native.openmp_runtime()
    lib.depthinit_use_openmp(*(rt or (None, None, None)))


@pytest.mark.skipif(not sys.platform.startswith("linux") or not OPENMP, reason="torch without OpenMP on Linux")
def test_torch_openmp_runtime_is_found_and_handed_to_both_kernels():
    rt = native.openmp_runtime()
    assert rt is not None and all(rt)
    assert len(native._ON_TORCH_TEAM) >= 2  # the statistics and the fill library


def test_values_are_the_same_on_torch_team_and_on_threads_of_their_own():
    g = torch.Generator().manual_seed(5)
    tensors = [torch.randn(n, generator=g) for n in (7, 4096 * 5 + 3, 300_000, 1000)] + [torch.randn(700, 500)[:, 3:]]
    targets = [torch.empty(1000, 2000), torch.empty(37, 11)]
    rows = [FillRow(DIST_NORMAL, std=0.02, stream=1), FillRow(DIST_UNIFORM, low=-1.0, high=2.0, stream=2)]
    got = {}
    try:
        for own in (False, True):
            _own_threads(cpu_stats.library(), own)
            _own_threads(cpu_fill.library(), own)
            for threads in (1, 2, 3, 8):
                stats = cpu_stats.cpu_stats(tensors, threads=threads)
                cpu_fill.prepare(targets, rows)(1234, threads)
                got[own, threads] = (stats, [t.clone() for t in targets])
    finally:
        _own_threads(cpu_stats.library(), False)
        _own_threads(cpu_fill.library(), False)
    ref_stats, ref_fill = got[True, 1]
    for key, (stats, filled) in got.items():
        assert torch.equal(stats, ref_stats), key
        assert all(torch.equal(a, b) for a, b in zip(filled, ref_fill)), key


def test_a_child_forked_after_a_parallel_region_measures_and_fills():
    """Before the child went back to threads of its own, this child waited forever on the parent's team."""
    code = textwrap.dedent("""
        import os, numpy as np, torch
        torch.set_num_threads(2)
        from depthinit.kernels import cpu_fill, cpu_stats
        from depthinit.kernels.contract import DIST_NORMAL, FillRow
        x = [torch.randn(100_000) for _ in range(40)]
        w = torch.empty(1000, 2000)
        def work():
            cpu_fill.prepare([w], [FillRow(DIST_NORMAL, std=0.02, stream=3)])(99, 2)
            return np.concatenate([cpu_stats.cpu_stats(x, threads=2).numpy().ravel(), w.numpy().ravel()])
        want = work()
        torch.randn(4_000_000).sum()  # a parallel region of torch's just before the fork
        pid = os.fork()
        if pid == 0:
            os._exit(0 if np.array_equal(work(), want) else 3)
        print("child", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    """)
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the forked child never finished: it waited on the parent's OpenMP team")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "child 0", out.stdout + out.stderr[-2000:]
