"""Plans: rows, roles, depth detection, tied weights, JSON round-trip, apply, bad input."""

import json
import math
import warnings

import pytest
import torch
from torch import nn

import depthinit as di
from depthinit.applications.models import build, gpt2, mlp
from depthinit.rng import stream_id


def rows_by_name(p):
    return {r.name: r for r in p}


def test_mlp_plan_depth_and_formula():
    model = mlp(depth=6, width=32, in_features=8, out_features=3)
    p = di.plan(model, "depth_aware", K=2.0, distribution="uniform", seed=3)
    weights = [r for r in p if r.name.endswith("weight")]
    assert [r.layer for r in weights] == [1, 2, 3, 4, 5, 6]
    assert all(r.n_layers == 6 for r in weights)
    assert weights[-1].role == "head"
    for r in weights:
        m = math.exp(2.0 * 2 * r.layer / (6 * 7))
        assert r.std == pytest.approx(math.sqrt(2 / r.fan_in * m))
        assert r.high == pytest.approx(math.sqrt(3) * r.std) and r.low == -r.high
        assert r.distribution == "uniform"
    biases = [r for r in p if r.name.endswith("bias")]
    assert all(r.distribution == "constant" and r.mean == 0 and r.role == "bias" for r in biases)
    assert all(r.stream == stream_id(r.name) for r in p)
    assert p.predicted_gain() == {"L=6": pytest.approx(math.exp(2.0))}


def test_gpt2_plan_roles_blocks_and_tied_head():
    model = gpt2(n_layer=3, n_embd=32, n_head=4, vocab=50, block=16)
    p = di.plan(model, "gpt2", seed=0)
    r = rows_by_name(p)
    assert "lm_head.weight" not in r  # tied to wte: planned once
    assert r["transformer.wte.weight"].tied == ("lm_head.weight",)
    assert p["lm_head.weight"] is r["transformer.wte.weight"]
    assert r["transformer.wte.weight"].role == "embedding"
    assert r["transformer.h.0.attn.c_attn.weight"].role == "attn_qkv"
    assert r["transformer.h.2.attn.c_proj.weight"].role == "attn_out"
    assert r["transformer.h.1.mlp.c_fc.weight"].role == "mlp_in"
    assert r["transformer.h.1.mlp.c_proj.weight"].role == "mlp_out"
    assert r["transformer.h.1.ln_1.weight"].role == "norm"
    assert r["transformer.h.2.attn.c_proj.weight"].layer == 3
    assert r["transformer.h.2.attn.c_proj.weight"].n_layers == 3
    assert r["transformer.wte.weight"].layer is None
    assert r["transformer.h.0.mlp.c_proj.weight"].std == pytest.approx(0.02 / math.sqrt(6))
    assert r["transformer.h.0.attn.c_attn.weight"].std == 0.02
    assert r["transformer.ln_f.bias"].mean == 0 and r["transformer.ln_f.weight"].mean == 1


def test_torch_transformer_and_conv_roles():
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), num_layers=2,
                                enable_nested_tensor=False)
    r = rows_by_name(di.plan(enc, "xavier"))
    assert r["layers.0.self_attn.in_proj_weight"].role == "attn_qkv"
    assert r["layers.1.self_attn.out_proj.weight"].role == "attn_out"
    assert r["layers.1.linear1.weight"].role == "mlp_in"
    assert r["layers.1.linear2.weight"].role == "mlp_out"
    assert r["layers.1.norm1.weight"].role == "norm"
    assert r["layers.1.linear2.weight"].layer == 2

    conv = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 10))
    r = rows_by_name(di.plan(conv, "he"))
    assert r["0.weight"].fan_in == 27 and r["0.weight"].layer == 1
    assert r["3.weight"].fan_in == 72 and r["3.weight"].layer == 2
    assert r["5.weight"].role == "head" and r["5.weight"].layer == 3
    assert r["1.weight"].role == "norm" and r["1.weight"].layer is None
    assert r["0.weight"].std == pytest.approx(math.sqrt(2 / 27))


