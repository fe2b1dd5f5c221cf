"""Every scheme's formula against an independent computation (torch.nn.init, the papers' constants, the
reference codebases' expressions written out here)."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from depthinit import schemes as S


def info(shape, role="other", layer=None, L=None, name="w"):
    fans = S.compute_fans(shape) if len(shape) >= 2 else (None, None)
    return S.ParamInfo(name, tuple(shape), role, layer, L, *fans)


@pytest.mark.parametrize("shape", [(3, 5), (7, 2), (4, 3, 5), (8, 4, 3, 3), (2, 6, 2, 3, 4), (0, 5)])
def test_fans_match_torch(shape):
    t = torch.empty(shape)
    assert S.compute_fans(shape) == torch.nn.init._calculate_fan_in_and_fan_out(t)


@pytest.mark.parametrize("shape", [(), (5,)])
def test_fans_reject_low_dims_like_torch(shape):
    with pytest.raises(ValueError) as ours:
        S.compute_fans(shape)
    with pytest.raises(ValueError) as theirs:
        torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize(
    "nl,param", [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
                 ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", 3), ("selu", None)]
)
def test_gain_matches_torch(nl, param):
    assert S.calculate_gain(nl, param) == torch.nn.init.calculate_gain(nl, param)


@pytest.mark.parametrize("nl,fn", [("gelu", lambda z: z * 0.5 * (1 + special.erf(z / np.sqrt(2)))),
                                   ("silu", lambda z: z * special.expit(z)), ("swish", lambda z: z * special.expit(z))])
def test_smooth_gains_preserve_second_moment(nl, fn):
    # gain = 1/sqrt(E[phi(z)^2]), z ~ N(0,1): recomputed by quadrature (error ~1e-10, far below 1e-9).
    m2 = integrate.quad(lambda z: fn(z) ** 2 * stats.norm.pdf(z), -40, 40, epsabs=1e-13)[0]
    assert S.calculate_gain(nl) == pytest.approx(1 / math.sqrt(m2), rel=1e-9)


def test_gain_errors():
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        S.calculate_gain("softmax")
    with pytest.raises(ValueError, match="not a valid number"):
        S.calculate_gain("leaky_relu", "x")


@pytest.mark.parametrize("shape", [(64, 32), (16, 8, 3, 3)])
@pytest.mark.parametrize("dist", ["normal", "uniform"])
def test_he_and_xavier_match_torch_formulas(shape, dist):
    t = torch.empty(shape)
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(t)
    he = S.he(info(shape), distribution=dist)
    xa = S.xavier(info(shape), distribution=dist, gain=1.3)
    assert he.std == pytest.approx(math.sqrt(2.0) / math.sqrt(fan_in), rel=1e-12)
    assert xa.std == pytest.approx(1.3 * math.sqrt(2.0 / (fan_in + fan_out)), rel=1e-12)
    if dist == "uniform":  # torch's bounds: kaiming gain*sqrt(3/fan), xavier gain*sqrt(6/(fi+fo))
        assert he.high == pytest.approx(math.sqrt(2.0) * math.sqrt(3.0 / fan_in), rel=1e-12)
        assert he.low == -he.high
        assert xa.high == pytest.approx(1.3 * math.sqrt(6.0 / (fan_in + fan_out)), rel=1e-12)


def test_he_modes_and_leaky():
    p = info((10, 40))
    assert S.he(p, mode="fan_out").std == pytest.approx(math.sqrt(2 / 10))
    g = math.sqrt(2 / (1 + 0.2**2))
    assert S.he(p, nonlinearity="leaky_relu", a=0.2).std == pytest.approx(g / math.sqrt(40))
    assert S.lecun(p).std == pytest.approx(1 / math.sqrt(40))
    with pytest.raises(ValueError, match="fan_avg"):
        S.he(p, mode="fan_sideways")


def test_uniform_bound_is_sqrt3_std_and_has_that_std():
    d = S.draw(0.7, "uniform")
    assert d.high == pytest.approx(math.sqrt(3) * 0.7)
    # Var U(-b, b) = b^2/3
    assert (d.high - d.low) ** 2 / 12 == pytest.approx(0.49)


def test_trunc_normal_variance_corrected():
    d = S.draw(0.5, "trunc_normal", truncate=2.0)
    a, b = d.low / d.std, d.high / d.std
    assert stats.truncnorm(a, b, scale=d.std).std() == pytest.approx(0.5, rel=1e-9)


def test_roles_defaults():
    for name in ["he", "xavier", "lecun", "gpt2", "depth_aware", "olmo_mitchell", "deepnorm", "t_fixup"]:
        fn = S.get_scheme(name).fn
        assert fn(info((5,), "bias")) == S.constant(0.0)
        assert fn(info((5,), "norm")) == S.constant(1.0)
        assert fn(info((5,), "other")).distribution == "keep"


# ------------------------------------------------------------------ depth-aware


@pytest.mark.parametrize("L", [1, 2, 10, 54, 1000])
@pytest.mark.parametrize("K", [-3.0, -0.5, 0.0, 1.0, 4.0])
def test_ramp_total_gain_is_exp_K(L, K):
    prod = math.prod(S.depth_multiplier(lyr, L, K, "ramp") for lyr in range(1, L + 1))
    assert prod == pytest.approx(math.exp(K), rel=1e-9)
    assert S.predicted_gain(L, K, "ramp") == pytest.approx(math.exp(K), rel=1e-9)


def test_ramp_direction_and_linear_formula():
    up = [S.depth_multiplier(lyr, 10, 1.0) for lyr in range(1, 11)]
    down = [S.depth_multiplier(lyr, 10, -1.0) for lyr in range(1, 11)]
    assert up == sorted(up) and down == sorted(down, reverse=True)
    assert S.depth_multiplier(3, 10, 0.5, "linear") == pytest.approx(1 + 0.5 * 3 / 10)
    assert S.depth_multiplier(7, 10, 5.0, "constant") == 1.0


def test_depth_aware_variance_is_base_times_multiplier():
    L, K = 54, 1.5
    for lyr in (1, 27, 54):
        p = info((256, 128), layer=lyr, L=L)
        m = math.exp(K * 2 * lyr / (L * (L + 1)))
        assert S.depth_aware(p, K=K).std ** 2 == pytest.approx(2 / 128 * m, rel=1e-12)
        assert S.depth_aware(p, K=K, base="xavier").std ** 2 == pytest.approx(2 / (128 + 256) * m, rel=1e-12)
        assert S.depth_aware(p, K=K, base="lecun", schedule="linear").std ** 2 == pytest.approx(
            1 / 128 * (1 + K * lyr / L), rel=1e-12)
    u = S.depth_aware(info((256, 128), layer=5, L=L), K=K, distribution="uniform")
    assert u.high == pytest.approx(math.sqrt(3) * u.std)


@pytest.mark.parametrize("K,schedule,match", [
    (float("nan"), "ramp", "finite"), (float("inf"), "ramp", "finite"), (-1.0, "linear", "K > -1"),
    (1000.0, "ramp", "out of range"), ("1", "ramp", "finite"), (1.0, "cubic", "valid: constant, ramp, linear")])
def test_bad_K_rejected(K, schedule, match):
    with pytest.raises(ValueError, match=match):
        S.depth_aware(info((4, 4), layer=1, L=2), K=K, schedule=schedule)


# ------------------------------------------------------------------ transformer schemes


def test_gpt2_and_megatron():
    L = 12
    assert S.gpt2(info((768, 768), "attn_out", 3, L)).std == pytest.approx(0.02 / math.sqrt(2 * L))
    assert S.gpt2(info((3072, 768), "mlp_out", 3, L)).std == pytest.approx(0.02 / math.sqrt(24))
    assert S.gpt2(info((2304, 768), "attn_qkv", 3, L)).std == 0.02
    assert S.gpt2(info((50257, 768), "embedding")).std == 0.02
    assert S.megatron(info((768, 768), "attn_out", 1, 24), init_method_std=0.006).std == pytest.approx(
        0.006 / math.sqrt(48))


def test_torchtitan_depth_init():
    # torchtitan: init_std = 0.02 / (2 * (layer_id + 1)) ** 0.5 with 0-based layer_id (depth_init=True),
    # 0.02 / (2 * n_layers) ** 0.5 otherwise; q/k/v and w1: 0.02; embedding N(0,1); head dim**-0.5, +-3 std.
    for layer_id in range(4):
        d = S.torchtitan_depth(info((64, 64), "attn_out", layer_id + 1, 4, "layers.0.attention.wo.weight"))
        assert d.std == pytest.approx(0.02 / (2 * (layer_id + 1)) ** 0.5)
        assert (d.low, d.high) == (-2.0, 2.0)
        w3 = S.torchtitan_depth(info((64, 64), "mlp_in", layer_id + 1, 4, "layers.0.feed_forward.w3.weight"))
        assert w3.std == d.std
    flat = S.torchtitan_depth(info((64, 64), "mlp_out", 2, 4), depth_init=False)
    assert flat.std == pytest.approx(0.02 / (2 * 4) ** 0.5)
    assert S.torchtitan_depth(info((64, 64), "attn_q", 2, 4)).std == 0.02
    assert S.torchtitan_depth(info((100, 64), "embedding")).std == 1.0
    head = S.torchtitan_depth(info((100, 64), "head"))
    assert head.std == pytest.approx(64**-0.5) and head.high == pytest.approx(3 * 64**-0.5)


def test_olmo_mitchell():
    d = 256
    assert S.olmo_mitchell(info((4 * d, d), "mlp_in", 2, 8)).std == pytest.approx(1 / math.sqrt(d))
    out = S.olmo_mitchell(info((d, 4 * d), "mlp_out", 3, 8))
    assert out.std == pytest.approx(1 / math.sqrt(2 * 4 * d * 3))
    assert out.high == pytest.approx(3 * out.std)


@pytest.mark.parametrize("arch,N,M,expect", [
    ("encoder", 12, 0, {"alpha": (2 * 12) ** 0.25, "beta": (8 * 12) ** -0.25}),
    ("decoder", 0, 24, {"alpha": (2 * 24) ** 0.25, "beta": (8 * 24) ** -0.25}),
    ("encoder_decoder", 6, 6, {"encoder_alpha": 0.81 * (6**4 * 6) ** (1 / 16),
                               "encoder_beta": 0.87 * (6**4 * 6) ** (-1 / 16),
                               "decoder_alpha": (3 * 6) ** 0.25, "decoder_beta": (12 * 6) ** -0.25}),
])
def test_deepnorm_constants(arch, N, M, expect):
    # DeepNet (Wang et al. 2022), Table / Figure 2 constants.
    got = S._deepnorm_constants(architecture=arch, n_encoder=N, n_decoder=M)
    assert got == pytest.approx(expect)


def test_deepnorm_weights():
    L, d = 24, 64
    beta = (8 * L) ** -0.25
    v = S.deepnorm(info((d, d), "attn_v", 1, L))
    q = S.deepnorm(info((d, d), "attn_q", 1, L))
    assert v.std == pytest.approx(beta * math.sqrt(2 / (2 * d)))
    assert q.std == pytest.approx(math.sqrt(2 / (2 * d)))


def test_fixup():
    L, m = 8, 2
    p = info((32, 16), "mlp_in", 3, L)
    assert S.fixup(p, m=m).std == pytest.approx(math.sqrt(2 / 16) * L ** (-1 / (2 * m - 2)))
    out = S.fixup(info((16, 32), "mlp_out", 3, L))
    assert (out.distribution, out.mean) == ("constant", 0.0)
    assert S.fixup(info((10, 16), "head")).distribution == "constant"
    assert S.fixup(info((1,), "residual_scale")).mean == 1.0
    with pytest.raises(ValueError, match="m >= 2"):
        S.fixup(p, m=1)


def test_t_fixup():
    N, d = 6, 64
    enc = 0.67 * N ** -0.25
    dec = (9 * N) ** -0.25
    assert S.t_fixup(info((d, d), "attn_v", 1, N), stack="encoder").std == pytest.approx(enc * math.sqrt(1 / d))
    assert S.t_fixup(info((d, d), "attn_out", 1, N)).std == pytest.approx(dec * math.sqrt(1 / d))
    assert S.t_fixup(info((d, d), "attn_k", 1, N)).std == pytest.approx(math.sqrt(1 / d))
    assert S.t_fixup(info((1000, d), "embedding", None, N)).std == pytest.approx(d**-0.5 * dec)


def test_rezero_zeroes_scalars_only():
    assert S.rezero(info((), "residual_scale")).mean == 0.0
    assert S.rezero(info((8, 8))).std == pytest.approx(math.sqrt(2 / 16))


def test_registry_errors():
    with pytest.raises(ValueError, match="valid: .*depth_aware"):
        S.get_scheme("kaiminng")
    sch = S.get_scheme("Kaiming")
    assert sch.name == "he"
    with pytest.raises(ValueError, match="has no option"):
        S.check_options(sch, {"K": 1})
    with pytest.raises(ValueError, match="unknown distribution"):
        S.check_options(sch, {"distribution": "cauchy"})


def test_every_scheme_documents_formula_and_paper():
    for s in S.SCHEMES.values():
        assert len(s.doc) > 40, s.name


def test_model_level_hooks_of_a_registered_scheme_reach_the_plan():
    """A scheme's ``check``/``gain``/``constants`` hooks are what the plan calls: nothing in the plan is specific
    to a scheme's name (a new scheme registered here gets the same treatment as depth_aware/rezero/deepnorm)."""
    import torch.nn as nn

    import depthinit as di

    seen = {}

    def gain(n_layers, options):
        seen["gain"] = (n_layers, options["std"])
        return 2.0

    def check(rows, options):
        seen["check"] = len(rows)
        if options["std"] > 1:
            raise ValueError("hooked: std too large")

    def constants(*, n_layers, **options):
        return {"depth": float(n_layers)}

    @S.register("_hooked_test", gain=gain, check=check, constants=constants)
    def hooked(p, *, std: float = 0.1):
        return S.draw(std)

    try:
        model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(3)])
        p = di.plan(model, "_hooked_test", seed=0, example=False)
        assert seen["check"] == len(p.rows) == 6
        assert p.predicted_gain() == {"L=3": 2.0} and seen["gain"] == (3, 0.1)
        assert p.constants == {"depth": 3.0}
        with pytest.raises(ValueError, match="hooked: std too large"):
            di.plan(model, "_hooked_test", seed=0, std=2.0, example=False)
        assert di.plan(model, "he", seed=0, example=False).predicted_gain() == {}
    finally:
        S.SCHEMES.pop("_hooked_test")
        S._ALIASES.pop("_hooked_test")
    # a plan of a scheme this process does not know (loaded from another one's JSON) still prints: no gain to report
    assert p.predicted_gain() == {} and "InitPlan: scheme=_hooked_test" in p.table()
    loaded = di.InitPlan.from_json(p.to_json())
    assert loaded.predicted_gain() == {} and loaded.table()
