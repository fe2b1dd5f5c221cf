"""The CPU statistics kernel (kernels/cpu_stats.c through depthinit.kernels.cpu_stats).

Compared with the independent NumPy fp64 reference of test_stats.py at ``EXACT_RTOL`` (1e-10: fp64
sums in different orders, and m2 = s2 - s1**2 / n amplifying the error of s2 at most 64x; see the
docstring of test_stats.py). Counts, extremes, zeros and non-finite counts are compared exactly. The
cases aim at the kernel's structure: chunk boundaries (4096), the 8-wide body and its scalar tail,
rows with a stride (short rows grouped into one chunk, long rows cut into segments), the non-finite
slow path, the second pass when the shift is far from the mean, the dtype conversions, threads.
"""

from __future__ import annotations

import ctypes
import logging
import math
import re

import numpy as np
import pytest
import torch

from depthinit.kernels import cpu_stats as K
from depthinit.kernels import tensor_meta
from tests.test_stats import EXACT_RTOL, assert_close_stats, np_stats

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
C = K.CHUNK


def check(tensors, **kw):
    got = K.cpu_stats(tensors, **kw)
    want = np.stack([np_stats(t) for t in tensors])
    assert_close_stats(got, want, EXACT_RTOL)
    return got


def test_chunk_constant_and_codes_match_the_c_sources():
    shared = K.SOURCE.with_name("cpu_parallel.h").read_text()
    assert re.search(rf"CHUNK = {C}\b", shared), "kernels/cpu_stats.py CHUNK differs from cpu_parallel.h"
    from depthinit.kernels import contract

    for dtype, code in contract.DTYPE_CODES.items():
        name = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}[dtype]
        assert re.search(rf"DT_{name} = {code}\b", shared), f"cpu_parallel.h DT_{name} differs from the contract"
    fields = re.search(r"enum \{ (F_COUNT[^}]*) \}", K.SOURCE.read_text()).group(1).split(", ")
    assert fields == [f"F_{f.upper()}" for f in contract.STAT_FIELDS] + ["N_FIELDS"]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_sizes_around_the_body_and_chunk_boundaries(dtype):
    g = torch.Generator().manual_seed(0)
    sizes = [1, 2, 7, 8, 9, 15, 16, 17, C - 1, C, C + 1, 3 * C + 5]
    ts = [(torch.randn(n, generator=g, dtype=torch.float64) * 3 + 0.5).to(dtype) for n in sizes]
    check(ts)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_row_views_are_read_in_place(dtype):
    g = torch.Generator().manual_seed(1)
    qkv = torch.randn(8, 64, 3 * 192, generator=g).to(dtype)
    thirds = [qkv.narrow(-1, a, 192) for a in (0, 192, 384)]  # short rows: several per chunk
    wide = torch.randn(3, 2 * C + 300, generator=g).to(dtype)[:, 17 : 17 + C + 100]  # long rows: segments
    odd = torch.randn(50, 13, generator=g).to(dtype)[:, 2:11]  # rows of 9: body of 8 + a tail of 1
    single = torch.randn(7, 5, generator=g).to(dtype)[:, 3:4]  # rows of one element
    views = [*thirds, wide, odd, single]
    for v in views:
        d = K.describe(v)
        assert d is not None and d[0] == v.data_ptr()
        assert (d[2], d[3], d[4]) == (v.numel() // v.shape[-1], v.shape[-1], v.stride(-2))
    check(views)


def test_describe():
    x = torch.randn(6, 10)
    assert K.describe(x) == (x.data_ptr(), 0, 1, 60, 60)
    assert K.describe(x.t())[2:] == (1, 60, 60)  # a transpose is one block of memory
    assert K.describe(x[2:4])[2:] == (1, 20, 20)  # contiguous slice
    assert K.describe(x[:, 1:4])[2:] == (6, 3, 10)
    assert K.describe(x[::2, 1:4])[2:] == (3, 3, 20)
    assert K.describe(torch.randn(4, 5, 6)[:, :, :3])[2:] == (20, 3, 6)  # leading dims collapse
    assert K.describe(torch.randn(4, 5, 6)[:, :3, :3]) is None  # they do not: copied by cpu_stats
    assert K.describe(x[:, ::2]) is None  # last dimension strided
    assert K.describe(x[:, 3])[2:] == (6, 1, 10)  # one strided dimension: rows of one element
    assert K.describe(torch.ones(1, 8).expand(5, 8))[2:] == (5, 8, 0)  # broadcast rows: stride 0
    assert K.describe(torch.zeros(0, 3))[2:] == (0, 0, 0)
    with pytest.raises(TypeError, match="not torch.int64"):
        K.cpu_stats([torch.arange(3)])
    y = torch.randn(4, 5, 6)
    check([y[:, :3, :3], x[:, ::2], y.permute(2, 0, 1)[1:]])  # views the table cannot describe: copied


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_nonfinite_values_take_the_slow_path(dtype):
    g = torch.Generator().manual_seed(2)
    base = torch.randn(3 * C + 11, generator=g).to(dtype)
    cases = []
    for where in ([0], [5], [C - 1, C], [3 * C + 10], [8, 9, 10]):  # the shift, the body, a boundary, the tail
        for bad in (math.nan, math.inf, -math.inf):
            t = base.clone()
            t[where] = bad
            cases.append(t)
    cases.append(torch.full((C + 3,), math.nan).to(dtype))  # nothing finite
    cases.append(torch.tensor([math.inf, -math.inf, 2.0]).to(dtype))
    rows = torch.randn(40, 100, generator=g).to(dtype)
    rows[7, 3] = math.nan
    cases.append(rows[:, :50])  # inside a group of short rows
    check(cases)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_shift_far_from_the_mean(dtype):
    """The first values of a chunk far from its mean: the one-pass difference would cancel; the second
    pass about the mean keeps the result exact."""
    x = torch.ones(2 * C, dtype=torch.float64) * 100 + torch.linspace(-1e-2, 1e-2, 2 * C, dtype=torch.float64)
    x[:8] = 0
    x[C : C + 8] = -1e4
    check([x.to(dtype)])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_constant_chunks_are_exact(dtype):
    for value in (0.1, -3.0, 1e4):
        t = torch.full((3 * C + 5,), value).to(dtype)
        rows = torch.full((20, 30), value).to(dtype)[:, :7]
        out = K.cpu_stats([t, rows])
        assert out[:, 2].eq(0).all()  # m2 exactly zero
        assert out[:, 1].eq(t[0].double()).all()  # the stored value exactly


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_every_16_bit_pattern_converts_exactly(dtype):
    """All 65536 encodings (zeros, subnormals, normals, inf, NaN), in the scalar tail (1 element) and in
    the vector body (8 equal elements): min == max == torch's own conversion, NaN / inf counted."""
    bits = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16)
    values = bits.view(dtype)
    ref = values.double()
    singles = list(values.reshape(-1, 1))
    eights = list(values.reshape(-1, 1).expand(-1, 8).contiguous())
    for ts in (singles, eights):
        out = K.cpu_stats(ts)
        fin = torch.isfinite(ref)
        assert torch.equal(out[fin, 4], ref[fin]) and torch.equal(out[fin, 5], ref[fin])
        assert out[~fin, 7].eq(len(ts[0])).all() and out[~fin, 0].eq(0).all()
        assert torch.equal(out[:, 8], (ref == 0).double() * len(ts[0]))