def test_depth_override_and_roles_override():
    model = mlp(depth=4, width=8)
    p = di.plan(model, "depth_aware", K=1.0, depth={"0.weight": 2, "2.weight": 4})
    r = rows_by_name(p)
    assert (r["0.weight"].layer, r["0.weight"].n_layers) == (2, 4)
    assert r["4.weight"].layer is None
    p = di.plan(model, "fixup", roles={r"^6\.weight$": "mlp_out"})
    assert rows_by_name(p)["6.weight"].distribution == "constant"
    with pytest.raises(ValueError, match="int >= 1"):
        di.plan(model, "he", depth=lambda n: 0)
    with pytest.raises(ValueError, match="unknown role"):
        di.plan(model, "he", roles={"x": "wizard"})


def test_skips_non_floating_and_plans_meta():
    m = nn.Linear(4, 4)
    m.register_parameter("count", nn.Parameter(torch.zeros(3, dtype=torch.int64), requires_grad=False))
    p = di.plan(m, "he")
    assert [s[0] for s in p.skipped] == ["count"]
    assert "skipped count" in str(p)
    meta = build("gpt2:n_layer=2,n_embd=16,n_head=2,vocab=40,block=8", device="meta")
    pm = di.plan(meta, "gpt2")
    assert all(r.device == "meta" for r in pm)
    with pytest.raises(ValueError, match="materialize"):
        pm.apply()


def test_table_and_json_roundtrip():
    model = gpt2(n_layer=2, n_embd=16, n_head=2, vocab=40, block=8)
    p = di.plan(model, "olmo_mitchell", seed=11)
    text = str(p)
    assert "transformer.h.1.mlp.c_proj.weight" in text and "1/2" in text
    q = di.InitPlan.from_json(p.to_json())
    assert q.rows == p.rows and q.seed == 11 and q.scheme == "olmo_mitchell"
    assert json.loads(q.to_json()) == json.loads(p.to_json())


@pytest.mark.parametrize("bad,match", [
    (b"\xff\xfe", "UTF-8"), ("[1, 2", "not valid plan JSON"), ("[]", "not a depthinit plan"),
    ('{"format": "depthinit.plan/1", "rows": 3, "seed": 0}', "must be a list"),
    ('{"format": "depthinit.plan/1", "rows": [], "seed": -1}', "seed"),
    ('{"format": "depthinit.plan/1", "rows": [], "seed": 0, "evil": 1}', "unknown plan field"),
    ("[" * 100000 + "]" * 100000, "not valid plan JSON"),
])
def test_from_json_rejects_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        di.InitPlan.from_json(bad)


def test_from_json_rejects_bad_rows():
    good = json.loads(di.plan(nn.Linear(3, 2), "he").to_json())
    for field, value, match in [("std", -1.0, "invalid std"), ("shape", [2, -3], "invalid shape"),
                                ("distribution", "cauchy", "invalid distribution"), ("stream", 2**40, "stream"),
                                ("dtype", "int64", "floating"), ("std", float("nan"), "invalid std")]:
        d = json.loads(json.dumps(good))
        d["rows"][0][field] = value
        with pytest.raises(ValueError, match=match):
            di.InitPlan.from_dict(d)
    d = json.loads(json.dumps(good))
    d["rows"][0]["extra"] = 1
    with pytest.raises(ValueError, match="unknown field"):
        di.InitPlan.from_dict(d)


def test_bad_scheme_options_and_seed():
    m = nn.Linear(3, 3)
    with pytest.raises(ValueError, match="valid:.*he"):
        di.plan(m, "hee")
    with pytest.raises(ValueError, match="has no option"):
        di.plan(m, "he", K=2)
    with pytest.raises(ValueError, match="K > -1"):
        di.plan(m, "depth_aware", K=-2, schedule="linear")
    with pytest.raises(ValueError, match="seed"):
        di.plan(m, "he", seed=-5)
    with pytest.raises(TypeError, match="nn.Module"):
        di.plan(torch.zeros(3), "he")


def test_extreme_growth_warns():
    model = mlp(depth=54, width=8)
    with pytest.warns(di.VarianceWarning, match="explode"):
        di.plan(model, "depth_aware", K=1.0, schedule="linear")
    with pytest.warns(di.VarianceWarning, match="vanish"):
        di.plan(model, "depth_aware", K=-0.9, schedule="linear")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        di.plan(model, "depth_aware", K=5.0, schedule="ramp")  # e^5 < 1e4: no warning


