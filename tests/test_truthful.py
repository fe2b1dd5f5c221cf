"""The probe, the depth alerts and the monitor on real models: verdicts that mean what they say, any dtype,
parameters that change after the monitor exists, any hook output shape, sinks that cannot corrupt each other,
object outputs, tied weights. One test per reported failure (each failed before the fix).

Models: the built-in GPT-2-style model, HF ``GPT2LMHeadModel`` built from a tiny ``GPT2Config`` (no
download), and the 54-layer ReLU MLP. Tolerances as in test_monitor.py: tiny tensors take the exact fp64
statistics path, so values are compared with ``EXACT = 1e-9`` relative to fp64 NumPy on the same tensors.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from depthinit.alerts import Alerts
from depthinit.applications.models import gpt2, mlp
from depthinit.calibrate import calibrate
from depthinit.monitor import VarianceMonitor
from depthinit.outputs import first_floating, primary_output, residual_blocks
from depthinit.probe import probe
from depthinit.sinks import JSONL, Sink, read_jsonl

transformers = pytest.importorskip("transformers")

EXACT = 1e-9
pytestmark = pytest.mark.usefixtures("one_thread")


def hf_gpt2(n_layer=3, n_embd=32, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=4, vocab_size=64, n_positions=16,
                                  bos_token_id=0, eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return transformers.GPT2LMHeadModel(cfg)  # GPT-2's own init (_init_weights), lm_head tied to wte


def tokens(seed=0, bsz=8, t=16, vocab=64):
    return torch.randint(0, vocab, (bsz, t), generator=torch.Generator().manual_seed(seed))


def var64(t: torch.Tensor) -> float:
    return float(np.var(t.detach().double().numpy()))


def run_steps(model, mon, x, steps, loss=lambda out: out.float().pow(2).mean(), lr=1e-3):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        loss(model(x)).backward()
        opt.step()
        mon.step()
        opt.zero_grad()


# ------------------------------------------------------------------------------- 1. verdicts that mean it


def test_probe_follows_the_residual_stream_of_gpt2_models():
    # before: gpt2 "vanishing", torchtitan_depth "fwd exploding+vanishing, bwd vanishing" (the first-to-last
    # layer ratio compared small residual-branch outputs with lm_head)
    m = gpt2(n_layer=4, n_embd=64, n_head=4, vocab=100, block=32)
    x = torch.randint(0, 100, (16, 32), generator=torch.Generator().manual_seed(1))
    rep = probe(m, x, schemes=["gpt2", "torchtitan_depth"])
    assert rep.verdicts == {"gpt2": "healthy", "torchtitan_depth": "healthy"}
    for r in rep:
        assert r.stream == "residual"
        assert [x.name for x in r.layers] == [f"transformer.h.{i}" for i in range(4)]
    assert "residual stream" in rep.table() and "theory" not in rep.summary()


def test_probe_of_hf_gpt2_with_its_own_init_is_healthy_and_measures_block_outputs():
    m = hf_gpt2(n_layer=4)
    x = tokens()
    rep = probe(m, x)  # GPT2LMHeadModel returns a ModelOutput: the standard-normal backward starts at .logits
    r = rep.results[0]
    assert r.verdict == "healthy" and r.stream == "residual"
    # the row of block 2 is the variance of that block's output (the residual stream), from a plain hook
    seen = {}
    h = m.transformer.h[1].register_forward_hook(lambda mod, a, out: seen.setdefault("o", first_floating(out)))
    with torch.no_grad():
        m(x)
    h.remove()
    assert r.layers[1].fwd == pytest.approx(var64(seen["o"]), rel=1e-6)


def test_probe_of_the_54_layer_relu_mlp_names_xavier_vanishing_and_he_healthy():
    m = mlp(54, 128)
    x = torch.randn(128, 128, generator=torch.Generator().manual_seed(0))
    rep = probe(m, x, schemes=["he", "xavier"])
    assert rep.verdicts == {"he": "healthy", "xavier": "vanishing"}
    assert rep["xavier"].stream == "layers" and rep["xavier"].backward_gain < 1e-10  # shrinks toward the input


def test_depth_alert_names_a_gradient_that_shrinks_toward_the_input_vanishing():
    # before: "grad variance grows 2.14e+15x from layer 1 to layer 54 ... exploding"
    recs = [{"kind": "grad", "name": f"{i}", "layer": i, "count": 10, "var": 4.0 ** (i - 10), "std": 1.0}
            for i in range(1, 11)]
    ev = Alerts(depth_ratio=100.0, std_band={"grad": None}, spike_stats=()).check(0, recs)
    assert [(e.kind, e.source) for e in ev] == [("vanishing", "grad")]
    assert ev[0].value == pytest.approx(4.0 ** -9) and "toward the input" in ev[0].message
    acts = [dict(r, kind="act") for r in recs]  # activations growing with depth: exploding, forward
    ev = Alerts(depth_ratio=100.0, std_band={"act": None}, spike_stats=()).check(0, acts)
    assert [(e.kind, e.source) for e in ev] == [("exploding", "act")]


def test_monitor_records_the_residual_stream_and_its_gradient_and_alerts_follow_it():
    m = hf_gpt2(n_layer=3)
    x = tokens()
    mon = VarianceMonitor(m, every=1, update=None)
    assert residual_blocks(m) == [f"transformer.h.{i}" for i in range(3)]
    outs, grads = {}, {}

    def keep(i):
        def hook(mod, a, out):
            t = first_floating(out)
            outs[i] = t.detach().clone()
            t.register_hook(lambda g: grads.__setitem__(i, g.detach().clone()))
        return hook

    hs = [m.transformer.h[i].register_forward_hook(keep(i)) for i in range(3)]
    loss = m(x, labels=x).loss  # a ModelOutput with .loss
    loss.backward()
    mon.step()
    for h in hs:
        h.remove()
    mon.close()
    stream = {(r["kind"], r["name"]): r for r in mon.history if r.get("stream")}
    assert set(stream) == {(k, f"h.{i}") for k in ("act", "grad") for i in range(3)}
    for i in range(3):
        assert stream[("act", f"h.{i}")]["var"] == pytest.approx(var64(outs[i]), rel=EXACT)
        assert stream[("grad", f"h.{i}")]["var"] == pytest.approx(var64(grads[i]), rel=EXACT)
        assert stream[("act", f"h.{i}")]["layer"] == i + 1
    # GPT-2's own init: the residual stream is healthy, no depth alert (its branch outputs alone would differ)
    assert not [e for e in mon.events if e.layer == "depth"]
    # a stream whose gradient shrinks 1e6x toward the input: the depth alert says vanishing, on the stream rows
    recs = [dict(r) for r in mon.history if r["kind"] == "grad"]
    for r in recs:
        if r.get("stream"):
            r["var"] = 1e-3 ** (3 - r["layer"])
    ev = Alerts(std_band={"grad": None}, spike_stats=(), depth_ratio=100.0).check(1, recs)
    assert [(e.kind, e.source) for e in ev] == [("vanishing", "grad")] and "residual stream" in ev[0].message


# ------------------------------------------------------------------------------- 2. monitor robustness


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_monitor_measures_fp64_fp16_bf16_models(dtype):
    # before: fp64 crashed at the first update-ratio step (torch._foreach_norm(dtype=float32))
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)).to(dtype)
    x = torch.randn(8, 16, dtype=dtype)
    mon = VarianceMonitor(m, every=2)
    run_steps(m, mon, x, 5, lr=0.5)  # updates above bf16's resolution (2**-8 of a weight)
    mon.close()
    hist = mon.history
    w = [r for r in hist if r["kind"] == "weight" and r["name"] == "0" and r["step"] == 4][0]
    assert w["var"] == pytest.approx(var64(m[0].weight), rel=EXACT)
    upd = [r for r in hist if r["kind"] == "update" and r["name"] == "0"]
    assert [r["step"] for r in upd] == [2, 4] and all(r["norm_change_ratio"] > 0 for r in upd)


def test_monitor_measures_fp8_parameters_after_upcast():
    # before: TypeError from the statistics kernel
    m = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    w8 = m[0].weight.data.to(torch.float8_e4m3fn)
    m[0].weight = nn.Parameter(w8, requires_grad=False)
    mon = VarianceMonitor(m, every=1, activations=False)
    mon.step()
    mon.close()
    w = [r for r in mon.history if r["kind"] == "weight" and r["name"] == "0"][0]
    assert w["var"] == pytest.approx(var64(w8.float()), rel=EXACT) and w["count"] == 256


def test_monitor_rescans_parameters_removed_added_or_reparametrized():
    # before: IndexError: index_copy_() after a parameter was removed or re-parametrized
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    x = torch.randn(4, 8)
    mon = VarianceMonitor(m, every=2)
    run_steps(m, mon, x, 2)
    torch.nn.utils.parametrize.register_parametrization(m[0], "weight", nn.Identity())
    with pytest.warns(UserWarning, match=r"parameters changed at step 2 .*added: 0\.parametrizations\.weight\."
                                         r"original.*removed: 0\.weight"):
        run_steps(m, mon, x, 2)
    del m[2].bias
    m[2].register_parameter("bias", None)
    m[2].scale = nn.Parameter(torch.full((4,), 2.0))  # added
    with pytest.warns(UserWarning, match=r"added: 2\.scale; removed: 2\.bias"):
        run_steps(m, mon, x, 2)
    mon.close()
    names = {(r["step"], r["kind"], r["name"]) for r in mon.history}
    assert (0, "weight", "0") in names and (0, "weight", "2.bias") in names  # before the re-scans: kept
    assert (2, "weight", "0.parametrizations.weight.original") in names
    assert (4, "weight", "2.scale") in names and (4, "weight", "2.bias") not in names
    sc = [r for r in mon.history if r["name"] == "2.scale" and r["kind"] == "weight"][0]
    assert sc["mean"] == 2.0 and sc["var"] == 0.0
    sd = mon.state_dict()
    again = VarianceMonitor(m, every=2)
    again.load_state_dict(sd)
    assert again.history == mon.history


def test_monitor_rescans_a_submodule_replaced_by_one_of_the_same_shapes():
    # before: the rows kept reading the old module (weight var 0.04 reported for a new weight of var 365)
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
    x = torch.randn(4, 8)
    mon = VarianceMonitor(m, every=1)
    run_steps(m, mon, x, 1)
    m[2] = nn.Linear(8, 8)
    with torch.no_grad():
        m[2].weight.mul_(100)
    with pytest.warns(UserWarning, match=r"parameters changed at step 1 \(replaced modules: 2\)"):
        run_steps(m, mon, x, 2, lr=0.0)
    mon.close()
    row = {(r["step"], r["kind"], r["name"]): r for r in mon.history}
    assert row[1, "weight", "2"]["var"] == pytest.approx(var64(m[2].weight), rel=EXACT)
    # the step of the change has no activation rows (its forward ran with the old module's hook); the next
    # one reads the new module's output
    assert (1, "act", "2") not in row
    assert row[2, "act", "2"]["var"] == pytest.approx(var64(m(x)), rel=1e-6)


@dataclasses.dataclass
class Out:
    ids: torch.Tensor
    hidden: torch.Tensor


class Shapes(nn.Module):
    """Submodules whose outputs are a dict, a tuple led by an integer tensor, a list, a dataclass and an HF
    ModelOutput."""

    class Wrap(nn.Module):
        def __init__(self, kind):
            super().__init__()
            self.kind, self.lin = kind, nn.Linear(8, 8)

        def forward(self, x):
            y = self.lin(x)
            ids = torch.zeros(3, dtype=torch.long)
            return {"dict": lambda: {"mask": ids, "out": y}, "tuple": lambda: (ids, y), "list": lambda: [None, y],
                    "dataclass": lambda: Out(ids, y),
                    "model_output": lambda: transformers.modeling_outputs.BaseModelOutput(last_hidden_state=y)}[
                self.kind]()

    def __init__(self):
        super().__init__()
        self.kinds = ("dict", "tuple", "list", "dataclass", "model_output")
        self.blocks = nn.ModuleList(self.Wrap(k) for k in self.kinds)
        self.w = nn.Parameter(torch.ones(8))  # the Wrap modules own no parameter: add their outputs by include=

    def forward(self, x):
        return sum(first_floating(b(x)) for b in self.blocks) * self.w


def test_monitor_measures_the_floating_tensor_of_any_output_shape():
    # before: a dict output, or a tuple led by an integer tensor, silently gave no activation row
    torch.manual_seed(0)
    m = Shapes()
    x = torch.randn(4, 8)
    mon = VarianceMonitor(m, every=1, include=[r"^blocks\.\d$"], update=None)
    outs = {}
    for i, b in enumerate(m.blocks):
        b.register_forward_hook(lambda mod, a, out, i=i: outs.__setitem__(i, first_floating(out).detach()))
    m(x).sum().backward()
    mon.step()
    mon.close()
    acts = {r["name"]: r for r in mon.history if r["kind"] == "act"}
    assert sorted(acts) == [f"blocks.{i}" for i in range(5)]
    for i in range(5):
        assert acts[f"blocks.{i}"]["var"] == pytest.approx(var64(outs[i]), rel=EXACT)
        assert acts[f"blocks.{i}"]["count"] == 32


def test_first_floating_and_primary_output():
    ids, y = torch.zeros(2, dtype=torch.long), torch.ones(2)
    assert first_floating((ids, [None, {"a": ids, "b": y}])) is y
    assert first_floating({"mask": torch.zeros(2, dtype=torch.bool)}) is None
    out = transformers.modeling_outputs.CausalLMOutput(loss=torch.tensor(1.0), logits=y)
    assert primary_output(out) is y and first_floating(out) is out.loss


class Vandal(Sink):
    def write(self, step, records):
        for r in records:
            r.clear()
        records.clear()


def test_a_sink_that_changes_its_records_does_not_corrupt_the_others(tmp_path):
    # before: a sink that modified the records it received emptied every other sink's output
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    mon = VarianceMonitor(m, every=1, sinks=[Vandal(), JSONL(tmp_path / "a.jsonl")])
    run_steps(m, mon, torch.randn(4, 8), 2)
    mon.close()
    recs, _ = read_jsonl(tmp_path / "a.jsonl")
    assert len(recs) == len(mon.history) > 0
    for a, b in zip(recs, mon.history):
        assert a.keys() == b.keys()
        assert all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a)  # NaN reads back as NaN


# ------------------------------------------------------------------------------- 3. probe / calibrate on real models


@dataclasses.dataclass
class LMOut:
    loss: torch.Tensor | None
    logits: torch.Tensor
    ids: torch.Tensor


class ObjectLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = mlp(4, 32, in_features=16, out_features=10)

    def forward(self, x):
        logits = self.body(x)
        return LMOut(loss=None, logits=logits, ids=logits.argmax(-1))


def test_probe_on_object_outputs_and_loss_fn_applied_first():
    # before: "the model's output does not depend on any parameter" (checked before loss_fn ran)
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    m = ObjectLM()
    r = probe(m, x).results[0]  # the standard-normal backward from .logits
    assert len(r.layers) == 4 and all(math.isfinite(x.bwd) and x.bwd > 0 for x in r.layers)
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(1))
    r2 = probe(m, x, loss_fn=lambda out: F.cross_entropy(out.logits, y)).results[0]
    assert all(math.isfinite(x.bwd) and x.bwd > 0 for x in r2.layers)
    hf = hf_gpt2(n_layer=2)
    ids = tokens()
    r3 = probe(hf, ids, loss_fn=lambda out: out.loss if out.loss is not None else F.cross_entropy(
        out.logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())).results[0]
    assert r3.stream == "residual" and all(x.bwd > 0 for x in r3.layers)
    with pytest.raises(ValueError, match=r"loss_fn\(output\) does not depend"):
        probe(m, x, loss_fn=lambda out: out.logits.detach().sum())


@pytest.mark.parametrize("make", ["builtin", "hf"])
def test_lsuv_on_tied_lm_head_rescales_the_shared_tensor_once(make):
    # before: lsuv failed on a lm_head tied to the token embedding
    if make == "builtin":
        m = gpt2(n_layer=2, n_embd=32, n_head=4, vocab=64, block=16)
        head, emb = m.lm_head, m.transformer.wte
    else:
        m = hf_gpt2(n_layer=2)
        head, emb = m.lm_head, m.transformer.wte
    assert head.weight is emb.weight
    x = tokens()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = calibrate(m, x, target=1.0, mode="lsuv", scheme="gpt2")
    assert head.weight is emb.weight  # still one tensor
    rows = [r for r in p.rows if "lm_head.weight" in (r.name, *r.tied)]
    assert len(rows) == 1 and rows[0].note.count("lsuv") == 1  # the shared row is rescaled once
    before = {n: t.detach().clone() for n, t in m.state_dict().items()}
    p.apply(m)  # the model holds exactly what the plan draws
    assert all(torch.equal(before[n], t) for n, t in m.state_dict().items())