def test_results_do_not_depend_on_threads():
    g = torch.Generator().manual_seed(3)
    ts = [torch.randn(n, generator=g) for n in (100, 5 * C + 1, 64 * C, 3 * C)] + [torch.randn(500, 300)[:, :200]]
    ref = K.cpu_stats(ts, threads=1)
    for threads in (2, 3, 8, 1000):
        assert torch.equal(K.cpu_stats(ts, threads=threads), ref)


def test_freed_storage_is_refused_not_read():
    """A view whose storage was resized away (as FSDP does to unsharded parameters) gets an error, not a read
    of freed memory."""
    t = torch.randn(1000)
    v = t[100:900]
    t.untyped_storage().resize_(0)
    with pytest.raises(ValueError, match="outside its storage.*freed or resized"):
        K.cpu_stats([torch.ones(3), v])
    from depthinit.stats import layer_stats

    with pytest.raises(ValueError, match="outside its storage"):
        layer_stats({"w": v})


def test_empty_list_and_empty_tensors():
    assert K.cpu_stats([]).shape == (0, 9)
    out = K.cpu_stats([torch.zeros(0), torch.zeros(3, 0), torch.ones(2)])
    assert out[:2, 0].eq(0).all() and out[:2, 1].isnan().all() and out[:2, 3].eq(0).all()
    assert out[2, 0] == 2 and out[2, 1] == 1


