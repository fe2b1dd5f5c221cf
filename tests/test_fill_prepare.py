"""Preparing a CPU fill: the column-wise tables of plain tensors, the general loop, and the AVX-512 build.

``prepare_fill`` reads a list of plain contiguous CPU tensors at distinct pointers with C-level maps and builds the
C kernel's tables column by column; anything else goes through the per-tensor loop. Both must give the same
tables (hence the same values), and the same errors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from depthinit import rng
from depthinit.fill import prepare_fill
from depthinit.kernels import cpu_fill as K
from depthinit.kernels.contract import DIST_CONSTANT, DIST_NORMAL, DIST_TRUNC_NORMAL, DIST_UNIFORM, FillRow
from tests.test_fill_kernel import SEED, close


@pytest.fixture(autouse=True, scope="module")
def _kernel():
    if K.library() is None:
        pytest.skip("no C compiler: the CPU fill kernel cannot be built")


def _described(tensors, rows) -> K.CpuFill:
    """The general loop's tables (one entry per tensor, read in Python)."""
    return K.prepare_described([(t, r, t.data_ptr(), t.dtype, t.numel()) for t, r in zip(tensors, rows)])


def _mixed(n: int = 60) -> tuple[list, list]:
    """Plain tensors and Parameters of every dtype, with rows that repeat and rows that differ."""
    dtypes = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
    kinds = [
        (DIST_NORMAL, 0.0, 0.02, 0.0, 1.0),
        (DIST_NORMAL, 0.5, 1.5, 0.0, 1.0),
        (DIST_UNIFORM, 0.0, 1.0, -0.25, 0.75),
        (DIST_TRUNC_NORMAL, 0.0, 1.0, -2.0, 2.0),
        (DIST_CONSTANT, -0.0, 1.0, 0.0, 1.0),
        (DIST_CONSTANT, 0.0, 1.0, 0.0, 1.0),
    ]
    tensors, rows = [], []
    for i in range(n):
        t = torch.empty(3 + i % 7, 5 + i % 3, dtype=dtypes[i % 4])
        tensors.append(nn.Parameter(t) if i % 3 == 0 else t)
        rows.append(FillRow(*kinds[i % len(kinds)], stream=(i * 2654435761) % 2**32))
    return tensors, rows


def _no_loop(*args, **kwargs):
    raise AssertionError("the per-tensor loop ran on a list the columns take")


def test_column_tables_equal_the_loop_tables(monkeypatch):
    tensors, rows = _mixed()
    with monkeypatch.context() as m:
        m.setattr(K, "prepare_described", _no_loop)
        prepared = prepare_fill(tensors, rows)
    assert len(prepared.native) == 1 and not prepared.torch_jobs and not prepared.copies
    fast, slow = prepared.native[0], _described(tensors, rows)
    assert np.array_equal(fast.ints, slow.ints)
    assert np.array_equal(fast.floats.view(np.int64), slow.floats.view(np.int64))  # bitwise, -0.0 included
    assert fast.floats.flags.c_contiguous and fast.ints.flags.c_contiguous
    assert all(a is b for a, b in zip(fast.tensors, tensors))
    prepared(SEED)
    for t, row in zip(tensors, rows):
        close(t.detach().reshape(-1), rng.reference_values(row, SEED, t.numel(), t.dtype), row)


@pytest.mark.parametrize("same", [True, False], ids=["rows_alike", "rows_differ"])
def test_one_row_or_many_give_the_same_tables(same, monkeypatch):
    tensors = [torch.empty(4, 4) for _ in range(50)]
    rows = [FillRow(DIST_NORMAL, 0.0, 0.02 if same or i % 2 else 0.03, stream=i) for i in range(50)]
    with monkeypatch.context() as m:
        m.setattr(K, "prepare_described", _no_loop)
        fast = prepare_fill(tensors, rows).native[0]
    slow = _described(tensors, rows)
    assert np.array_equal(fast.ints, slow.ints) and np.array_equal(fast.floats, slow.floats)
    assert len({tuple(r) for r in fast.floats}) == (1 if same else 2)


def test_lists_the_columns_cannot_take_go_through_the_loop():
    """Tied tensors (filled once), non-contiguous ones (a staging buffer), empty ones, shard rows."""
    base = torch.empty(8, 6)
    tied = [base, torch.empty(5), base]
    rows = [FillRow(DIST_NORMAL, stream=1), FillRow(DIST_UNIFORM, stream=2), FillRow(DIST_NORMAL, stream=1)]
    assert prepare_fill(tied, rows).native[0].ints.shape[0] == 2
    with pytest.raises(ValueError, match="appears twice with different rows"):
        prepare_fill(tied, rows[:2] + [FillRow(DIST_NORMAL, stream=3)])
    strided = [torch.empty(6, 8).t(), torch.empty(0), torch.empty(3)]
    prepared = prepare_fill(strided, [FillRow(DIST_NORMAL, stream=s) for s in (4, 5, 6)])
    assert len(prepared.copies) == 1 and prepared.native[0].ints.shape[0] == 2
    prepared(SEED)
    close(strided[0].reshape(-1), rng.reference_values(FillRow(DIST_NORMAL, stream=4), SEED, 48, torch.float32),
          FillRow(DIST_NORMAL, stream=4))  # fmt: skip


