"""The native tensor-metadata reader (kernels/tensor_meta.c through torch's C shim) against Python's attributes.

Every table the CPU statistics kernel builds or reuses comes from :func:`tensor_meta.read`; a field misread
there is a raw read of the wrong memory. The reference is the same array built from Python attribute reads
(``data_ptr``, ``numel``, ``untyped_storage().nbytes()``, ``storage_offset``, ``dtype``, ``is_contiguous``).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from depthinit.kernels import cpu_stats, tensor_meta

pytestmark = pytest.mark.skipif(cpu_stats.library() is None, reason="no C compiler: the Python reader is the only one")


def _zoo() -> list[torch.Tensor]:
    """Tensors of every kind the statistics see: views with offsets, transposes, strided and expanded views,
    every kernel dtype and others, empty tensors, parameters, a freed storage."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 30, generator=g)
    freed = torch.randn(64, generator=g)
    freed.untyped_storage().resize_(0)
    return [
        x, x[3:], x[:, 5:9], x.t(), x[::2], x.reshape(-1)[7:700], torch.randn(3, 1, generator=g).expand(3, 4),
        torch.randn(2, 3, 4, 5, generator=g).to(memory_format=torch.channels_last),
        *(torch.randn(50, generator=g).to(dt)[9:] for dt in (torch.float32, torch.float16, torch.bfloat16,
                                                              torch.float64)),
        torch.arange(6), torch.zeros(3, dtype=torch.int32), torch.randn(2, dtype=torch.complex64),
        torch.empty(0), torch.empty(0, 5)[:, 2:], torch.nn.Parameter(torch.randn(7, 3, generator=g)), freed,
        torch.randn(1, generator=g), torch.tensor(2.5),
    ]  # fmt: skip


def test_the_native_reader_is_used_here():
    """With a C compiler and this torch, the reader loads and passes its own check (else every test below
    would compare the Python reader with itself)."""
    assert tensor_meta.reader() is not None


def test_native_metadata_equals_the_python_attributes():
    zoo = _zoo()
    got = tensor_meta.reader()(zoo)
    assert got is not None
    want = tensor_meta._read_python(zoo)
    assert np.array_equal(got, want), np.argwhere(got != want).tolist()
    assert got[:, tensor_meta.DTYPE].tolist()[8:14] == [0, 1, 2, 3, -1, -1]  # kernel codes; other dtypes -1


def test_metadata_of_many_tensors_in_one_call():
    """10,000 tensors of mixed sizes and dtypes: the same array natively and from Python."""
    g = torch.Generator().manual_seed(1)
    dtypes = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
    ts = [torch.randn(int(n), generator=g).to(dtypes[i % 4]) for i, n in enumerate(torch.randint(0, 300, (10_000,)))]
    assert np.array_equal(tensor_meta.read(ts), tensor_meta._read_python(ts))


def test_a_reader_that_misreads_is_refused():
    """The load-time check: a reader whose dtype map is off (as a torch with other scalar-type numbers would be)
    is refused before it describes anything."""
    reader = tensor_meta.reader()
    wrong = tensor_meta._Reader(reader.fn, reader.fns, np.roll(reader.codes, 1))
    with pytest.raises(RuntimeError, match="native reader gave"):
        tensor_meta._self_test(wrong)


def test_without_the_native_reader_the_python_one_reads(monkeypatch):
    monkeypatch.setenv("DEPTHINIT_STATS_COMPILE", "0")
    tensor_meta.reader.cache_clear()
    try:
        assert tensor_meta.reader() is None
        zoo = _zoo()
        assert np.array_equal(tensor_meta.read(zoo), tensor_meta._read_python(zoo))
    finally:
        monkeypatch.delenv("DEPTHINIT_STATS_COMPILE")
        tensor_meta.reader.cache_clear()


def test_a_torch_without_the_shim_gets_one_warning_and_the_python_reader(monkeypatch, caplog):
    monkeypatch.setattr(tensor_meta, "_SHIM", (*tensor_meta._SHIM, "aoti_torch_no_such_function"))
    tensor_meta.reader.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=tensor_meta.__name__):
            assert tensor_meta.reader() is None
        assert len(caplog.records) == 1 and "aoti_torch_no_such_function" in caplog.records[0].getMessage()
    finally:
        monkeypatch.undo()
        tensor_meta.reader.cache_clear()
    assert tensor_meta.reader() is not None
