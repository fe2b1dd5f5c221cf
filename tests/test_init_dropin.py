"""depthinit.init against torch.nn.init.

Part 1 (no ``seed=``): a drop-in. Every function x representative shapes, bitwise-equal values under the
same ``torch.manual_seed`` and under an explicit generator, the same global RNG state afterwards, the same
exception types and messages, the same warnings (category, message and the line they point at), the same
returned object, the same public names and signatures.

Part 2 (``seed=``): depthinit's counter-based contract. Determinism, seed/stream sensitivity, equality with
the reference fill, the scale formulas (statistically), torch's errors and warnings, fp16/bf16, and no
effect on torch's global RNG.
"""

from __future__ import annotations

import inspect
import math
import warnings

import pytest
import torch
import torch.nn.init as tinit

import depthinit.init as dinit

RANDOM_FNS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
)
FIXED_FNS = ("constant_", "ones_", "zeros_", "eye_", "dirac_")
ALIASES = tuple(n for n in tinit.__all__ if not n.endswith("_") and n != "calculate_gain")  # deprecated

# 0-D, 1-D, Linear, Conv1d/2d/3d weights, and zero-element tensors (including a 1-D one).
SHAPES = [(), (5,), (7, 5), (4, 3, 5), (4, 3, 3, 3), (2, 3, 2, 3, 3), (0, 5), (5, 0), (3, 0, 2), (0,), (0, 0)]

# (function, args after the tensor, kwargs): defaults plus every non-default branch torch has.
CALLS = [
    ("uniform_", (), {}),
    ("uniform_", (-2.0, 3.0), {}),
    ("normal_", (), {}),
    ("normal_", (), {"mean": 1.0, "std": 0.5}),
    ("trunc_normal_", (), {}),
    ("trunc_normal_", (0.0, 1.0, -1.0, 1.0), {}),  # mass 0.68 > 0.3: torch's normal-rejection branch
    ("trunc_normal_", (0.0, 1.0, 2.0, 3.0), {}),  # mass 0.02 <= 0.3: torch's uniform-rejection branch
    ("trunc_normal_", (0.0, 1.0, -math.inf, math.inf), {}),  # mass 1: infinite bounds are fine
    ("trunc_normal_", (0.5, 1.0, 0.5, 0.5), {}),  # a == b: every value is a
    ("trunc_normal_", (0.0, -1.0, -1.0, 1.0), {}),  # std < 0: torch accepts it (and warns)
    ("xavier_uniform_", (), {}),
    ("xavier_uniform_", (), {"gain": 2.0}),
    ("xavier_normal_", (0.5,), {}),
    ("kaiming_uniform_", (), {}),
    ("kaiming_uniform_", (0.2, "fan_out", "leaky_relu"), {}),
    ("kaiming_normal_", (), {"mode": "FAN_OUT", "nonlinearity": "relu"}),
    ("kaiming_normal_", (), {"nonlinearity": "tanh"}),
    ("orthogonal_", (), {}),
    ("orthogonal_", (1.5,), {}),
    ("sparse_", (0.3,), {}),
    ("sparse_", (0.5, 0.1), {}),
    ("constant_", (0.25,), {}),
    ("ones_", (), {}),
    ("zeros_", (), {}),
    ("eye_", (), {}),
    ("dirac_", (), {}),
]

# Bad input: (function, shape, args, kwargs) that must fail (or warn) exactly like torch.
BAD = [
    ("xavier_uniform_", (5,), (), {}),
    ("xavier_normal_", (), (), {}),
    ("kaiming_uniform_", (5,), (), {}),
    ("kaiming_normal_", (), (), {}),
    ("kaiming_uniform_", (4, 3), (), {"mode": "fan_avg"}),
    ("kaiming_normal_", (4, 3), (), {"mode": 3}),
    ("kaiming_uniform_", (4, 3), (), {"nonlinearity": "gelu"}),
    ("kaiming_normal_", (4, 3), (), {"nonlinearity": "leaky_relu", "a": "x"}),
    ("sparse_", (4, 3), ("0.1",), {}),
    ("sparse_", (4, 3), (None,), {}),
    ("sparse_", (4, 3, 2), (0.1,), {}),
    ("sparse_", (4, 3), (0.1, -1.0), {}),
    ("orthogonal_", (5,), (), {}),
    ("eye_", (2, 3, 4), (), {}),
    ("dirac_", (3, 4), (), {}),
    ("dirac_", (3, 4, 3), (2,), {}),
    ("uniform_", (4, 3), (1.0, 0.0), {}),
    ("uniform_", (4, 3), (float("nan"), 1.0), {}),
    ("normal_", (4, 3), (0.0, -1.0), {}),
    ("trunc_normal_", (4, 3), (0.0, 0.0), {}),
    ("trunc_normal_", (4, 3), (0.0, 1.0, 3.0, -3.0), {}),
    ("trunc_normal_", (4, 3), (5.0, 1.0, -1.0, 1.0), {}),  # warns: mean more than 2 std from [a, b]
    ("trunc_normal_", (4, 3), (0.0, 1.0, 5.0, math.inf), {}),  # mass <= 0.3: torch's uniform_(a, b) errors
    ("uniform_", (4, 3), (), {"generator": "not a generator"}),
]