@pytest.mark.parametrize("stream", [-1, 2**32, 2**70])
def test_a_bad_stream_is_named(stream):
    tensors = [torch.empty(3) for _ in range(4)]
    rows = [FillRow(DIST_NORMAL, stream=s) for s in (1, 2, stream, 3)]
    with pytest.raises(ValueError, match=f"stream must be a 32-bit id, got {stream}"):
        prepare_fill(tensors, rows)


def test_bad_parameters_are_refused_before_anything_is_written():
    tensors = [torch.zeros(3) for _ in range(3)]
    rows = [FillRow(DIST_NORMAL, stream=1), FillRow(DIST_UNIFORM, low=1.0, high=0.0, stream=2),
            FillRow(7, stream=3)]  # fmt: skip
    with pytest.raises(ValueError, match="uniform needs finite bounds"):
        prepare_fill(tensors, rows)
    with pytest.raises(ValueError, match="unknown distribution code"):
        prepare_fill(tensors[:1], rows[2:])
    assert all(not t.any() for t in tensors)


def test_avx512_build_gives_the_avx2_bits(tmp_path, monkeypatch):
    """The AVX-512 build (where this CPU has it) and the AVX2 one write the same bits."""
    if K.compile_flags(avx512=True) == K.compile_flags():
        pytest.skip("this CPU has no AVX-512 (or no AVX2)")
    avx2_flags = K.compile_flags()
    monkeypatch.setattr(K, "compile_flags", lambda avx512=False: avx2_flags)
    avx2 = K.load(K.build(tmp_path))
    monkeypatch.undo()
    n = 3 * 4096 + 77
    for dist in (DIST_NORMAL, DIST_UNIFORM, DIST_TRUNC_NORMAL, DIST_CONSTANT):
        for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
            row = FillRow(dist, 0.25, 1.5, -1.0, 2.0, stream=11)
            a, b = (torch.empty(n, dtype=dtype) for _ in range(2))
            K.prepare([a], [row])(SEED)
            K.prepare([b], [row], lib=avx2)(SEED)
            assert torch.equal(a.view(torch.uint8), b.view(torch.uint8)), (dist, dtype)


_FREED_SCRIPT = r"""
import torch
from torch import nn
import depthinit as di
from depthinit.fill import fill_tensors
from depthinit.kernels.contract import DIST_NORMAL, FillRow

R = FillRow(DIST_NORMAL, std=0.02, stream=1)


def report(name, fn):
    try:
        fn()
        print(name, "no error")
    except ValueError as e:
        print(name, "ValueError", "outside its storage" in str(e))


freed = torch.empty(100)
freed.untyped_storage().resize_(0)
report("freed", lambda: fill_tensors([freed], [R], seed=0))  # the column-wise tables
report("freed-loop", lambda: fill_tensors([torch.empty(4, 4).t(), freed], [R, R], seed=0))  # the general loop
shrunk = torch.empty(100)[10:]
shrunk.untyped_storage().resize_(80)  # 20 floats left under a view of [10, 100)
report("shrunk", lambda: fill_tensors([shrunk], [R], seed=0))
model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64))
model[1].weight.untyped_storage().resize_(0)  # what FSDP does to an unsharded parameter outside forward
report("init_", lambda: di.init_(model, "he", seed=0))
model = nn.Sequential(nn.Linear(256, 256), nn.Linear(256, 256))
plan = di.plan(model, "he", seed=0)
plan.apply(model)
plan.apply(model)  # the cached tables
storage, ptr = model[0].weight.untyped_storage(), model[0].weight.data_ptr()
storage.resize_(0)
storage.resize_(1024)  # a quarter of the weight's bytes, often at the same address
same = model[0].weight.data_ptr() == ptr
report("cached-shrunk-same-address" if same else "cached-shrunk", lambda: plan.apply(model))
"""


def test_freed_or_shrunk_storage_gets_a_clear_error_and_is_never_written():
    """A tensor whose storage was freed (``resize_(0)``, as FSDP does outside forward) or shrunk under it: the
    fill refuses it with one message before writing anything, on the column-wise path, the general loop,
    ``di.init_`` and a plan applied again from its cached tables. Run in a child process: a write through a
    freed storage kills the process (a segmentation fault before this check existed), which must show as
    this test failing, not as the suite dying."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _FREED_SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"the child died (rc {proc.returncode}): {proc.stderr[-2000:]}"
    lines = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())
    assert set(lines) >= {"freed", "freed-loop", "shrunk", "init_"} and len(lines) == 5, lines
    assert all(v == "ValueError True" for v in lines.values()), lines
