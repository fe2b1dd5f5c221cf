"""The one table of fused q/k/v layouts: plan roles and monitor rows agree; unknown layouts stay one row."""

import warnings

import pytest
import torch
from torch import nn

import depthinit as di
from depthinit.layouts import fused_layout


class Attn(nn.Module):
    def __init__(self, name, d=32, n_heads=4, n_kv_heads=2, head_dim=8, out=None):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.add_module(name, nn.Linear(d, out or (n_heads + 2 * n_kv_heads) * head_dim))


def test_gqa_contiguous_and_interleaved_kv_groups():
    a = Attn("w_qkv")  # OLMo-core: [q 32 | k 16 | v 16]
    lay = fused_layout(a, "w_qkv", a.w_qkv, 64)
    assert lay.kind == "gqa" and lay.sizes == (32, 16, 16)
    t = Attn("wqkv")  # torchtitan: per KV group [q q | k | v], head_dim 8
    lay = fused_layout(t, "wqkv", t.wqkv, 64)
    assert lay.kind == "kv_groups" and lay.sizes is None
    assert dict(lay.parts)["q"] == ((0, 16), (32, 48)) and dict(lay.parts)["k"] == ((16, 24), (48, 56))
    assert dict(lay.parts)["v"] == ((24, 32), (56, 64))


def test_torchtitan_wqkv_interleaving_matches_its_forward():
    """The table's kv_groups ranges are exactly what torchtitan's fused projection feeds into q, k and v."""
    n_kv, per, hd = 2, 2, 8
    out = torch.arange((per + 2) * n_kv * hd).float()  # output feature indices
    qkv = out.view(1, 1, n_kv, per + 2, hd)  # torchtitan: view(bs, seqlen, -1, r_dim, head_dim)
    xq, xk, xv = torch.split(qkv, [per, 1, 1], dim=-2)
    lay = fused_layout(Attn("wqkv"), "wqkv", Attn("wqkv").wqkv, 64)
    for part, x in zip("qkv", (xq, xk, xv)):
        idx = torch.cat([torch.arange(a, b) for a, b in dict(lay.parts)[part]]).float()
        assert torch.equal(torch.sort(x.flatten()).values, idx)


def test_gpt2_cross_attention_is_k_v_only_and_monitor_keeps_one_row():
    T = pytest.importorskip("transformers")
    T.logging.set_verbosity_error()
    m = T.GPT2LMHeadModel(T.GPT2Config(n_layer=1, n_embd=48, n_head=4, vocab_size=64, n_positions=16,
                                       add_cross_attention=True, bos_token_id=0, eos_token_id=0))
    lay = fused_layout(m, "transformer.h.0.crossattention.c_attn", m.transformer.h[0].crossattention.c_attn, 96)
    assert lay.kind == "kv" and lay.names == ("k", "v") and lay.sizes == (48, 48)  # 96 = 3 x 32: not thirds
    with pytest.warns(UserWarning, match="crossattention.c_attn: kv layout"):
        mon = di.VarianceMonitor(m, every=1, grads=False, activations=False, update=None)
    names = [r.name for r in mon.rows]
    assert "h.0.attn.q" in names  # the self-attention c_attn: thirds
    assert "h.0.crossattention.c_attn" in names  # one row, never wrong thirds
    assert not any(f"h.0.crossattention.{x}" in names for x in "qkv")


def test_unknown_layout_warns_and_stays_one_row():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.wqkv = nn.Linear(16, 40)  # torchtitan name, no head counts anywhere

    lay = fused_layout(Odd(), "wqkv", Odd().wqkv, 40)
    assert lay.kind == "unknown" and "number of heads is unknown" in lay.warning
    with pytest.warns(UserWarning, match="layout unknown"):
        mon = di.VarianceMonitor(Odd(), every=1, grads=False, activations=False, update=None)
    assert [r.name for r in mon.rows if r.kind == "weight"] == ["wqkv", "wqkv.bias"]


def test_plain_qkv_still_split_in_thirds():
    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(16, 48)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mon = di.VarianceMonitor(Plain(), every=1, grads=False, activations=False, update=None)
    assert [r.name for r in mon.rows if r.kind == "weight"][:3] == ["q", "k", "v"]
    assert di.plan(Plain(), "he")["qkv.weight"].role == "attn_qkv"


def test_fused_names_from_the_one_table_in_plan_roles():
    for name in ("query_key_value", "linear_qkv", "att_proj", "w_qkv", "wqkv"):
        m = Attn(name)
        assert di.plan(m, "he")[f"{name}.weight"].role == "attn_qkv", name


def test_monitor_interleaved_wqkv_warns_instead_of_wrong_thirds():
    m = Attn("wqkv", d=32, n_heads=4, n_kv_heads=2, head_dim=8)  # 64 outputs: thirds would not even divide
    m2 = Attn("wqkv", d=48, n_heads=4, n_kv_heads=4, head_dim=12)  # 144 = 3 x 48: thirds would look plausible
    for model in (m, m2):
        with pytest.warns(UserWarning, match="wqkv: kv_groups layout.*interleaved, so no contiguous split"):
            mon = di.VarianceMonitor(model, every=1, grads=False, activations=False, update=None)
        assert [r.name for r in mon.rows if r.kind == "weight"] == ["wqkv", "wqkv.bias"]


def test_monitor_tags_t5_separate_projections():
    T = pytest.importorskip("transformers")
    T.logging.set_verbosity_error()
    m = T.T5EncoderModel(T.T5Config(num_layers=1, d_model=32, d_ff=64, d_kv=8, num_heads=4, vocab_size=64))
    mon = di.VarianceMonitor(m, every=1, grads=False, activations=False, update=None)
    tags = {r.name.rsplit(".", 1)[-1]: r.qkv for r in mon.rows if r.kind == "weight" and "SelfAttention" in r.name}
    assert (tags["q"], tags["k"], tags["v"], tags["o"]) == ("q", "k", "v", None)
