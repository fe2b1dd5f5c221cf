"""Roles, fans and depths on the layouts and names real models use; consistent plan edits; derived rows."""

import math

import pytest
import torch
from torch import nn

import depthinit as di


def rows(p):
    return {r.name: r for r in p}


class _Block(nn.Module):
    def __init__(self, names: dict[str, tuple[int, int]], ctx: dict[str, str]):
        super().__init__()
        for key in ctx:
            self.add_module(key, nn.Module())
        for name, (i, o) in names.items():
            parent, leaf = name.split(".") if "." in name else ("", name)
            (getattr(self, parent) if parent else self).add_module(leaf, nn.Linear(i, o, bias=False))


def _stack(n_layers: int, names: dict[str, tuple[int, int]], ctx: dict[str, str], stack: str = "layers"):
    root = nn.Module()
    root.add_module(stack, nn.ModuleList([_Block(names, ctx) for _ in range(n_layers)]))
    return root


@pytest.mark.parametrize("names,ctx,expect", [
    # original OLMo: fused qkv att_proj, attn_out, ff_proj (gate|up), ff_out
    ({"att_proj": (16, 48), "attn_out": (16, 16), "ff_proj": (16, 64), "ff_out": (32, 16)}, {},
     {"att_proj": "attn_qkv", "attn_out": "attn_out", "ff_proj": "mlp_in", "ff_out": "mlp_out"}),
    # Megatron-core
    ({"self_attention.linear_qkv": (16, 48), "self_attention.linear_proj": (16, 16), "mlp.linear_fc1": (16, 64),
      "mlp.linear_fc2": (64, 16)}, {"self_attention": "", "mlp": ""},
     {"self_attention.linear_qkv": "attn_qkv", "self_attention.linear_proj": "attn_out",
      "mlp.linear_fc1": "mlp_in", "mlp.linear_fc2": "mlp_out"}),
    # OLMo-core
    ({"attention.w_q": (16, 16), "attention.w_k": (16, 16), "attention.w_v": (16, 16), "attention.w_out": (16, 16),
      "feed_forward.w1": (16, 32), "feed_forward.w2": (32, 16), "feed_forward.w3": (16, 32)},
     {"attention": "", "feed_forward": ""},
     {"attention.w_q": "attn_q", "attention.w_k": "attn_k", "attention.w_v": "attn_v", "attention.w_out": "attn_out",
      "feed_forward.w1": "mlp_in", "feed_forward.w2": "mlp_out", "feed_forward.w3": "mlp_in"}),
])
def test_names_of_olmo_megatron_olmo_core(names, ctx, expect):
    model = _stack(3, names, ctx, stack="blocks")
    p = rows(di.plan(model, "gpt2"))
    for name, role in expect.items():
        r = p[f"blocks.2.{name}.weight"]
        assert (r.role, r.source, r.layer, r.n_layers) == (role, "name", 3, 3)
        if role in ("attn_out", "mlp_out"):
            assert r.std == pytest.approx(0.02 / math.sqrt(6))  # residual scaling, not a flat 0.02
    out = next(n for n, role in expect.items() if role == "attn_out")  # [16, 16]: mitchell 1/sqrt(2·16·l)
    assert rows(di.plan(model, "olmo_mitchell"))[f"blocks.1.{out}.weight"].std == pytest.approx(1 / math.sqrt(64))


def test_model_level_output_layers_are_heads():
    for stack, head in (("blocks", "ff_out"), ("layers", "output_layer")):
        model = _stack(2, {"mlp.fc1": (8, 8)}, {"mlp": ""}, stack=stack)
        model.add_module(head, nn.Linear(8, 20, bias=False))
        assert rows(di.plan(model, "he"))[f"{head}.weight"].role == "head"
    olmo_core = nn.Module()
    olmo_core.lm_head = nn.Module()
    olmo_core.lm_head.w_out = nn.Linear(8, 20)
    assert rows(di.plan(olmo_core, "he"))["lm_head.w_out.weight"].role == "head"


def test_megatron_word_embeddings_role():
    model = _stack(2, {"mlp.linear_fc1": (8, 8)}, {"mlp": ""})
    model.embedding = nn.Module()
    model.embedding.word_embeddings = nn.Embedding(50, 8)
    r = rows(di.plan(model, "olmo_mitchell"))["embedding.word_embeddings.weight"]
    assert (r.role, r.source, r.fan_in) == ("embedding", "module", 8)


def test_conv_transpose_fans_follow_the_layout():
    m = nn.Sequential(nn.ConvTranspose2d(8, 4, 3, groups=2), nn.Conv2d(4, 6, 3))
    r = rows(di.plan(m, "he"))
    assert (r["0.weight"].fan_in, r["0.weight"].fan_out) == (4 * 9, 2 * 9)  # weight [in=8, out/groups=2, 3, 3]
    assert (r["1.weight"].fan_in, r["1.weight"].fan_out) == (4 * 9, 6 * 9)


