"""``depthinit repro``: each study's --quick run (files, JSON structure, values that theory fixes exactly), the
CIFAR-10 folder path on tiny batch files written here, the verdict rules, and bad input."""

import json
import math
import os
import pickle

import numpy as np
import pytest

from depthinit.applications.repro import common as C
from depthinit.applications.repro.deep_mlp import xavier_over_he
from depthinit.applications.repro.gpt2_variance import spearman, stdlib_corpus
from depthinit.applications.repro.std_sweep import regime, stable_band, std_grid
from depthinit.applications.training import Curves
from depthinit.cli import build_parser, main

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

VERDICTS = {"agrees", "disagrees", "partly", "inconclusive"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(study, out, *extra):
    assert main(["repro", study, "--quick", "--quiet", "--threads", "1", "--out", str(out), *extra]) == 0
    with open(out / "results.json", encoding="utf-8") as f:
        data = json.load(f)
    report = (out / "report.md").read_text(encoding="utf-8")
    for name in data["figures"]:
        with open(out / name, "rb") as f:
            assert f.read(8) == PNG_MAGIC, name
    assert data["format"] == C.FORMAT and data["study"] == study
    assert data["command"].startswith(f"depthinit repro {study} ") and data["command"] in report
    assert "## Agreement with the paper" in report and "CI-sized run" in report
    assert data["claims"] and all(c["verdict"] in VERDICTS for c in data["claims"])
    return data, report


def _reparse(command):
    """The recorded command, parsed again, must give the same options (it is the exact command)."""
    import shlex

    argv = shlex.split(command)[1:]
    return vars(build_parser().parse_args(argv))


@pytest.fixture(scope="module")
def deep_mlp(tmp_path_factory):
    out = tmp_path_factory.mktemp("deep")
    return _run("deep-mlp", out)


def test_deep_mlp_quick_structure(deep_mlp):
    data, report = deep_mlp
    assert set(data["figures"]) == {"curves.png", "summary.png"}
    runs = data["runs"]
    assert len(runs) == 5 * 2  # He, Xavier, depth-aware constant, +K, -K; normal and uniform; 1 seed
    for r in runs:
        c = r["curves"]
        assert c["epoch"] == [0, 1, 2]
        assert r["outcome"]["status"] in C.STATUSES
        assert all(0.0 <= a <= 1.0 for a in c["test_acc"] + c["train_acc"])
        # before training the 10-way loss is near ln 10 for every init here (no init puts the logits far from 0
        # at depth 54: the largest forward gain, K=+4, is e^{4·53/55} ≈ 47 times He's, itself < 1)
        assert abs(c["train_loss"][0] - math.log(10)) < 0.5
    assert {s["label"] for s in data["summary"]} == {"He", "Xavier", "depth-aware constant", "depth-aware K=+4",
                                                     "depth-aware K=-4"}
    args = _reparse(data["command"])
    assert args["depth"] == 54 and args["epochs"] == 2 and args["K"] == "4"


def test_deep_mlp_constant_case_is_he(deep_mlp):
    """schedule=constant with base He draws He's weights bit for bit: same digest, trained once."""
    runs = deep_mlp[0]["runs"]
    for dist in ("normal", "uniform"):
        he = next(r for r in runs if r["label"] == "He" and r["distribution"] == dist)
        const = next(r for r in runs if r["label"] == "depth-aware constant" and r["distribution"] == dist)
        assert const["weights_digest"] == he["weights_digest"] and const["same_weights_as"] == "He"
        assert const["curves"] == he["curves"]
    assert len({r["weights_digest"] for r in runs}) == 8


def test_deep_mlp_forward_gains_follow_the_schedules(deep_mlp):
    """With zero biases a ReLU net is positively homogeneous, and every scheme scales the same counter-based
    draws (same seed, same parameter names), so the forward second-moment gains of two inits differ by exactly
    the product of their variance ratios over layers 1..L-1: e^{K·(L-1)/(L+1)} for the ramp, ∏ fan_in /
    (fan_in + fan_out) for Xavier vs He. Tolerance 1e-4 relative: fp32 rounding through 53 layers (~53 · 6e-8)
    and a different summation order of the mean."""
    data = deep_mlp[0]
    runs, L = data["runs"], data["config"]["depth"]
    for dist in ("normal", "uniform"):
        g = {r["label"]: r["init"]["forward_gain"] for r in runs if r["distribution"] == dist}
        for K in (4.0, -4.0):
            assert g[f"depth-aware K={K:+g}"] / g["He"] == pytest.approx(math.exp(K * (L - 1) / (L + 1)), rel=1e-4)
        ns = type("A", (), {"features": 64, "width": data["config"]["width"], "depth": L})
        assert g["Xavier"] / g["He"] == pytest.approx(xavier_over_he(ns), rel=1e-4)


def _write_cifar_batch(path, n, seed):
    rs = np.random.RandomState(seed)
    d = {b"batch_label": b"test", b"labels": [int(v) for v in rs.randint(0, 10, n)],
         b"data": rs.randint(0, 256, (n, 3072)).astype(np.uint8), b"filenames": [b"x.png"] * n}
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


def test_deep_mlp_cifar10_from_a_local_folder(tmp_path):
    """The CIFAR-10 path (--data cifar10 --data-dir) on tiny batch files in the python format."""
    src = tmp_path / "cifar-10-batches-py"
    src.mkdir()
    _write_cifar_batch(src / "data_batch_1", 48, 0)
    _write_cifar_batch(src / "data_batch_2", 16, 1)
    _write_cifar_batch(src / "test_batch", 20, 2)
    out = tmp_path / "out"
    data, report = _run("deep-mlp", out, "--data", "cifar10", "--data-dir", str(tmp_path), "--depth", "4",
                        "--width", "16", "--distributions", "normal", "--K", "1", "--batch", "16")
    cfg = data["config"]
    assert (cfg["data"], cfg["n_train"], cfg["n_test"], cfg["features"], cfg["classes"]) == ("cifar10", 64, 20,
                                                                                            3072, 10)
    assert "on cifar10 (64 train / 20 test samples" in report
    assert len(data["runs"]) == 5 and all(len(r["curves"]["epoch"]) == 3 for r in data["runs"])


def test_deep_mlp_cifar10_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["repro", "deep-mlp", "--quick", "--data", "cifar10", "--data-dir", str(tmp_path),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no CIFAR-10 python batches" in err


def test_std_sweep_quick(tmp_path):
    data, report = _run("std-sweep", tmp_path)
    assert set(data["figures"]) == {"sweep.png", "kaiming_vs_xavier.png"}
    stds = data["config"]["stds"]
    assert stds == [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    assert len(data["points"]) == 2 * len(stds) and len(data["sweep"]) == 2 * len(stds)
    for ds in ("digits", "wine"):
        pts = sorted((p for p in data["points"] if p["dataset"] == ds), key=lambda p: p["std"])
        # 1e-4: the logits are ~1e-16 of the inputs and the gradients ~1e-10; 3 epochs of SGD cannot learn
        assert pts[0]["regime"] == "vanishing"
        # below the He std the logits are ~0, softmax ≈ uniform, and every weight gradient scales as std^(L-1)
        # (the other L-1 layers' weights are the same draws scaled by std): a factor 10^3 per decade for L = 4.
        # Tolerance 1e-3: the softmax differs from uniform by O(logits) <= 1e-9 relative, fp32 rounding ~1e-6.
        g = [p["grad_norm_first"] for p in pts]
        assert g[1] / g[0] == pytest.approx(1e3, rel=1e-3) and g[2] / g[1] == pytest.approx(1e3, rel=1e-3)
        assert all(p["regime"] in ("vanishing", "stable", "exploding", "mixed") for p in pts)
    comp = data["compare_summary"]
    assert {(c["dataset"], c["scheme"]) for c in comp} == {(d, s) for d in ("digits", "wine") for s in ("he", "xavier")}
    for c in data["compare"]:
        assert math.isfinite(c["loss_auc"]) and c["outcome"]["status"] in C.STATUSES
    assert "## Stable band" in report and "## Kaiming (fan-in) vs Xavier under ReLU" in report


def test_gpt2_variance_quick(tmp_path):
    data, report = _run("gpt2-variance", tmp_path)
    assert set(data["figures"]) == {"qkv_std.png", "equilibration.png"}
    cfg, corpus = data["config"], data["corpus"]
    series = data["qkv_std"]
    assert len(series) == 12 * 3 and {s["part"] for s in series} == {"q", "k", "v"}
    steps = list(range(0, cfg["steps"], cfg["every"]))
    for s in series:
        assert s["steps"] == steps
        # the first record is after one AdamW step (lr 2e-3/2 in the warm-up) on a std-0.02 init: a third of
        # c_attn (32 x 32 elements) has a sample std within 0.02 ± 0.0022 (5 sampling standard errors,
        # 0.02/sqrt(2·1024) each), and one Adam update moves each element by at most ~lr = 1e-3
        assert abs(s["std"][0] - 0.02) < 0.0032
    assert len(data["layers"]) == 36 and {r["layer"] for r in data["layers"]} == set(range(1, 13))
    assert corpus["bytes"] == 200_000 and len(corpus["sha256"]) == 64
    # byte-level training learns something in 40 steps: the loss drops well below ln 256 = 5.55
    assert data["train_loss"][0] > 5.0 and data["val_loss"][-1][1] < data["train_loss"][0] - 0.5
    assert "## Bands reached" in report


def test_stdlib_corpus_is_deterministic():
    a, ia = stdlib_corpus(50_000)
    b, ib = stdlib_corpus(50_000)
    assert a == b and ia == ib and len(a) == 50_000
    assert ia["root"] == os.path.dirname(os.__file__)
    root = os.path.dirname(os.__file__)
    first = sorted(f for f in os.listdir(root) if f.endswith(".py"))[0]  # os.walk gives the root's files first
    with open(os.path.join(root, first), "rb") as f:
        assert a.startswith(f.read()[:1000])
    with pytest.raises(ValueError, match="lower --corpus-bytes"):
        stdlib_corpus(10**12)


def _curves(loss, acc):
    c = Curves()
    for i, (lo, ac) in enumerate(zip(loss, acc)):
        c.add(i, (lo, ac), (lo, ac))
    return c


def test_outcome_rules():
    chance = math.log(10)
    assert C.outcome(_curves([chance, 2.25, 2.24], [0.1, 0.12, 0.13]), 10, 0.8).status == "stalled"  # > 95 %
    assert C.outcome(_curves([chance, 1.0, 0.5], [0.1, 0.6, 0.9]), 10, 0.8).status == "trained"
    o = C.outcome(_curves([chance, 1.0, 0.5], [0.1, 0.6, 0.9]), 10, 0.8)
    assert o.epochs_to_target == 2 and o.best_test_acc == 0.9
    assert C.outcome(_curves([chance, 1.0, 2.3], [0.1, 0.6, 0.1]), 10, 0.8).status == "collapsed"
    assert C.outcome(_curves([chance, 1.0, math.nan], [0.1, 0.6, math.nan]), 10, 0.8).status == "diverged"
    # the loss fell below 95 % but the accuracy never left chance + 5 points: still stalled
    assert C.outcome(_curves([chance, 2.0, 2.0], [0.1, 0.12, 0.14]), 10, 0.8).status == "stalled"


def test_regime_and_band_rules():
    ln3 = math.log(3)
    assert regime(ln3, 0.1, 3) == "stable"
    assert regime(ln3, 1.08, 3) == "vanishing"
    assert regime(50.0, 2.0, 3) == "exploding" and regime(1.0, math.nan, 3) == "exploding"
    pts = [{"std": s, "regime": r} for s, r in [(1e-3, "vanishing"), (1e-2, "stable"), (3e-2, "stable"),
                                                (1e-1, "mixed"), (3e-1, "stable"), (1.0, "exploding")]]
    assert stable_band(pts) == (1e-2, 3e-2)
    assert stable_band([{"std": 1.0, "regime": "exploding"}]) is None
    assert std_grid(1e-4, 1.0, 2) == [1e-4, 3.162e-4, 1e-3, 3.162e-3, 1e-2, 3.162e-2, 0.1, 0.3162, 1.0]


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [5, 5, 5]) is None and spearman([1, 2], [1, 2]) is None
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # 1 - 6·Σd²/(n(n²-1)) = 1 - 12/60


@pytest.mark.parametrize("args,match", [
    (["deep-mlp", "--K", "0"], "nonzero"),
    (["deep-mlp", "--distributions", "cauchy"], "unknown value 'cauchy'"),
    (["deep-mlp", "--target", "1.5"], "--target"),
    (["std-sweep", "--std-min", "1", "--std-max", "0.1"], "std-min"),
    (["std-sweep", "--datasets", "mnist"], "unknown value 'mnist'"),
    (["gpt2-variance", "--n-embd", "30", "--n-head", "4"], "divisible"),
    (["deep-mlp", "--seeds", "0"], "must be >= 1"),
    (["nope"], "invalid choice"),
])
def test_bad_input_one_line_exit_2(args, match, tmp_path, capsys):
    assert main(["repro", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("depthinit: error: ") and match in err