def outcome(mod, name, shape, args, kwargs, dtype=torch.float32, gen_seed=None, torch_seed=123):
    """(tensor values or (exception type, message), the returned object is the input, warnings, RNG state).

    Warnings are (category, message, file name, line offset from the call site) so that "points at the
    caller's line" is compared too.
    """
    torch.manual_seed(torch_seed)
    t = torch.full(shape, float("nan"), dtype=dtype) if dtype.is_floating_point else torch.zeros(shape, dtype=dtype)
    if gen_seed is not None:
        kwargs = {**kwargs, "generator": torch.Generator().manual_seed(gen_seed)}
    fn = getattr(mod, name)
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 2
        try:
            out = fn(t, *args, **kwargs)
            result = (out is t, t.clone())
        except Exception as e:  # noqa: BLE001 - the exception itself is what we compare
            result = (type(e), str(e))
    warned = [(w.category, str(w.message), w.filename, w.lineno - line if w.filename == __file__ else None) for w in ws]
    return result, warned, torch.random.get_rng_state()


def bits(t: torch.Tensor) -> torch.Tensor:
    """The bytes of a tensor: bitwise equality (NaN == NaN, -0.0 != 0.0)."""
    return t.contiguous().reshape(-1).view(torch.uint8)


def assert_same(a, b):
    (ra, wa, sa), (rb, wb, sb) = a, b
    assert type(ra[1]) is type(rb[1])
    if isinstance(ra[1], torch.Tensor):
        assert ra[0] and rb[0], "must return the tensor passed in"
        assert ra[1].dtype == rb[1].dtype and ra[1].shape == rb[1].shape
        assert torch.equal(bits(ra[1]), bits(rb[1])), "values differ"
    else:
        assert ra == rb
    assert wa == wb
    assert torch.equal(sa, sb), "global RNG state after the call differs"


# ============================================================================== part 1: drop-in


def test_public_names_match_torch():
    assert dinit.__all__ == tinit.__all__
    assert all(callable(getattr(dinit, n)) for n in dinit.__all__)

    def defined(mod):
        return {
            n
            for n, v in vars(mod).items()
            if not n.startswith("_") and inspect.isfunction(v) and v.__module__ == mod.__name__
        }

    assert defined(dinit) == defined(tinit) == set(tinit.__all__)


@pytest.mark.parametrize("name", tinit.__all__)
def test_signatures_match_torch(name):
    ours = inspect.signature(getattr(dinit, name)).parameters
    theirs = inspect.signature(getattr(tinit, name)).parameters
    extra = [p for n, p in ours.items() if n not in theirs]
    assert [(p.name, p.kind, p.default) for n, p in ours.items() if n in theirs] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]
    if name in RANDOM_FNS:
        assert [(p.name, p.kind, p.default) for p in extra] == [
            ("seed", inspect.Parameter.KEYWORD_ONLY, None),
            ("stream", inspect.Parameter.KEYWORD_ONLY, 0),
        ]
    else:
        assert extra == []


TORCH_NONLINEARITIES = ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d"]
TORCH_NONLINEARITIES += ["conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"]


# gelu/silu/swish/identity are in depthinit.schemes' table, not torch's: here they must raise as in torch.
@pytest.mark.parametrize("nonlinearity", [*TORCH_NONLINEARITIES, "gelu", "silu", "swish", "identity", "Relu", None, 3])
@pytest.mark.parametrize("param", [None, 0, 0.2, 3, True, "x"])
def test_calculate_gain(nonlinearity, param):
    def call(mod):
        try:
            r = mod.calculate_gain(nonlinearity, param)
            return type(r), r
        except Exception as e:  # noqa: BLE001
            return type(e), str(e)

    assert call(dinit) == call(tinit)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name,args,kwargs", CALLS, ids=lambda x: str(x))
