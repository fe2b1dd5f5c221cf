"""Signal-propagation probe: measured variances against the mean-field theory, verdicts, fused statistics,
scheme specs, figures, CLI and bad input."""

import math
import sys

import numpy as np
import pytest
import torch
from torch import nn

import depthinit as di
import depthinit.probe  # noqa: F401  (the module; `depthinit.probe` the attribute may be the function)
from depthinit.applications.models import gpt2, mlp
from depthinit.cli import main

P = sys.modules["depthinit.probe"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _x(batch, features, seed=123):
    return torch.randn(batch, features, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------- theory vs measured

# Tolerance: the theory is the expectation over the random weights; one finite-width network fluctuates
# around it. For ReLU the layer-to-layer gain of a batch is a chi-square-like average over the ~n/2 active
# units, and deep ReLU nets correlate the inputs of the batch, so the fluctuations hardly average over the
# batch: the measured per-seed relative standard deviation at layer l is about sqrt(3 l / n) (0.30 at l = 8,
# n = 256, bounded by 0.35 over the layers and passes here). Averaged over S = 16 seeds, the standard error
# is <= 0.35 / 4 ~ 0.09 at the deepest layer and ~0.03-0.06 elsewhere; 20% is >= 2 standard errors at the
# last layer and >= 4 at most layers (the measured worst deviation: 0.08). tanh and linear nets keep the
# batch decorrelated and fluctuate ~10x less (per-seed std <= 0.05 at n = 256), so S = 4 leaves 20% at
# >= 8 standard errors. The same 20% bounds the backward pass (per-seed std <= 0.25) and the ReLU
# post-activation variance, whose theory (E[relu(h)] from a Gaussian h) is exact only for Gaussian
# pre-activations (finite-width corrections O(1/n)).
THEORY_CASES = [
    ("relu", "he", 8, 256, None, None, 16),
    ("relu", "depth_aware:K=1+distribution=uniform", 8, 256, None, None, 16),
    ("tanh", "xavier", 8, 256, 64, 10, 4),
    ("tanh", "he:nonlinearity=tanh+distribution=uniform", 8, 256, None, None, 4),
    ("linear", "xavier:distribution=uniform", 8, 256, None, None, 4),
]


@pytest.mark.parametrize("act,scheme,depth,width,n_in,n_out,seeds", THEORY_CASES)
def test_measured_variances_match_theory_on_average(act, scheme, depth, width, n_in, n_out, seeds):
    model = mlp(depth, width, act=act, in_features=n_in, out_features=n_out)
    x = _x(64, n_in or width)
    ratios = {"fwd": [], "post": [], "bwd": []}
    for seed in range(seeds):
        (res,) = P.probe(model, x, schemes=[scheme], seed=seed).results
        assert [r.name for r in res.layers] == [str(2 * i) for i in range(depth)]
        for key in ratios:
            ratios[key].append([getattr(r, key) / getattr(r, "theory_" + key) for r in res.layers
                                if getattr(r, "theory_" + key) is not None])
    for key, rows in ratios.items():
        mean = np.mean(np.array(rows), axis=0)
        assert len(mean) >= depth - 1
        assert np.all(np.abs(mean - 1) < 0.2), (key, np.round(mean, 3))


def test_theory_gain_is_the_textbook_product():
    """He keeps the ReLU variance (factor 1 per layer), Xavier halves it on square layers (the chapter's
    10-layer example: 2^-9 between layer 1 and 10), depth-aware ramp multiplies layer l by m_l."""
    L, width = 10, 256
    model = mlp(L, width)
    rep = P.probe(model, _x(32, width), schemes=["he", "xavier", "depth_aware:K=1.5"])
    assert rep["he"].theory_forward_gain == pytest.approx(1.0, rel=1e-12)
    assert rep["xavier"].theory_forward_gain == pytest.approx(2.0 ** -(L - 1), rel=1e-12)
    ms = [di.schemes.depth_multiplier(lyr, L, 1.5) for lyr in range(1, L + 1)]
    assert rep["depth_aware:K=1.5"].theory_forward_gain == pytest.approx(math.prod(ms[1:]), rel=1e-12)
    # backward on square layers: the same factors (fan_out = fan_in)
    assert rep["xavier"].theory_backward_gain == pytest.approx(2.0 ** -(L - 1), rel=1e-12)
    # first layer: Var(h_1) = fan_in * Var(W) * E[x^2] exactly (He: 2 E[x^2])
    he = rep["he"].layers[0]
    assert he.theory_fwd == pytest.approx(2.0 * rep["he"].input_m2, rel=1e-12)


@pytest.mark.parametrize("act", [nn.Tanh(), nn.LeakyReLU(0.2), nn.GELU(), nn.ReLU()])
def test_activation_moments_against_quadrature(act):
    """Closed forms and 96-point Gauss-Hermite against scipy's adaptive quadrature (tolerance 1e-7:
    quad's own error estimate is below 1e-9 on these smooth, Gaussian-weighted integrands)."""
    from scipy import integrate

    q = 1.7
    f = lambda z: float(act(torch.tensor(z, dtype=torch.float64)))
    pdf = lambda z: math.exp(-z * z / (2 * q)) / math.sqrt(2 * math.pi * q)
    e2 = integrate.quad(lambda z: f(z) ** 2 * pdf(z), -40, 40, points=[0.0])[0]
    e1 = integrate.quad(lambda z: f(z) * pdf(z), -40, 40, points=[0.0])[0]
    got = P.activation_moments(act, q)
    assert got[0] == pytest.approx(e2, rel=1e-7, abs=1e-9)
    assert got[1] == pytest.approx(e1, rel=1e-7, abs=1e-9)


def test_row_second_moment_matches_sampling():
    """E[w^2] of each plan distribution against 2^18 contract draws (std error of a second moment
    <= sqrt(2/n) ~ 2.8e-3 relative; 2% is 7 standard errors)."""
    w = nn.Linear(512, 512, bias=False)
    model = nn.Sequential(w)
    for scheme, opts in [("he", {}), ("xavier", {"distribution": "uniform"}), ("trunc_normal", {"std": 0.05}),
                         ("olmo_mitchell", {}), ("orthogonal", {"gain": 1.3})]:
        p = di.plan(model, scheme, seed=3, **opts)
        p.apply()
        measured = float(w.weight.double().pow(2).mean())
        assert P.row_second_moment(p["0.weight"]) == pytest.approx(measured, rel=2e-2), scheme


# ------------------------------------------------------------------------------------------- verdicts


def test_verdicts_on_the_54_layer_mlp():
    model = mlp(54, 128)
    rep = P.probe(model, _x(128, 128), schemes=["he", "xavier", "depth_aware:K=1", "normal:std=0.2"])
    assert rep.verdicts["he"] == "healthy"
    assert rep.verdicts["xavier"] == "vanishing"  # theory 2^-53 ~ 1e-16, measured likewise
    assert 1e-18 < rep["xavier"].forward_gain < 1e-14 and 1e-18 < rep["xavier"].backward_gain < 1e-14
    assert rep.verdicts["depth_aware:K=1"] == "healthy"
    # std 0.2 on width 128: 128 * 0.04 / 2 = 2.56 per layer: overflows fp32 long before layer 54
    assert rep.verdicts["normal:std=0.2"] in ("exploding", "non-finite")
    assert model[0].weight.grad is None  # the probe works on copies and never accumulates .grad


def test_exploding_verdict_and_threshold():
    model = mlp(12, 128)
    rep = P.probe(model, _x(64, 128), schemes=["normal:std=0.2"])  # theory 2.56^11 ~ 3e4
    assert rep.verdicts["normal:std=0.2"] == "exploding"
    assert rep["normal:std=0.2"].theory_forward_gain == pytest.approx(2.56**11, rel=1e-9)
    rep = P.probe(model, _x(64, 128), schemes=["normal:std=0.2"], threshold=1e9)
    assert rep.verdicts["normal:std=0.2"] == "healthy"


# ------------------------------------------------------------------------------------------- mechanics


def test_one_fused_stats_call_per_pass(monkeypatch):
    import depthinit.stats as stats

    calls = []
    real = stats.layer_stats

    def spy(x, **kw):
        calls.append(len(x))
        return real(x, **kw)

    monkeypatch.setattr(stats, "layer_stats", spy)
    model = mlp(20, 64)
    P.probe(model, _x(32, 64), schemes=["he"])
    # forward: 20 outputs + 19 post-activations (inputs of layers 2..20); backward: 20 gradients
    assert calls == [39, 20]
    calls.clear()
    P.probe(model, _x(32, 64))  # as it is: one more call for the weights' second moments
    assert calls == [40, 39, 20]


def test_as_is_and_plan_probe_agree():
    model = mlp(6, 128)
    p = di.plan(model, "he", seed=5)
    p.apply()
    x = _x(64, 128)
    a = P.probe(model, x, seed=5).results[0]  # seed: of the backward noise here
    b = P.probe(model, x, plan=p, label="mine", seed=5).results[0]
    c = P.probe(model, x, schemes=["he"], seed=5).results[0]
    assert a.label == "as-is" and b.label == "mine"
    for ra, rb, rc in zip(a.layers, b.layers, c.layers):
        assert ra.fwd == rb.fwd == rc.fwd and ra.bwd == rb.bwd == rc.bwd
        # theory from the measured weights vs from the plan: the sample second moment of 128^2 draws
        # (std error sqrt(2/16384) ~ 1.1%) compounds over <= 6 layers: 10%
        assert ra.theory_fwd == pytest.approx(rb.theory_fwd, rel=0.1)
        assert rb.theory_fwd == rc.theory_fwd


def test_inplace_activation_measures_the_pre_activation():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(32, 32), nn.ReLU(inplace=True), nn.Linear(32, 32), nn.ReLU(inplace=True),
                      nn.Linear(32, 8))
    b = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 8))
    b.load_state_dict(a.state_dict())
    x = _x(16, 32)
    ra, rb = P.probe(a, x).results[0], P.probe(b, x).results[0]
    for la, lb in zip(ra.layers, rb.layers):
        assert (la.fwd, la.bwd, la.post) == (lb.fwd, lb.bwd, lb.post)
    assert ra.layers[0].fwd > ra.layers[0].post  # the output, not the ReLU'd tensor