def test_rnn_biases_are_zeroed():
    m = nn.LSTM(8, 16, num_layers=2)
    p = di.init_(m, "xavier", seed=0)
    for name, prm in m.named_parameters():
        if "bias" in name:
            assert rows(p)[name].role == "bias" and torch.all(prm == 0), name


def test_fixup_head_registered_first():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(16, 10)  # registered first, used last
            self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16))

        def forward(self, x):
            return self.head(self.body(x))

    p = rows(di.plan(Net(), "fixup"))
    zero = [n for n, r in p.items() if r.distribution == "constant" and r.mean == 0 and n.endswith("weight")]
    assert zero == ["head.weight"]


def test_plan_edits_stay_consistent():
    m = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64))
    p = di.plan(m, "he", distribution="uniform")
    r = p["0.weight"]
    r.std *= 0.5
    assert r.high == pytest.approx(math.sqrt(3) * r.std) and r.low == -r.high
    p.apply()
    assert m[0].weight.abs().max().item() <= r.high
    assert m[0].weight.std().item() == pytest.approx(r.std, rel=0.05)

    t = di.plan(m, "olmo_mitchell")["0.weight"]  # trunc_normal at ±3σ
    t.std = 0.01
    assert (t.low, t.high) == (pytest.approx(-0.03), pytest.approx(0.03))
    t.low, t.high = -0.015, 0.02  # explicit bounds win over later std edits
    t.std = 0.02
    assert (t.low, t.high) == (-0.015, 0.02)

    u = di.plan(m, "he", distribution="uniform")["2.weight"]
    u.low, u.high = -0.5, 1.5
    assert (u.mean, u.std) == (pytest.approx(0.5), pytest.approx(2 / math.sqrt(12)))


def test_plan_json_keeps_source_and_loads_older_plans():
    import json

    p = di.plan(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)), "he", roles={r"^1\.bias$": "bias"})
    d = json.loads(p.to_json())
    assert [r["source"] for r in d["rows"]] == ["module", "module", "module", "user"]
    assert "src" in str(p)
    for r in d["rows"]:
        del r["source"]  # a plan written before the column existed
    old = di.InitPlan.from_dict(d)
    assert [r.source for r in old] == ["", "", "", ""]


def test_weight_norm_initialized_through_the_parametrization():
    from torch.nn.utils.parametrizations import weight_norm

    torch.manual_seed(0)
    m = nn.Sequential(weight_norm(nn.Linear(256, 256)), nn.ReLU(), weight_norm(nn.Linear(256, 10)))
    p = di.init_(m, "he", seed=1)
    r = rows(p)
    assert r["0.parametrizations.weight.original1"].fan_in == 256
    assert r["0.parametrizations.weight.original0"].distribution == "keep"
    w = m[0].weight  # the effective weight g * v / |v|
    assert w.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.03)  # not ~15x smaller
    assert r["2.parametrizations.weight.original1"].role == "head"

    old = nn.utils.weight_norm(nn.Linear(256, 256))  # the deprecated hook-based weight_norm
    di.init_(old, "he")
    with torch.no_grad():
        eff = old.weight_g * old.weight_v / old.weight_v.norm(dim=1, keepdim=True)
    assert eff.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.03)


@pytest.mark.parametrize("table", [nn.Embedding, nn.EmbeddingBag])
def test_padding_row_stays_zero(table):
    m = nn.Sequential(table(100, 32, padding_idx=7), nn.Linear(32, 4))
    p = di.init_(m, "olmo_mitchell")
    assert torch.all(m[0].weight[7] == 0) and m[0].weight[6].abs().sum() > 0
    assert "padding row 7" in rows(p)["0.weight"].note


def test_storage_tied_parameters_filled_once():
    m = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    m[1].weight = nn.Parameter(m[0].weight.data)
    p = di.init_(m, "he", seed=2)
    assert rows(p)["0.weight"].tied == ("1.weight",) and "1.weight" not in rows(p)
    assert m[0].weight.data_ptr() == m[1].weight.data_ptr()


def test_is_bias_name_covers_module_rnn_and_fused_biases():
    from depthinit.roles import is_bias_name

    assert all(map(is_bias_name, ["bias", "fc.bias", "attn.in_proj_bias", "rnn.bias_ih_l0", "lstm.bias_hh_l1"]))
    assert not any(map(is_bias_name, ["fc.weight", "bias_scale.weight", "biased.weight", "unbiased_norm.gain"]))