def test_values_errors_warnings_match_torch(name, args, kwargs, shape):
    # Same torch.manual_seed: the global RNG path (and, for sparse_, torch's randperm on the global RNG).
    assert_same(outcome(dinit, name, shape, args, kwargs), outcome(tinit, name, shape, args, kwargs))
    if name in RANDOM_FNS:  # an explicit generator: its stream, and the global RNG left as torch leaves it
        g = dict(gen_seed=7, torch_seed=99)
        assert_same(outcome(dinit, name, shape, args, kwargs, **g), outcome(tinit, name, shape, args, kwargs, **g))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.int64], ids=str)
@pytest.mark.parametrize("name", ["uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "orthogonal_", "sparse_"])
def test_dtypes_match_torch(name, dtype):
    args = (0.2,) if name == "sparse_" else ()
    assert_same(outcome(dinit, name, (6, 4), args, {}, dtype), outcome(tinit, name, (6, 4), args, {}, dtype))


@pytest.mark.parametrize("name,shape,args,kwargs", BAD, ids=lambda x: str(x))
def test_bad_input_matches_torch(name, shape, args, kwargs):
    ours, theirs = outcome(dinit, name, shape, args, kwargs), outcome(tinit, name, shape, args, kwargs)
    assert_same(ours, theirs)
    assert not isinstance(ours[0][1], torch.Tensor) or ours[1], "each BAD case must raise or warn"


def test_zero_element_warning_points_at_caller():
    """kaiming_* warn with stacklevel=2: the warning names this file, as torch's does."""
    for name in ("kaiming_uniform_", "kaiming_normal_"):
        for mod in (dinit, tinit):
            _, warned, _ = outcome(mod, name, (0, 5), (), {})
            assert warned == [(UserWarning, "Initializing zero-element tensors is a no-op", __file__, 0)]


@pytest.mark.parametrize("alias", ALIASES)
def test_deprecated_aliases(alias):
    shape = (3, 4, 3) if alias == "dirac" else (5, 4)
    args = (0.5,) if alias in ("constant", "sparse") else ()
    ours, theirs = outcome(dinit, alias, shape, args, {}), outcome(tinit, alias, shape, args, {})
    assert_same(ours, theirs)
    assert ours[1][0][:2] == (FutureWarning, f"`nn.init.{alias}` is now deprecated in favor of `nn.init.{alias}_`.")
    assert ours[1][0][2:] == (__file__, 0)
    assert getattr(dinit, alias).__name__ == alias


class Logged(torch.Tensor):
    """A tensor subclass that records which functions it was dispatched through."""

    calls: list = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.calls.append(func)
        return super().__torch_function__(func, types, args, kwargs or {})


@pytest.mark.parametrize(
    "name,args",
    [("uniform_", ()), ("normal_", ()), ("constant_", (0.5,)), ("kaiming_uniform_", ())],
)
def test_torch_function_dispatch_is_torchs(name, args):
    results = []
    for mod in (dinit, tinit):
        Logged.calls = []
        torch.manual_seed(0)
        t = torch.empty(4, 3).as_subclass(Logged)
        out = getattr(mod, name)(t, *args)
        assert out is t and getattr(tinit, name) in Logged.calls
        results.append(t.as_subclass(torch.Tensor).clone())
    assert torch.equal(*results)


def test_parameters_requires_grad_and_meta():
    for mod in (dinit, tinit):
        p = torch.nn.Parameter(torch.empty(4, 3))
        assert mod.kaiming_uniform_(p) is p and p.requires_grad and p.grad_fn is None
    # Meta tensors: a no-op. (normal_, xavier_normal_, kaiming_normal_ and eye_ left out: torch's first meta
    # normal_ / eye imports its decompositions, ~3 s; delegation makes them torch's anyway.)
    slow_on_meta = ("normal_", "xavier_normal_", "kaiming_normal_", "eye_")
    for name in [n for n in RANDOM_FNS + FIXED_FNS if n not in slow_on_meta]:
        args = {"sparse_": (0.1,), "constant_": (0.5,)}.get(name, ())
        shape = (3, 4, 3) if name == "dirac_" else (4, 3)
        t = torch.empty(shape, device="meta")
        assert getattr(dinit, name)(t, *args) is t


# ============================================================================== part 2: seed=

# Statistical thresholds: with a fixed seed the test is deterministic; the thresholds say how far an honest
# sample of N = 32768 elements may be from the formula, so a wrong formula (a factor sqrt(2), sqrt(3), the
# wrong fan) fails by a wide margin. Standard errors of the sample std: normal sqrt(1/(2N)) = 0.0039,
# uniform sqrt(0.8/N)/2 = 0.0025 (excess kurtosis -1.2); we allow 5 of them: 0.02 relative. The sample mean
# has standard error std/sqrt(N) = 0.0055 std; we allow 5 of them: 0.03 std.
N_STAT = 32768
STD_RTOL = 0.02
MEAN_ATOL = 0.03
SEED = 2**40 + 12345  # exercises the high word of the Philox key

# (function, shape, args, kwargs, distribution, expected std, expected bounds or None), formulas written out.
_fi, _fo = 32 * 16, 64 * 16  # Conv2d(32 -> 64, 4x4)
_leaky = math.sqrt(2.0 / (1 + 0.2**2))
SEEDED = [
    ("uniform_", (128, 256), (-0.5, 1.5), {}, "uniform", 2.0 / math.sqrt(12), (-0.5, 1.5)),
    ("normal_", (128, 256), (0.25, 0.1), {}, "normal", 0.1, None),
    ("trunc_normal_", (128, 256), (), {}, "trunc_normal", 0.8796256610342398, (-2.0, 2.0)),
    ("xavier_uniform_", (128, 256), (), {"gain": 2.0}, "uniform", 2 * math.sqrt(2 / 384), None),
    ("xavier_normal_", (64, 32, 4, 4), (0.5,), {}, "normal", 0.5 * math.sqrt(2 / (_fi + _fo)), None),
    ("kaiming_uniform_", (64, 32, 4, 4), (), {"nonlinearity": "relu"}, "uniform", math.sqrt(2 / _fi), None),
    ("kaiming_normal_", (64, 32, 4, 4), (0.2, "fan_out"), {}, "normal", _leaky / math.sqrt(_fo), None),
    ("kaiming_normal_", (32, 16, 4, 4, 4), (), {"nonlinearity": "tanh"}, "normal", 5 / 3 / math.sqrt(1024), None),
]


def seeded(name, shape, *args, dtype=torch.float32, **kwargs):
    t = torch.empty(shape, dtype=dtype)
    assert getattr(dinit, name)(t, *args, **kwargs) is t
    return t


def philox_uniform(seed: int, stream: int, n: int) -> torch.Tensor:
    """DESIGN.md's unit uniforms, computed here from depthinit.rng's Philox: the independent oracle."""
    from depthinit.rng import philox4x32_10

    i = torch.arange(n, dtype=torch.int64)
    c = i // 4
    words = philox4x32_10(
        c & 0xFFFFFFFF,
        c >> 32,
        torch.full_like(c, stream),
        torch.zeros_like(c),
        seed & 0xFFFFFFFF,
        seed >> 32,
    )
    w = torch.stack(list(words), dim=-1).gather(-1, (i % 4)[:, None])[:, 0]
    return ((w >> 9).double() + 0.5).mul(2.0**-23).float()


def reference(shape, row, seed=SEED, dtype=torch.float32):
    """depthinit.rng's reference fill (the slow element-by-element oracle)."""
    from depthinit.rng import reference_values

    return reference_values(row, seed, math.prod(shape), dtype).reshape(shape)


def test_seed_uniform_is_the_contract():
    """u(seed, stream, i) exactly (24-bit uniforms are exact in fp32); 37 elements: a partial last counter."""
    assert torch.equal(seeded("uniform_", (37,), seed=SEED, stream=5), philox_uniform(SEED, 5, 37))
    u = philox_uniform(SEED, 5, 37)
    # a + (b - a) * u: one fp32 multiply-add, so within 1 ulp of the fp64 value (fma or not): rtol 2^-23.
    got = seeded("uniform_", (37,), -3.0, 5.0, seed=SEED, stream=5).double()
    torch.testing.assert_close(got, -3.0 + 8.0 * u.double(), rtol=2.0**-23, atol=2.0**-20)


def small(shape):
    """A small tensor of the same kind (rank, so fans), for tests that need no statistics."""
    return (16, 8, *[2] * (len(shape) - 2))


@pytest.mark.parametrize("case", SEEDED, ids=lambda c: f"{c[0]}{c[1]}")
def test_seed_deterministic_and_sensitive(case):
    name, shape, args, kwargs = case[:4]
    shape = small(shape)
    a = seeded(name, shape, *args, **kwargs, seed=SEED, stream=3)
    assert torch.equal(a, seeded(name, shape, *args, **kwargs, seed=SEED, stream=3))
    for other in ({"seed": SEED + 1, "stream": 3}, {"seed": SEED, "stream": 4}, {"seed": SEED}):
        b = seeded(name, shape, *args, **kwargs, **other)
        assert (a != b).float().mean() > 0.99, f"{other} must change (almost) every element"
    from depthinit.rng import stream_id

    named = seeded(name, shape, *args, **kwargs, seed=SEED, stream="blocks.7.mlp.w1")
    assert torch.equal(named, seeded(name, shape, *args, **kwargs, seed=SEED, stream=stream_id("blocks.7.mlp.w1")))


@pytest.mark.parametrize("case", SEEDED, ids=lambda c: f"{c[0]}{c[1]}")
def test_seed_matches_reference_fill_and_formula(case):
    from depthinit.kernels.contract import DIST_CODES, FillRow

    name, shape, args, kwargs, dist, std, bounds = case
    got = seeded(name, shape, *args, **kwargs, seed=SEED, stream=11)
    assert got.numel() == N_STAT
    # The reference fill with the parameters written out above (torch's formulas) gives the same values.
    mean = args[0] if name == "normal_" else 0.0
    if name == "uniform_":
        row = FillRow(DIST_CODES[dist], low=args[0], high=args[1], stream=11)
    elif dist == "uniform":
        row = FillRow(DIST_CODES[dist], low=-math.sqrt(3) * std, high=math.sqrt(3) * std, stream=11)
    elif dist == "trunc_normal":
        row = FillRow(DIST_CODES[dist], std=1.0, low=-2.0, high=2.0, stream=11)
    else:
        row = FillRow(DIST_CODES[dist], mean=mean, std=std, stream=11)
    # Unit uniforms are bit-exact on every path; the scaled / transformed values may differ from the reference
    # by a few fp32 ulp (FMA contraction, a compiled or GPU log/cos/sin: DESIGN.md), so allow 8 ulp of the
    # largest magnitude. A wrong std or bound (the thing tested here) is off by far more than 1e-6 relative.
    ref = reference(shape, row)
    torch.testing.assert_close(got, ref, rtol=0, atol=8 * 2.0**-23 * ref.abs().max().item())
    # ... and that fill has the formula's statistics (thresholds at the top of this section).
    x = got.double()
    if name == "uniform_":
        mean = sum(args) / 2
    assert abs(x.mean().item() - mean) < MEAN_ATOL * std
    assert abs(x.std().item() / std - 1) < STD_RTOL
    if bounds is None and dist == "uniform":
        bounds = (-math.sqrt(3) * std, math.sqrt(3) * std)
    if bounds is not None:
        lo, hi = bounds
        assert lo <= x.min().item() and x.max().item() <= hi
        # N i.i.d. values all further than 0.1% of the width from an end: probability (1 - 1e-3)^N < 1e-14.
        if dist == "uniform":
            assert x.min().item() < lo + 1e-3 * (hi - lo) and x.max().item() > hi - 1e-3 * (hi - lo)


def test_seed_any_layout():
    """The element index is the row-major index: a transposed view gets the values of a contiguous tensor."""
    base = torch.empty(8, 6)
    dinit.kaiming_uniform_(base.T, seed=SEED, stream=2)
    assert torch.equal(base.T, seeded("kaiming_uniform_", (6, 8), seed=SEED, stream=2))


@pytest.mark.parametrize("shape", [(6, 10), (10, 6), (4, 3, 2, 2)], ids=str)
def test_seed_orthogonal(shape):
    got = seeded("orthogonal_", shape, 1.5, seed=SEED, stream=9)
    rows = shape[0]
    cols = got.numel() // rows
    # torch's procedure on the contract normal matrix, written out.
    m = seeded("normal_", (rows, cols), seed=SEED, stream=9)
    m = m.T if rows < cols else m
    q, r = torch.linalg.qr(m)
    q = q * torch.diag(r, 0).sign()
    q = q.T if rows < cols else q
    assert torch.equal(got, (q.reshape(shape) * 1.5))
    w = got.reshape(rows, cols).double()
    small = w @ w.T if rows <= cols else w.T @ w
    # fp32 Householder QR: orthogonality error ~ n * eps32 = 10 * 1.2e-7; 1e-5 leaves a margin.
    torch.testing.assert_close(small, 2.25 * torch.eye(min(rows, cols), dtype=torch.float64), atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_seed_half_types(dtype):
    """fp16/bf16 get the fp32 values rounded once to the dtype: within 1 ulp of the dtype (2^-10 / 2^-7
    relative, one rounding of a value that may itself be 1 fp32 ulp off), and never NaN."""
    rtol = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}[dtype]
    for name, shape, args, kwargs, *_ in SEEDED:
        h = seeded(name, small(shape), *args, **kwargs, seed=SEED, stream=1, dtype=dtype)
        f = seeded(name, small(shape), *args, **kwargs, seed=SEED, stream=1)
        assert h.dtype == dtype and torch.isfinite(h).all()
        torch.testing.assert_close(h.float(), f, rtol=rtol, atol=1e-7)
    # orthogonal_ (factorized in fp32) and sparse_ too; with gain 1 the result is the fp32 one rounded once.
    h = seeded("orthogonal_", (6, 10), seed=SEED, dtype=dtype)
    assert torch.equal(h, seeded("orthogonal_", (6, 10), seed=SEED).to(dtype))
    h = seeded("sparse_", (20, 30), 0.25, seed=SEED, dtype=dtype)
    assert ((h == 0).sum(0) == 5).all()


def test_seed_sparse():
    rows, cols, std = 20, 30, 0.05
    got = seeded("sparse_", (rows, cols), 0.22, std, seed=SEED, stream=6)
    num_zeros = math.ceil(0.22 * rows)
    values = seeded("normal_", (rows, cols), 0.0, std, seed=SEED, stream=6)
    assert (values != 0).all()
    zero = got == 0
    assert (zero.sum(0) == num_zeros).all()
    assert torch.equal(got[~zero], values[~zero])
    # The zeroed rows are the smallest keys of slice [1] of the logical [2, rows, cols] uniform tensor.
    from depthinit.kernels.contract import DIST_UNIFORM, FillRow

    keys = reference((2, rows, cols), FillRow(DIST_UNIFORM, stream=6))[1]
    expect = torch.zeros(rows, cols, dtype=torch.bool).scatter_(0, keys.argsort(dim=0, stable=True)[:num_zeros], True)
    assert torch.equal(zero, expect)
    assert len({tuple(c) for c in zero.T.tolist()}) > 1, "columns must get different zero rows"


def test_seed_sparse_rows_uniform():
    """Each row is zeroed in a column with probability num_zeros/rows = 1/4. 4096 columns: standard error
    sqrt(.25 * .75 / 4096) = 0.0068; 5 of them: 0.034."""
    got = seeded("sparse_", (8, 4096), 0.25, seed=SEED)
    freq = (got == 0).double().mean(1)
    assert ((freq - 0.25).abs() < 0.034).all(), freq


def test_seed_leaves_torch_rng_alone():
    torch.manual_seed(0)
    cpu = torch.random.get_rng_state()
    for name, shape, args, kwargs, *_ in SEEDED:
        seeded(name, small(shape), *args, **kwargs, seed=SEED)
    seeded("orthogonal_", (6, 10), seed=SEED)
    seeded("sparse_", (20, 30), 0.1, seed=SEED)
    assert torch.equal(torch.random.get_rng_state(), cpu)


def assert_same_checks(name, shape, args, kwargs):
    """seed= changes the numbers, not the checks: the same exceptions and warnings (category, message) as
    torch. (torch's trunc_normal_ warning points into torch's own file; ours at the caller.)"""
    ours = outcome(dinit, name, shape, args, {**kwargs, "seed": 1})
    theirs = outcome(tinit, name, shape, args, kwargs)
    assert type(ours[0][1]) is type(theirs[0][1])
    if not isinstance(ours[0][1], torch.Tensor):
        assert ours[0] == theirs[0]
    assert [w[:2] for w in ours[1]] == [w[:2] for w in theirs[1]]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name,args,kwargs", [c for c in CALLS if c[0] in RANDOM_FNS], ids=lambda x: str(x))
def test_seed_errors_and_warnings_match_torch(name, args, kwargs, shape):
    assert_same_checks(name, shape, args, kwargs)


@pytest.mark.parametrize(
    "name,shape,args,kwargs", [b for b in BAD if b[0] in RANDOM_FNS and "generator" not in b[3]], ids=lambda x: str(x)
)
def test_seed_bad_input_matches_torch(name, shape, args, kwargs):
    assert_same_checks(name, shape, args, kwargs)


def test_seed_zero_element_warning_points_at_caller():
    for name in ("kaiming_uniform_", "kaiming_normal_"):
        _, warned, _ = outcome(dinit, name, (0, 5), (), {"seed": 1})
        assert warned == [(UserWarning, "Initializing zero-element tensors is a no-op", __file__, 0)]


@pytest.mark.parametrize("name", RANDOM_FNS)
def test_seed_argument_errors(name):
    args = (0.1,) if name == "sparse_" else ()
    fn = getattr(dinit, name)
    with pytest.raises(ValueError, match="generator= .* or seed= .* not both"):
        fn(torch.empty(4, 3), *args, generator=torch.Generator(), seed=0)
    for bad in (-1, 2**64, 1.5, True, "0"):
        with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*64\)"):
            fn(torch.empty(4, 3), *args, seed=bad)
    for bad in (-1, 2**32, 1.0, None):
        with pytest.raises(ValueError, match=r"stream must be a name \(str\) or an integer in \[0, 2\*\*32\)"):
            fn(torch.empty(4, 3), *args, seed=0, stream=bad)
    with pytest.raises(TypeError, match="seed= fills floating-point tensors only"):
        fn(torch.zeros(4, 3, dtype=torch.int64), *args, seed=0)


def test_seed_parameters_meta_subclasses():
    for name in RANDOM_FNS:
        args = (0.1,) if name == "sparse_" else ()
        p = torch.nn.Parameter(torch.empty(4, 3))
        assert getattr(dinit, name)(p, *args, seed=0) is p and p.requires_grad and p.grad_fn is None
        t = torch.empty(4, 3, device="meta")
        assert getattr(dinit, name)(t, *args, seed=0) is t
    for name in ("uniform_", "normal_", "kaiming_uniform_"):  # the functions torch dispatches
        Logged.calls = []
        t = torch.empty(4, 3).as_subclass(Logged)
        assert getattr(dinit, name)(t, seed=3) is t and getattr(dinit, name) in Logged.calls
        assert torch.equal(t.as_subclass(torch.Tensor), seeded(name, (4, 3), seed=3))


@pytest.mark.parametrize("alias", ["uniform", "normal", "xavier_uniform", "kaiming_normal", "orthogonal", "sparse"])
def test_seed_through_deprecated_aliases(alias):
    args = (0.5,) if alias == "sparse" else ()
    with pytest.warns(FutureWarning, match=f"nn.init.{alias}` is now deprecated"):
        a = getattr(dinit, alias)(torch.empty(5, 4), *args, seed=2)
    assert torch.equal(a, seeded(alias + "_", (5, 4), *args, seed=2))


@pytest.mark.parametrize("name", RANDOM_FNS)
def test_stream_without_seed_is_an_error(name):
    args = (0.1,) if name == "sparse_" else ()
    for stream in (1, "fc.weight"):
        with pytest.raises(ValueError, match="selects a stream of depthinit's counter-based RNG and needs seed="):
            getattr(dinit, name)(torch.empty(4, 3), *args, stream=stream)
    getattr(dinit, name)(torch.empty(4, 3), *args, stream=0)  # the default, spelled out: torch's path


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_seed_same_values_on_cuda():
    """The contract is device-independent: the Triton fill on CUDA gives the CPU values up to a few fp32 ulp
    (FMA contraction, the device's log/cos/sin: DESIGN.md), so 8 ulp of the largest magnitude."""
    for name, shape, args, kwargs, *_ in SEEDED:
        cpu = seeded(name, small(shape), *args, **kwargs, seed=SEED, stream=5)
        gpu = torch.empty(small(shape), device="cuda")
        getattr(dinit, name)(gpu, *args, **kwargs, seed=SEED, stream=5)
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=8 * 2.0**-23 * cpu.abs().max().item())
