"""Structure from the model's own computation: what one fake forward shows that names cannot."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import depthinit as di
from depthinit.structure import trace


class Unit(nn.Module):
    """A residual unit whose names no table knows, with a residual scalar named ``gamma``."""

    def __init__(self, d):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.up = nn.Linear(d, 4 * d)
        self.back = nn.Linear(4 * d, d)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x + self.gamma * self.back(F.relu(self.up(self.norm(x))))


class Net(nn.Module):
    def __init__(self, d=32):
        super().__init__()
        self.readout = nn.Linear(d, 10)  # registered first, used last
        self.stem = nn.Linear(16, d)
        self.units = nn.ModuleList(Unit(d) for _ in range(3))  # not a stack name

    def forward(self, x):
        h = self.stem(x)
        for u in self.units:
            h = u(h)
        return self.readout(h)


def rows(p):
    return {r.name: r for r in p}


def test_traced_roles_depths_and_head_where_names_say_nothing():
    x = torch.zeros(2, 16)
    r = rows(di.plan(Net(), "fixup", example=x))
    for i in range(3):
        assert (r[f"units.{i}.back.weight"].role, r[f"units.{i}.back.weight"].source) == ("mlp_out", "traced")
        assert r[f"units.{i}.gamma"].role == "residual_scale"
        assert (r[f"units.{i}.up.weight"].layer, r[f"units.{i}.up.weight"].n_layers) == (i + 1, 3)
    assert r["readout.weight"].role == "head" and r["stem.weight"].role != "head"
    zero = sorted(n for n, row in r.items() if n.endswith("weight") and row.distribution == "constant"
                  and row.mean == 0 and row.role != "bias")
    assert zero == ["readout.weight"] + [f"units.{i}.back.weight" for i in range(3)]
    assert r["units.0.up.weight"].std == pytest.approx(math.sqrt(2 / 32) * 3 ** -0.5)  # He · L^(-1/2), L = 3
    p = di.plan(Net(), "rezero", example=x)
    assert all(rows(p)[f"units.{i}.gamma"].mean == 0 for i in range(3))

    fallback = rows(di.plan(Net(), "fixup"))  # no input: module types and names only
    assert fallback["units.0.back.weight"].role == "other" and fallback["units.0.back.weight"].source == "module"


class InOut(nn.Module):
    """A weight stored [in, out] and used as x @ W (no module type says so)."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.w = nn.Parameter(torch.empty(n_in, n_out))

    def forward(self, x):
        return x @ self.w


class Bank(nn.Module):
    """Per-expert matrices [E, out, in], applied with bmm to per-expert token groups."""

    def __init__(self, e, n_in, n_out):
        super().__init__()
        self.bank = nn.Parameter(torch.empty(e, n_out, n_in))

    def forward(self, x):  # x: [E, tokens, in]
        return torch.bmm(x, self.bank.transpose(1, 2))


def test_traced_fans_of_any_layout():
    m = nn.Sequential(InOut(24, 40), nn.ReLU(), InOut(40, 8))
    r = rows(di.plan(m, "he", example=torch.zeros(3, 24)))
    assert (r["0.w"].fan_in, r["0.w"].fan_out, r["0.w"].source) == (24, 40, "traced")
    assert r["0.w"].std == pytest.approx(math.sqrt(2 / 24))
    assert rows(di.plan(m, "he"))["0.w"].fan_in == 40  # torch's [out, in] convention: wrong for this layout

    b = Bank(4, 24, 56)
    r = rows(di.plan(b, "he", example=torch.zeros(4, 5, 24)))["bank"]
    assert (r.fan_in, r.fan_out) == (24, 56)  # one expert's fans, not the whole bank's


def test_hf_gpt2_conv1d_traced():
    T = pytest.importorskip("transformers")
    T.logging.set_verbosity_error()
    m = T.GPT2LMHeadModel(T.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=64, n_positions=16,
                                       bos_token_id=0, eos_token_id=0))
    st = trace(m)  # HF's own input: input_ids built from the config
    assert st is not None and st.n_branches == 4
    c = st.params["transformer.h.0.mlp.c_fc.weight"]
    assert (c.fan_in, c.fan_out) == (32, 128)
    assert st.params["transformer.h.1.mlp.c_proj.weight"].residual_out
    assert not st.params["transformer.h.1.mlp.c_fc.weight"].residual_out  # gelu's x + 0.044715·x³ is no branch
    assert st.params["transformer.wte.weight"].head  # tied to lm_head


def test_trace_falls_back_without_input_or_on_data_dependent_ops():
    assert trace(nn.Linear(3, 3)) is None  # no example input

    class Routed(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            return self.lin(x[x.sum(-1) > 0])  # data-dependent shape

    assert trace(Routed(), torch.zeros(2, 4)) is None
    r = rows(di.plan(Routed(), "he", example=torch.zeros(2, 4)))
    assert r["lin.weight"].source == "module" and r["lin.weight"].fan_in == 4


def test_trace_allocates_nothing():
    with torch.device("meta"):
        m = Net()
    p = di.plan(m, "he", example=torch.zeros(2, 16))
    assert rows(p)["readout.weight"].role == "head" and all(prm.is_meta for prm in m.parameters())


def test_trace_runs_without_the_cyclic_collector_and_restores_it():
    """The trace keeps every object it makes alive, so collections during it only walk the heap: it pauses the
    collector, and leaves it as it found it (enabled or not, also when the forward fails)."""
    import gc

    seen = []

    class Probe(nn.Module):
        def __init__(self, fail: bool = False):
            super().__init__()
            self.lin, self.fail = nn.Linear(4, 4), fail

        def forward(self, x):
            seen.append(gc.isenabled())
            if self.fail:
                raise RuntimeError("no meta kernel")
            return self.lin(x)

    was = gc.isenabled()
    try:
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            assert trace(Probe(), torch.zeros(2, 4)) is not None
            assert trace(Probe(fail=True), torch.zeros(2, 4)) is None
            assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
    assert seen == [False] * 4
