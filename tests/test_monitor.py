"""VarianceMonitor: what it records (weights, grads, activations, Q/K/V, heads, update ratios), when, and
its lifetime (hooks, state_dict, second monitor, bad input).

Tolerances: the test models are tiny (every tensor under 32K elements), so ``depthinit.stats`` takes its
exact fp64 path and the expected values are computed here in fp64 NumPy from the same fp32 tensors:
``EXACT = 1e-9`` relative covers the different grouping of fp64 sums (n * eps64 for n < 1e5 terms, plus
the Chan merge of micro-batches). Counts are compared exactly. The ``norm`` update ratio compares two
fp32 norms: its absolute error is about ``2 * n * eps32 ~ 1e-6`` relative to the norm, hence ``NORM_ATOL``.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import depthinit as di
from depthinit import models
from depthinit.alerts import Alerts
from depthinit.monitor import Row, VarianceMonitor, short_name

EXACT = 1e-9
NORM_ATOL = 1e-5
VOCAB, BLOCK, EMBD, HEADS = 32, 8, 16, 2


def tiny_gpt2(n_layer: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = models.gpt2(n_layer=n_layer, n_embd=EMBD, n_head=HEADS, vocab=VOCAB, block=BLOCK)
    di.init_(m, "gpt2", seed=seed)
    return m


def batch(step: int, micro: int = 0, bsz: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 * step + micro)
    return torch.randint(0, VOCAB, (bsz, BLOCK + 1), generator=g)


def lm_loss(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())


def train(model, mon, steps: int, lr: float = 1e-2, start: int = 0, opt=None, accum: int = 1, hook=None):
    """AdamW steps on fixed per-step batches; ``mon.step()`` after ``opt.step()``, before ``zero_grad``."""
    opt = opt or torch.optim.AdamW(model.parameters(), lr=lr)
    for s in range(start, start + steps):
        for k in range(accum):
            (lm_loss(model, batch(s, k)) / accum).backward()
        opt.step()
        if hook is not None:
            hook(s)
        if mon is not None:
            mon.step()
        opt.zero_grad(set_to_none=True)
    return opt


def ref_stats(t: torch.Tensor) -> dict:
    x = t.detach().double().reshape(-1).numpy()
    fin = x[np.isfinite(x)]
    return {"count": fin.size, "mean": fin.mean(), "var": fin.var(), "min": fin.min(), "max": fin.max(),
            "absmax": np.abs(fin).max(), "l2": np.sqrt((fin**2).sum()), "nonfinite": x.size - fin.size,
            "zeros": int((x == 0).sum())}


def assert_record(rec: dict, ref: dict, rtol: float = EXACT) -> None:
    for k, v in ref.items():
        if k in ("count", "nonfinite", "zeros"):
            assert rec[k] == v, (rec["name"], k, rec[k], v)
        else:
            assert rec[k] == pytest.approx(v, rel=rtol, abs=1e-30), (rec["name"], k, rec[k], v)


def find(history, step, kind, name) -> dict:
    hits = [r for r in history if r["step"] == step and r["kind"] == kind and r["name"] == name]
    assert len(hits) == 1, (step, kind, name, len(hits))
    return hits[0]


# -- what is recorded ------------------------------------------------------------------------------------------


def test_weights_grads_acts_and_qkv_rows_match_fp64_reference():
    model = tiny_gpt2()
    mon = VarianceMonitor(model, every=1, alerts=None)
    seen = {}

    def capture(step):  # what the monitor should have measured at this step, before zero_grad
        if step == 1:
            seen["w"] = {n: p.detach().clone() for n, p in model.named_parameters()}
            seen["g"] = {n: p.grad.clone() for n, p in model.named_parameters()}

    outs = {}
    h = model.transformer.h[1].attn.c_attn.register_forward_hook(lambda m, a, o: outs.__setitem__("qkv", o.detach()))
    h2 = model.transformer.h[0].mlp.c_fc.register_forward_hook(lambda m, a, o: outs.__setitem__("fc", o.detach()))
    train(model, mon, 2, hook=capture)
    h.remove(), h2.remove()
    mon.close()
    hist = mon.history
    C = EMBD
    w = seen["w"]["transformer.h.1.attn.c_attn.weight"]
    g = seen["g"]["transformer.h.1.attn.c_attn.weight"]
    b = seen["w"]["transformer.h.1.attn.c_attn.bias"]
    for j, part in enumerate("qkv"):
        assert_record(find(hist, 1, "weight", f"h.1.attn.{part}"), ref_stats(w[j * C:(j + 1) * C]))
        assert_record(find(hist, 1, "grad", f"h.1.attn.{part}"), ref_stats(g[j * C:(j + 1) * C]))
        assert_record(find(hist, 1, "weight", f"h.1.attn.{part}.bias"), ref_stats(b[j * C:(j + 1) * C]))
        assert_record(find(hist, 1, "act", f"h.1.attn.{part}"), ref_stats(outs["qkv"][..., j * C:(j + 1) * C]))
        assert find(hist, 1, "act", f"h.1.attn.{part}")["qkv"] == part
    assert_record(find(hist, 1, "act", "h.0.mlp.c_fc"), ref_stats(outs["fc"]))
    assert_record(find(hist, 1, "weight", "h.0.ln_1"), ref_stats(seen["w"]["transformer.h.0.ln_1.weight"]))
    rec = find(hist, 1, "weight", "h.0.mlp.c_fc")
    assert rec["layer"] == 1 and find(hist, 1, "weight", "h.1.mlp.c_fc")["layer"] == 2
    assert rec["std"] == pytest.approx(math.sqrt(rec["var"])) and rec["rms"] == pytest.approx(rec["l2"] / math.sqrt(
        rec["count"]))
    # no fused c_attn row is left, and the tied lm_head weight is the wte row (one row)
    names = {r["name"] for r in hist if r["kind"] == "weight"}
    assert not any("c_attn" in n for n in names)
    assert "wte" in names and "lm_head" not in names
    assert any(r["kind"] == "act" and r["name"] == "lm_head" for r in hist)


def test_monitored_steps_every_and_eval_forward_not_recorded():
    model = tiny_gpt2()
    mon = VarianceMonitor(model, every=3, alerts=None)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    for s in range(7):
        lm_loss(model, batch(s)).backward()
        opt.step()
        if s == 3:  # an eval pass on a monitored step (step 3) must not count
            model.eval()
            with torch.no_grad():
                model(batch(99, bsz=16)[:, :-1])
            model.train()
        with mon.paused():
            model(batch(98)[:, :-1])  # paused: not counted either
        mon.step()
        opt.zero_grad()
    mon.close()
    steps = sorted({r["step"] for r in mon.history})
    assert steps == [0, 3, 6]
    act = find(mon.history, 3, "act", "h.0.mlp.c_fc")
    assert act["count"] == 4 * BLOCK * 4 * EMBD  # one training batch only (bsz 4), not the eval / paused ones


def test_gradient_accumulation_counts_optimizer_steps_and_merges_micro_batches():
    model = tiny_gpt2()
    mon = VarianceMonitor(model, every=2, alerts=None)
    outs = []
    h = model.transformer.h[0].mlp.c_fc.register_forward_hook(lambda m, a, o: outs.append(o.detach().clone()))
    train(model, mon, 3, accum=3)
    h.remove()
    mon.close()
    assert sorted({r["step"] for r in mon.history}) == [0, 2]  # 3 optimizer steps = 9 backward calls
    # step 2's activation row merges its 3 micro-batches (outs[6:9])
    assert_record(find(mon.history, 2, "act", "h.0.mlp.c_fc"), ref_stats(torch.cat(outs[6:9])))


def test_a_rows_first_figures_are_the_kernels_and_a_module_called_twice_in_a_forward_merges():
    """The first figures of a row in a step are the statistics kernel's own row (copied, bit for bit); a module
    called twice in one forward (a shared layer) gives one row of both outputs (merged, against fp64)."""
    g = torch.Generator().manual_seed(3)
    once = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
    shared = nn.Linear(16, 16)
    twice = nn.Sequential(shared, nn.Tanh(), shared)
    x = torch.randn(64, 16, generator=g)
    for model, calls in ((once, 1), (twice, 2)):
        outs: list[torch.Tensor] = []
        keep = outs.append
        h = (model[0] if calls == 1 else shared).register_forward_hook(lambda m, a, o, keep=keep: keep(o.detach()))
        mon = VarianceMonitor(model, every=1, alerts=None, grads=False, update=None)
        model(x).square().mean().backward()
        mon.step()
        h.remove()
        mon.close()
        rec = find(mon.history, 0, "act", "0")
        assert len(outs) == calls and rec["count"] == calls * outs[0].numel()
        if calls == 1:
            want = di.layer_stats([outs[0]])[0]
            assert {k: rec[k] for k in ("mean", "var", "min", "max", "l2")} == {k: want[k] for k in
                                                                                ("mean", "var", "min", "max", "l2")}
        else:
            assert_record(rec, ref_stats(torch.cat(outs)), rtol=1e-12)


def test_update_ratio_exact_and_norm_change():
    for mode in ("exact", "norm"):
        model = tiny_gpt2()
        mon = VarianceMonitor(model, every=3, update=mode, alerts=None)
        snaps = {}

        def snap(s, snaps=snaps, model=model):
            if s in (2, 3):
                snaps[s] = model.transformer.h[0].mlp.c_fc.weight.detach().clone().double()

        train(model, mon, 4, hook=snap)
        mon.close()
        recs = [r for r in mon.history if r["kind"] == "update"]
        assert {r["step"] for r in recs} == {3}  # step 0 has no previous step
        rec = find(mon.history, 3, "update", "h.0.mlp.c_fc")
        w1, w0 = snaps[3], snaps[2]
        if mode == "exact":
            assert rec["update_ratio"] == pytest.approx(float((w1 - w0).norm() / w1.norm()), rel=1e-6)
            assert rec["delta_l2"] == pytest.approx(float((w1 - w0).norm()), rel=1e-6)
            assert "norm_change_ratio" not in rec
        else:
            expect = float(abs(w1.norm() - w0.norm()) / w1.norm())
            assert rec["norm_change_ratio"] == pytest.approx(expect, abs=NORM_ATOL)
            assert rec["norm_change_ratio"] <= float((w1 - w0).norm() / w1.norm()) + NORM_ATOL  # a lower bound
            assert "update_ratio" not in rec


def test_per_head_rows():
    model = tiny_gpt2()
    mon = VarianceMonitor(model, every=1, per_head=True, alerts=None)
    train(model, mon, 1)
    mon.close()
    D = EMBD // HEADS
    w = model.transformer.h[0].attn.c_attn.weight  # after the step: record of step 0 is after its update
    heads = [r for r in mon.history if r["kind"] == "weight" and r.get("head") is not None and r["name"].startswith(
        "h.0.attn.k.head") and not r["name"].endswith(".bias")]
    assert [r["head"] for r in heads] == list(range(HEADS))
    assert_record(heads[1], ref_stats(w[EMBD + D:EMBD + 2 * D]))
    acts = [r for r in mon.history if r["kind"] == "act" and r.get("head") is not None]
    assert len(acts) == 2 * 3 * HEADS and all(r["count"] == 4 * BLOCK * D for r in acts)


class SepAttn(nn.Module):
    def __init__(self, d=8, kv=4):
        super().__init__()
        self.num_heads = 2
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(d, d), nn.Linear(d, kv), nn.Linear(d, kv)
        self.o_proj = nn.Linear(d, d)

    def forward(self, x):
        return self.o_proj(self.q_proj(x) + self.k_proj(x).repeat(1, 2) * self.v_proj(x).repeat(1, 2))


class GQA(nn.Module):
    def __init__(self, d=8, kv=4):
        super().__init__()
        self.n_head = 2
        self.wqkv = nn.Linear(d, d + 2 * kv)

    def forward(self, x):
        q, k, v = self.wqkv(x).split([8, 4, 4], -1)
        return q + (k * v).repeat(1, 2)


def test_separate_projections_gqa_sizes_and_bad_qkv_specs():
    torch.manual_seed(0)
    model = nn.Sequential(SepAttn(), GQA())
    mon = VarianceMonitor(model, every=1, qkv_modules={"1.wqkv": (8, 4, 4)}, per_head=True, alerts=None)
    model(torch.randn(5, 8)).sum().backward()
    mon.step()
    mon.close()
    h = mon.history
    assert find(h, 0, "weight", "0.q_proj")["qkv"] == "q" and find(h, 0, "act", "0.v_proj")["qkv"] == "v"
    # head size 4 from q (8 outputs / 2 heads): k and v (4 outputs) have one head (grouped-query attention)
    assert find(h, 0, "act", "0.k_proj.head0")["count"] == 5 * 4
    assert not [r for r in h if r["name"].startswith("0.k_proj.head1")]
    assert_record(find(h, 0, "weight", "0.q_proj.head1.bias"), ref_stats(model[0].q_proj.bias[4:]))
    assert find(h, 0, "weight", "0.o_proj").get("qkv") is None
    assert_record(find(h, 0, "weight", "1.k"), ref_stats(model[1].wqkv.weight[8:12]))
    assert_record(find(h, 0, "grad", "1.v.bias"), ref_stats(model[1].wqkv.bias.grad[12:16]))
    with pytest.raises(ValueError, match="do not add up"):
        VarianceMonitor(nn.Sequential(GQA()), qkv_modules={"0.wqkv": (8, 8, 8)})
    with pytest.raises(ValueError, match="match no module"):
        VarianceMonitor(nn.Sequential(GQA()), qkv_modules=["nope"])
    with pytest.raises(ValueError, match="3 positive sizes"):
        VarianceMonitor(nn.Sequential(GQA()), qkv_modules={"0.wqkv": (8, 8)})


def test_bf16_weights_and_autocast():
    model = tiny_gpt2().to(torch.bfloat16)
    mon = VarianceMonitor(model, every=1, alerts=None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        train(model, mon, 2, lr=1e-3)
    mon.close()
    rec = find(mon.history, 1, "weight", "h.1.attn.v")
    assert_record(rec, ref_stats(model.transformer.h[1].attn.c_attn.weight[2 * EMBD:]))  # exact on bf16 values
    acts = [r for r in mon.history if r["kind"] == "act"]
    assert acts and all(r["nonfinite"] == 0 and math.isfinite(r["std"]) for r in acts)
    upd = [r for r in mon.history if r["kind"] == "update"]
    assert upd and all(math.isfinite(r["norm_change_ratio"]) for r in upd)


def test_include_exclude_and_short_names():
    model = tiny_gpt2()
    mon = VarianceMonitor(model, every=1, include=r"\.mlp\.", exclude=r"c_proj", alerts=None)
    train(model, mon, 1)
    mon.close()
    assert {r["name"] for r in mon.history if r["kind"] == "act"} == {"h.0.mlp.c_fc", "h.1.mlp.c_fc"}
    blocks = VarianceMonitor(model, every=1, include=r"\.h\.\d+$", weights=False, grads=False, alerts=None)
    train(model, blocks, 1)  # the residual stream after each block: modules without parameters of their own
    blocks.close()
    assert [(r["name"], r["layer"]) for r in blocks.history] == [("h.0", 1), ("h.1", 2)]
    assert short_name("_orig_mod.module.transformer.h.0.attn") == "h.0.attn"
    assert Row("act", "x", None) == Row("act", "x", None)


# -- lifetime --------------------------------------------------------------------------------------------------


def all_hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_close_removes_hooks_also_after_an_exception_in_a_hook(monkeypatch):
    model = tiny_gpt2()
    assert all_hooks(model) == 0
    import depthinit.stats

    def boom(*a, **k):
        raise RuntimeError("boom inside the hook")

    with pytest.raises(RuntimeError, match="boom inside the hook"):
        with VarianceMonitor(model, every=1, alerts=None) as mon:
            assert all_hooks(model) > 0
            monkeypatch.setattr(depthinit.stats, "tensor_stats", boom)
            model(batch(0)[:, :-1])
    monkeypatch.undo()
    assert mon._closed and all_hooks(model) == 0
    model(batch(0)[:, :-1])  # the model runs normally afterwards
    with pytest.raises(RuntimeError, match="after close"):
        mon.step()
    mon.close()  # idempotent


def test_unmonitored_eager_forwards_run_without_the_modules_hooks():
    """A module with a forward hook takes the slow path of ``nn.Module.__call__``: the idle steps' forwards go
    without the sites' hooks (only the model's own: a forward pre-hook and a forward hook), the monitored ones with
    all of them."""
    model = tiny_gpt2()
    mon = VarianceMonitor(model, every=3, alerts=None)
    seen = []
    model.register_forward_pre_hook(lambda m, a: seen.append(all_hooks(model)))  # after the monitor's own
    train(model, mon, 7)
    mon.close()
    sites = len(mon._capture.sites)
    assert sites > 4
    assert seen == [1 + sites if s % 3 == 0 else 1 for s in range(7)]  # forward hooks (pre-hooks aside)
    assert {r["step"] for r in mon.history if r["kind"] == "act"} == {0, 3, 6}


def test_activation_rows_are_the_modules_own_outputs_whatever_other_hooks_return():
    """The sites' hooks go first among a module's forward hooks, also when they come back after idle steps:
    another hook that returns a new output changes neither the records nor what they measure."""
    def rows(double: bool):
        model = tiny_gpt2()
        mon = VarianceMonitor(model, every=2, alerts=None)
        if double:  # registered after the monitor: last at step 0, before the re-attached hooks at step 2
            model.transformer.h[0].mlp.c_fc.register_forward_hook(lambda m, a, out: out * 2)
        train(model, mon, 3)
        mon.close()
        return [(r["step"], r["mean"], r["std"]) for r in mon.history
                if r["kind"] == "act" and r["name"] == "h.0.mlp.c_fc"]

    plain, doubled = rows(False), rows(True)
    assert [s for s, *_ in doubled] == [0, 2]
    assert doubled[0] == plain[0]  # step 0: the same weights, the module's own output
    # at step 2 the weights differ (the doubled output trained the model differently); the figures must still
    # be the module's own output, not twice it: its std is close to the plain run's, not twice it
    assert doubled[1][2] == pytest.approx(plain[1][2], rel=0.2)


def test_second_monitor_closes_the_first_no_stacked_hooks():
    model = tiny_gpt2()
    first = VarianceMonitor(model, every=1, alerts=None)
    n = all_hooks(model)
    with pytest.warns(UserWarning, match="already has an open monitor"):
        second = VarianceMonitor(model, every=1, alerts=None)
    assert first._closed and all_hooks(model) == n
    second.close()
    assert all_hooks(model) == 0


@pytest.mark.parametrize("update", ["exact", "norm"])
def test_state_dict_round_trip_continues_history_and_alerts(update):
    full_model = tiny_gpt2()
    full = VarianceMonitor(full_model, every=2, update=update)
    train(full_model, full, 8)
    full.close()

    model = tiny_gpt2()
    mon = VarianceMonitor(model, every=2, update=update)
    opt = train(model, mon, 6)  # stops after step 5: the reference for step 6's update ratio is pending
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "mon": mon.state_dict()}, buf)
    mon.close()
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=False)
    model2 = tiny_gpt2(seed=1)
    model2.load_state_dict(ckpt["model"])
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-2)
    opt2.load_state_dict(ckpt["opt"])
    mon2 = VarianceMonitor(model2, every=2, update=update)
    mon2.load_state_dict(ckpt["mon"])
    assert mon2.global_step == 6
    train(model2, mon2, 2, start=6, opt=opt2)
    mon2.close()
    a, b = full.history, mon2.history
    assert any(r["kind"] == "update" and r["step"] == 6 for r in b)
    assert [(r["step"], r["kind"], r["name"]) for r in a] == [(r["step"], r["kind"], r["name"]) for r in b]
    for ra, rb in zip(a, b):
        for k, v in ra.items():
            if isinstance(v, float):
                assert rb[k] == pytest.approx(v, rel=1e-12, nan_ok=True), (ra["name"], k)
    assert [e.to_dict() for e in full.events] == [e.to_dict() for e in mon2.events]
    assert full.alerts.state_dict() == mon2.alerts.state_dict()
    other = VarianceMonitor(tiny_gpt2(n_layer=3), every=2)
    with pytest.raises(ValueError, match="other rows"):
        other.load_state_dict(ckpt["mon"])
    other.close()


def test_history_bound_and_repr():
    model = tiny_gpt2()
    mon = VarianceMonitor(model, every=1, history=2, alerts=None)
    train(model, mon, 4)
    assert sorted({r["step"] for r in mon.history}) == [2, 3]
    assert "every=1" in repr(mon) and "open" in repr(mon)
    mon.close()


def test_bad_input_is_rejected_clearly():
    model = tiny_gpt2()
    for kw, msg in [({"every": 0}, "every"), ({"drain": -1}, "drain"), ({"update": "delta"}, "update"),
                    ({"include": "("}, "bad include regex"), ({"include": "no_such_module"}, "no module selected"),
                    ({"act_reduce": "x"}, "act_reduce"), ({"history": 0}, "history"), ({"n_head": 0}, "n_head")]:
        with pytest.raises(ValueError, match=msg):
            VarianceMonitor(model, **kw)
    with pytest.raises(TypeError, match="nn.Module"):
        VarianceMonitor([torch.zeros(3)])
    with pytest.raises(TypeError, match="Sink"):
        VarianceMonitor(model, sinks=[print])
    with pytest.raises(ValueError, match="per_head=True"):
        VarianceMonitor(nn.Sequential(nn.Linear(4, 6)), qkv_modules=["0"], per_head=True)
    assert all_hooks(model) == 0


def test_act_reduce_module_mode_matches_forward_mode():
    hist = {}
    for mode in ("forward", "module"):
        model = tiny_gpt2()
        mon = VarianceMonitor(model, every=1, act_reduce=mode, alerts=None)
        train(model, mon, 2)
        mon.close()
        hist[mode] = [r for r in mon.history if r["kind"] == "act"]
    assert len(hist["forward"]) == len(hist["module"]) > 0
    for a, b in zip(hist["forward"], hist["module"]):
        assert a["name"] == b["name"] and a["std"] == pytest.approx(b["std"], rel=EXACT)


# -- alerts from a real run --------------------------------------------------------------------------------------


def test_alerts_fire_on_injected_nan_with_layer_statistic_and_first_step():
    model = tiny_gpt2()
    got = []
    mon = VarianceMonitor(model, every=1, alerts=Alerts(callback=got.append))
    train(model, mon, 2)

    def inject(s):  # after the optimizer step of step 2, before mon.step(): only this weight is bad
        if s == 2:
            with torch.no_grad():
                model.transformer.h[1].mlp.c_fc.weight[0, 0] = float("nan")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(model, mon, 2, start=2, hook=inject)  # step 3's forward spreads the NaN everywhere
    mon.close()
    nf = [e for e in got if e.kind == "nonfinite" and e.source == "weight"]
    assert nf and nf[0].layer == "h.1.mlp.c_fc" and nf[0].step == 2 and nf[0].statistic == "nonfinite"
    assert nf[0].value == 1.0 and [e.layer for e in nf if e.step == 2] == ["h.1.mlp.c_fc"]
    assert len([e for e in nf if e.layer == "h.1.mlp.c_fc"]) == 1  # fired once, not at every step
    assert got == mon.events


def test_alerts_fire_on_a_diverging_run():
    torch.manual_seed(0)
    model = models.mlp(depth=6, width=16, in_features=8, out_features=1)
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    got = []
    alerts = Alerts(std_band={"act": (1e-6, 1e3), "grad": (None, 1e3)}, depth_ratio=None, callback=got.append)
    mon = VarianceMonitor(model, every=1, alerts=alerts)
    opt = torch.optim.SGD(model.parameters(), lr=3.0)  # blows up within a few steps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(12):
            F.mse_loss(model(x), y).backward()
            opt.step()
            mon.step()
            opt.zero_grad()
            if got:  # the callback is where a trainer would stop or checkpoint
                break
    mon.close()
    assert got and all(e.kind in ("exploding", "nonfinite") for e in got), [e.message for e in got]
    assert {e.source for e in got} >= {"grad"} and got[0].step > 0  # not at init: when the run diverges
    assert all(e.value > e.threshold for e in got if e.kind == "exploding")