def test_rezero_needs_residual_scalars():
    with pytest.raises(ValueError, match="no residual scalars"):
        di.plan(mlp(depth=3, width=4), "rezero")

    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.resweight = nn.Parameter(torch.ones(()))

    p = di.plan(Res(), "rezero")
    assert rows_by_name(p)["resweight"].distribution == "constant"


def test_deepnorm_constants_in_plan():
    p = di.plan(gpt2(n_layer=4, n_embd=16, n_head=2, vocab=30, block=8), "deepnorm")
    assert p.constants["alpha"] == pytest.approx((2 * 4) ** 0.25)
    assert "alpha=" in str(p)


# ------------------------------------------------------------------ apply


def test_apply_fills_every_parameter_and_is_deterministic():
    model = gpt2(n_layer=2, n_embd=16, n_head=2, vocab=40, block=8)
    p = di.plan(model, "gpt2", seed=5)
    p.apply()
    a = {k: v.clone() for k, v in model.state_dict().items()}
    for prm in model.parameters():
        prm.data.fill_(7.0)
    di.InitPlan.from_json(p.to_json()).apply(model)
    for k, v in model.state_dict().items():
        assert torch.equal(v, a[k]), k
    assert model.lm_head.weight is model.transformer.wte.weight
    assert torch.all(model.transformer.ln_f.weight == 1) and torch.all(model.transformer.h[0].attn.c_attn.bias == 0)


def test_apply_independent_of_other_parameters():
    # Values depend only on (seed, name, index): a model with an extra layer gives the same shared weights.
    a, b = mlp(depth=3, width=16), mlp(depth=4, width=16)
    di.init_(a, "normal", std=1.0, seed=9)
    di.init_(b, "normal", std=1.0, seed=9)
    assert torch.equal(a[0].weight, b[0].weight) and torch.equal(a[2].weight, b[2].weight)
    c = mlp(depth=3, width=16)
    di.init_(c, "normal", std=1.0, seed=10)
    assert not torch.equal(a[0].weight, c[0].weight)


def test_apply_statistics_follow_plan():
    model = mlp(depth=3, width=256)
    p = di.init_(model, "he", distribution="uniform", seed=1)
    w = model[2].weight
    r = p["2.weight"]
    # 65,536 samples: the sample std has relative s.e. ~ 1/sqrt(2n)*sqrt(kurtosis factor) < 0.3%; 2% is >6 s.e.
    assert w.std().item() == pytest.approx(r.std, rel=0.02)
    assert w.abs().max().item() <= r.high


def test_orthogonal_apply():
    m = nn.Linear(16, 8)
    di.init_(m, "orthogonal", gain=2.0, seed=0)
    w = m.weight.double()
    assert torch.allclose(w @ w.t(), 4 * torch.eye(8, dtype=torch.float64), atol=1e-5)


def test_apply_rejects_shape_mismatch():
    p = di.plan(nn.Linear(3, 2), "he")
    with pytest.raises(ValueError, match="shape"):
        p.apply(nn.Linear(4, 2))


def test_apply_reuses_prepared_tables_until_rows_change():
    model = mlp(depth=3, width=8)
    p = di.plan(model, "he", seed=2)
    p.apply()
    first = p._cache["fill"][1]
    p.apply()
    assert p._cache["fill"][1] is first
    before = model[0].weight.clone()
    p["0.weight"].std *= 2  # an edited plan rebuilds its tables and draws with the new std
    p.apply()
    assert p._cache["fill"][1] is not first
    assert torch.allclose(model[0].weight, 2 * before, rtol=1e-6)


@pytest.mark.parametrize("opts,match", [
    ({"scheme": "normal", "std": -0.1}, "std must be a finite number >= 0"),
    ({"scheme": "normal", "std": float("nan")}, "std must be a finite number >= 0"),
    ({"scheme": "gpt2", "std": float("inf")}, "std must be a finite number >= 0"),
    ({"scheme": "depth_aware", "K": float("nan")}, "K must be a finite number"),
    ({"scheme": "depth_aware", "K": 1e9}, r"\|K\| <= 700"),
    ({"scheme": "trunc_normal", "a": 1.0, "b": -1.0}, "a < b"),
])
def test_absurd_values_rejected_with_the_valid_range(opts, match):
    with pytest.raises(ValueError, match=match):
        di.plan(mlp(depth=2, width=4), **opts)