def test_generic_model_and_custom_loss():
    model = gpt2(n_layer=2, n_embd=32, n_head=2, vocab=64, block=16)
    idx = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(0))
    rep = P.probe(model, idx, loss_fn=lambda out: out.float().pow(2).mean(), schemes=["gpt2"])
    res = rep.results[0]
    names = [r.name for r in res.layers]
    assert names == ["transformer.h.0", "transformer.h.1"] and res.stream == "residual"  # the residual stream
    assert all(r.theory_fwd is None for r in res.layers)  # no mean-field theory outside plain MLPs
    assert all(r.fwd > 0 and r.bwd > 0 for r in res.layers)
    assert res.verdict in ("healthy", "vanishing", "exploding") and "loss_fn" in rep.table()
    sel = P.probe(model, idx, schemes=["gpt2"], modules=["lm_head", model.transformer.h[1].mlp.c_fc])
    assert [r.name for r in sel.results[0].layers] == ["transformer.h.1.mlp.c_fc", "lm_head"]


def test_schemes_share_the_seed_and_leave_the_model_alone():
    model = mlp(4, 32)
    before = [p.detach().clone() for p in model.parameters()]
    rep = P.probe(model, _x(8, 32), schemes=[("he", {}), "he"], seed=9)
    assert [r.fwd for r in rep.results[0].layers] == [r.fwd for r in rep.results[1].layers]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_table_json_and_plot(tmp_path):
    import json

    rep = P.probe(mlp(12, 64), _x(32, 64), schemes=["he", "xavier", "depth_aware:K=1,distribution=uniform"])
    text = rep.table(detail=True)
    for label in ("he", "xavier", "depth_aware:K=1+distribution=uniform", "vanishing", "healthy", "theory"):
        assert label in text
    d = json.loads(rep.to_json())
    assert [r["label"] for r in d["results"]] == ["he", "xavier", "depth_aware:K=1+distribution=uniform"]
    path = rep.plot(str(tmp_path / "probe.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------- specs and CLI


def test_parse_schemes_syntax():
    assert P.parse_schemes("he,xavier:distribution=uniform,depth_aware:K=1+distribution=uniform") == [
        ("he", {}), ("xavier", {"distribution": "uniform"}), ("depth_aware", {"K": 1, "distribution": "uniform"})]
    assert P.parse_schemes("depth_aware:K=-0.5;schedule=linear,he") == [
        ("depth_aware", {"K": -0.5, "schedule": "linear"}), ("he", {})]
    # a bare key=value after a comma continues the previous scheme (names never contain '=')
    assert P.parse_schemes("depth_aware:K=1,distribution=uniform,he") == [
        ("depth_aware", {"K": 1, "distribution": "uniform"}), ("he", {})]
    assert P.parse_scheme("depth_aware:K=1,distribution=uniform") == ("depth_aware", {"K": 1,
                                                                                      "distribution": "uniform"})
    assert P.scheme_label("depth_aware", {"K": 1, "distribution": "uniform"}) == "depth_aware:K=1+distribution=uniform"


@pytest.mark.parametrize("text,match", [
    ("", "empty scheme list"),
    ("he,,xavier", "empty item"),
    ("K=1,he", "starts with an option"),
    ("depth_aware:K", "expected key=value"),
    ("depth_aware:=3", "expected key=value"),
])
def test_parse_schemes_errors(text, match):
    with pytest.raises(ValueError, match=match):
        P.parse_schemes(text)


def test_bad_input():
    model = mlp(3, 16)
    x = _x(4, 16)
    with pytest.raises(ValueError, match="unknown scheme"):
        P.probe(model, x, schemes=["nope"])
    with pytest.raises(ValueError, match="has no option"):
        P.probe(model, x, schemes=["he:K=1"])
    with pytest.raises(ValueError, match="names no submodule"):
        P.probe(model, x, modules=["7"])
    with pytest.raises(ValueError, match="schemes= is empty"):
        P.probe(model, x, schemes=[])
    with pytest.raises(ValueError, match="example_input must be a tensor"):
        P.probe(model, [1, 2])
    with pytest.raises(ValueError, match="threshold"):
        P.probe(model, x, threshold=1)
    with pytest.raises(ValueError, match="not both"):
        P.probe(model, x, schemes=["he"], plan=di.plan(model, "he"))
    with pytest.raises(TypeError, match="nn.Module"):
        P.probe("model", x)


def test_cli_probe(tmp_path, capsys):
    png = tmp_path / "p.png"
    schemes = "he,xavier,depth_aware:K=1+distribution=uniform"
    assert main(["probe", "--model", "mlp:depth=16,width=64", "--schemes", schemes, "--batch", "32", "--plot", str(png),
                 "--json", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert "xavier" in out and "vanishing" in out and "depth_aware:K=1+distribution=uniform" in out
    assert png.stat().st_size > 10_000


def test_cli_probe_bad_scheme_one_line(capsys):
    assert main(["probe", "--model", "mlp:depth=4,width=16", "--schemes", "he,depth_aware:K"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected key=value" in err


def test_calibrate_is_reexported():
    from depthinit.calibrate import calibrate

    assert di.calibrate is calibrate  # the package's name; depthinit.probe does not import the calibration