def test_build_is_cached_and_every_vector_path_agrees(tmp_path, monkeypatch):
    """The library is built once per source / flags; the AVX-512 pass (where the CPU has it), the AVX2 pass and the
    plain-loop pass give the same statistics (not bitwise: other summation orders), NaN chunks and strided rows
    included."""
    first = K.build(tmp_path)
    mtime = first.stat().st_mtime_ns
    assert K.build(tmp_path) == first and first.stat().st_mtime_ns == mtime
    native_flags = K.compile_flags
    builds = {"default": first}
    for name, flags in (("avx2", native_flags(avx512=False)), ("plain", [f for f in native_flags() if not
                                                                        f.startswith("-m")])):
        monkeypatch.setattr(K, "compile_flags", lambda avx512=False, flags=flags: flags)
        builds[name] = K.build(tmp_path)
    if any(f.startswith("-m") for f in native_flags(avx512=True)):  # an x86 machine: three different builds
        assert builds["plain"] not in (builds["default"], builds["avx2"])
    g = torch.Generator().manual_seed(4)
    ts = [torch.randn(3 * C + 7, generator=g).to(d) for d in DTYPES] + [torch.randn(30, 40, generator=g)[:, 5:30]]
    ts += [torch.randn(2 * C + 19, generator=g)[::1] * 1e3 + 5e3]  # a shift far from the mean: the second pass
    bad = torch.randn(C, generator=g)
    bad[100] = math.nan
    ts.append(bad)
    want = np.stack([np_stats(t) for t in ts])
    for path in builds.values():
        assert_close_stats(K.cpu_stats(ts, lib=K.load(path)), want, EXACT_RTOL)


def test_no_compiler_falls_back_with_one_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("DEPTHINIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    K.library.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=K.__name__):
            assert K.library() is None and K.library() is None
        assert len(caplog.records) == 1 and "CPU kernel unavailable" in caplog.text
        with pytest.raises(RuntimeError, match="not available"):
            K.cpu_stats([torch.ones(3)])
        from depthinit.stats import layer_stats

        x = torch.randn(C + 5)
        assert_close_stats(layer_stats([x]).data[0], np_stats(x), EXACT_RTOL)  # the exact torch path
    finally:
        monkeypatch.undo()
        K.library.cache_clear()
    assert isinstance(K.library(), ctypes.CDLL)  # back to the kernel


def _contiguous_mix():
    g = torch.Generator().manual_seed(7)
    base = torch.randn(64, generator=g)
    return [torch.randn(5, 7, generator=g), torch.empty(0), base[3:20], torch.randn(9, generator=g).half(),
            torch.randn(4, 4, generator=g).bfloat16(), torch.randn(33, generator=g).double(), base[40:41],
            torch.empty(0, 3).double()]  # fmt: skip


def test_vectorized_table_equals_the_per_tensor_table():
    """The table of an all-contiguous list (built with one map per attribute) is the per-tensor table."""
    tensors = _contiguous_mix()
    fast = K._table(tensors, [], tensor_meta.read(tensors))
    assert np.array_equal(fast, K._table_each(tensors, []))
    assert fast[1].tolist() == [0, 0, 0, 0, 0] and fast[2][0] == tensors[2].data_ptr()
    check(tensors)


def test_vectorized_table_refuses_a_freed_storage_among_many():
    tensors = [torch.randn(16) for _ in range(40)]
    victim = tensors[0].new_empty(64)[8:24]
    victim.untyped_storage().resize_(32)  # 8 floats left: the view [8, 24) lies outside
    tensors.insert(23, victim)
    with pytest.raises(ValueError, match="outside its storage"):
        K.cpu_stats(tensors)


# ----------------------------------------------------------------------------------------------------------
# the table cache of lists measured again
# ----------------------------------------------------------------------------------------------------------


def _measure_twice(tensors):
    """Measure a list until its table is cached (the second call caches it, the third uses it)."""
    from depthinit.stats import layer_stats

    for _ in range(3):
        layer_stats(tensors)
    assert K.cached_table(tensors) is not None


def _fresh(tensors):
    """The same tensors measured with a table built now (the cache emptied first)."""
    from depthinit.stats import layer_stats

    K._TABLES.clear(), K._SEEN.clear()
    return layer_stats(tensors).data


def _cached(tensors):
    from depthinit.stats import layer_stats

    return layer_stats(tensors).data


def _write_in_place(ts):
    ts[1].mul_(3).add_(1)


def _reallocate(ts):
    ts[2].data = torch.randn(50, 3)


def _narrow_same_pointer(ts):
    ts[0].data = ts[0].data[:5]


def _strided_in_place(ts):  # same pointer and element count, another set of elements
    ts[3].as_strided_(ts[3].shape, (32, 1))


def _transpose_in_place(ts):
    ts[3].t_()


def _swap(ts):  # the same Python object over another TensorImpl
    torch.utils.swap_tensors(ts[0], torch.randn(10, 7))


@pytest.mark.parametrize(
    "change", [_write_in_place, _reallocate, _narrow_same_pointer, _strided_in_place, _transpose_in_place, _swap],
    ids=lambda f: f.__name__,
)  # fmt: skip
@pytest.mark.parametrize("view", ["contiguous", "strided"])
def test_cached_table_follows_changes_of_the_tensors(change, view):
    """Both kinds of cached table: every tensor contiguous (checked by pointer, size and contiguity), and one
    with a strided view (checked by pointer, size, and layout where a version changed)."""
    g = torch.Generator().manual_seed(3)
    base = torch.randn(64, 16, generator=g)
    tensors = [torch.randn(10, 7, generator=g), torch.randn(300, generator=g).half(), torch.randn(40, 3, generator=g),
               base[:16] if view == "contiguous" else base[:16, :8], torch.randn(5, generator=g).double()]  # fmt: skip
    _measure_twice(tensors)
    assert torch.equal(_cached(tensors), _fresh(tensors))
    _measure_twice(tensors)
    change(tensors)
    assert torch.equal(_cached(tensors), _fresh(tensors))


def test_cached_table_refuses_freed_storage():
    tensors = [torch.randn(100) for _ in range(5)]
    _measure_twice(tensors)
    tensors[2].untyped_storage().resize_(0)
    with pytest.raises(ValueError, match="outside its storage"):
        _cached(tensors)


def test_cached_table_refuses_storage_freed_and_allocated_again_smaller_at_the_same_address():
    """Freed (resized to 0) and resized again to fewer bytes, a storage often comes back at the same address:
    same data pointer, same element count, still contiguous. Only its size tells that the table would read
    past its end."""
    for n in (1000, 5000, 20000):
        tensors = [torch.randn(n) for _ in range(5)]
        _measure_twice(tensors)
        ptr, storage = tensors[2].data_ptr(), tensors[2].untyped_storage()
        storage.resize_(0)
        storage.resize_(4 * n - 400)
        if tensors[2].data_ptr() == ptr:
            break
    else:
        pytest.skip("the allocator gave every shrunk storage a new address (the pointer check covers that)")
    with pytest.raises(ValueError, match="outside its storage"):
        _cached(tensors)


def test_cached_table_keeps_no_tensor_alive():
    import gc
    import weakref

    tensors = [torch.randn(100) for _ in range(5)]
    _measure_twice(tensors)
    probe = weakref.ref(tensors[4])
    del tensors[4]
    gc.collect()
    assert probe() is None


def test_a_table_found_at_reused_ids_is_used_only_for_tensors_it_describes():
    """Ids of dead tensors come back for new ones: an entry found by ids is checked against the new tensors'
    own metadata. Here every entry is moved to the ids of another list: one of new tensors (a table built for
    other memory), and one over the same memory (the same table is right for it)."""
    from depthinit.stats import layer_stats

    base = torch.randn(8, 8)
    tensors = [torch.randn(64), base[:, :4], torch.randn(30)]  # one strided view: its layout is compared too
    for others in ([torch.randn(64), torch.randn(8, 8)[:, :4], torch.randn(30)],  # other memory
                   [t.view_as(t) for t in tensors],  # the same memory, new tensor objects
                   [tensors[0], base[:, ::2], tensors[2]]):  # same pointer, size, storage: other strides # fmt: skip
        K._TABLES.clear(), K._SEEN.clear()
        _measure_twice(tensors)
        K._TABLES[tensor_meta.handles(others).tobytes()] = K._TABLES.pop(tensor_meta.handles(tensors).tobytes())
        assert torch.equal(layer_stats(others).data, _fresh(others))


def test_fresh_lists_are_not_cached():
    from depthinit.stats import layer_stats

    K._TABLES.clear()
    for _ in range(5):  # activations: new tensors every step
        layer_stats([torch.randn(10) for _ in range(3)])
    assert len(K._TABLES) <= 1  # ids of freed tensors may come back once; never a table per call


def test_a_model_measured_again_still_converts_with_swapped_parameters():
    """``nn.Module.to`` swaps parameter objects with ``torch.utils.swap_tensors`` (the future flag below; always
    for wrapper subclasses), which refuses a tensor that has a weak reference: the cache must hold none."""
    from depthinit.stats import layer_stats

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 4))
    params = list(model.parameters())
    _measure_twice(params)
    before = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        model.to(torch.float64)
    finally:
        torch.__future__.set_swap_module_params_on_conversion(before)
    assert model[0].weight.dtype == torch.float64 and model[0].weight is params[0]
    assert torch.equal(layer_stats(params).data, _fresh(params))
