"""The applications layer: the one training loop the demo and the reproductions share, the helpers of the
studies, the public ``depthinit.models`` attribute, and the import direction (applications never import the CLI)."""

import argparse
import ast
import json
import math
import pathlib

import pytest
import torch

import depthinit as di
from depthinit.applications import models, training
from depthinit.applications.data import Split
from depthinit.applications.repro import common as C
from depthinit.cli._common import positive_int

ROOT = pathlib.Path(__file__).resolve().parents[1]
APPS = ROOT / "depthinit" / "applications"


def _split(n_train: int = 40, n_test: int = 12, features: int = 5, classes: int = 3, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, features, generator=g)
    y = torch.randint(0, classes, (n_train + n_test,), generator=g)
    return Split("toy", x[:n_train], y[:n_train], x[n_train:], y[n_train:], classes)


def _model(seed: int = 0) -> torch.nn.Module:
    m = models.mlp(3, 8, in_features=5, out_features=3)
    training.init_model(m, "he", seed)
    return m


def test_train_classifier_calls_back_per_step_and_epoch():
    split, cfg = _split(), training.TrainConfig(epochs=3, lr=0.05, batch=16, optimizer="adam")
    steps, epochs = [], []
    curves = training.train_classifier(_model(), split, cfg, 7, on_step=lambda: steps.append(1),
                                       on_epoch=lambda ep, c: epochs.append((ep, len(c.epoch))))
    assert len(steps) == 3 * math.ceil(40 / 16)  # one call per optimizer step
    assert epochs == [(1, 2), (2, 3), (3, 4)]  # after each epoch's evaluation, epoch 0 is before training
    assert curves.epoch == [0, 1, 2, 3] and all(0.0 <= a <= 1.0 for a in curves.test_acc)


def test_train_classifier_is_a_function_of_the_shuffle_seed():
    split, cfg = _split(), training.TrainConfig(epochs=2, lr=0.05, batch=8)
    a = training.train_classifier(_model(), split, cfg, 3)
    b = training.train_classifier(_model(), split, cfg, 3)
    c = training.train_classifier(_model(), split, cfg, 4)
    assert a == b and a.train_loss[1:] != c.train_loss[1:]
    assert a.train_loss[0] == c.train_loss[0]  # the same initial weights: only the batch order differs


def test_a_diverging_run_stops_and_its_curves_stay_strict_json():
    split, cfg = _split(), training.TrainConfig(epochs=4, lr=1e30, batch=8)
    steps = []
    curves = training.train_classifier(_model(), split, cfg, 0, on_step=lambda: steps.append(1))
    assert math.isfinite(curves.train_loss[0]) and len(curves.epoch) == 5
    assert any(math.isnan(v) for v in curves.train_loss)
    assert len(steps) < 4 * 5  # stopped at the first non-finite loss
    d = curves.to_dict()
    assert d["epoch"] == [0, 1, 2, 3, 4] and None in d["train_loss"]
    json.dumps(d, allow_nan=False)


def test_make_optimizer():
    m = _model()
    assert isinstance(training.make_optimizer(m, training.TrainConfig(optimizer="adam")), torch.optim.Adam)
    sgd = training.make_optimizer(m, training.TrainConfig(optimizer="sgd", momentum=0.5))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.5
    with pytest.raises(ValueError, match="unknown optimizer 'lion'; valid: sgd, adam"):
        training.make_optimizer(m, training.TrainConfig(optimizer="lion"))


def test_weights_digest_follows_the_weights():
    a, b = _model(0), _model(0)
    assert training.weights_digest(a) == training.weights_digest(b)
    assert training.weights_digest(a) != training.weights_digest(_model(1))


def test_quick_defaults_fill_only_unset_options():
    ns = argparse.Namespace(quick=True, width=None, seeds=5, widths="")
    C.quick_defaults(ns, width=(32, 128), seeds=(1, 3), widths=("64", "64,256"))
    assert (ns.width, ns.seeds, ns.widths) == (32, 5, "64")
    ns = argparse.Namespace(quick=False, width=None)
    C.quick_defaults(ns, width=(32, 128))
    assert ns.width == 128


def test_write_outputs_is_strict_json(tmp_path):
    claim = C.Claim("paper", "claim", "agrees", "evidence")
    C.write_outputs(str(tmp_path), {"x": [1.0, math.nan, math.inf], "claim": claim, "t": (1, 2)}, "# r")
    text = (tmp_path / C.RESULTS_JSON).read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    assert data == {"format": C.FORMAT, "x": [1.0, None, None], "claim": claim.to_dict(), "t": [1, 2]}
    assert (tmp_path / C.REPORT_MD).read_text() == "# r\n"


def test_study_report_ends_with_the_claims_and_the_environment():
    data = {"command": "depthinit repro x --quick", "config": {"quick": True}, "wall_s": 3.2,
            "environment": {"python": "3.x", "torch": "2.y", "threads": 1}}
    text = C.study_report("Title", data, [C.Claim("P", "c", "partly", "e")], ["body"])
    assert text.startswith("# Title\n") and "depthinit repro x --quick" in text and "CI-sized run" in text
    assert text.index("body") < text.index("## Agreement with the paper") < text.index("Environment: Python 3.x")
    assert text.rstrip().endswith("1 thread(s); wall time 3 s.")


def test_positive_int_is_the_cli_argument_type():
    assert positive_int("3") == 3
    for bad, msg in (("0", "must be >= 1, got 0"), ("x", "not an integer: 'x'")):
        with pytest.raises(argparse.ArgumentTypeError, match=msg):
            positive_int(bad)


def test_models_attribute_is_the_applications_module():
    assert di.models is models
    assert di.models.gpt2 is models.gpt2


def _imports(path: pathlib.Path) -> list[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved against its package)."""
    pkg = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out += [mod] + [f"{mod}.{a.name}" for a in node.names]
    return out


def test_applications_never_import_the_cli():
    files = sorted(APPS.rglob("*.py"))
    assert len(files) >= 10
    for f in files:
        bad = [m for m in _imports(f) if m == "depthinit.cli" or m.startswith("depthinit.cli.")]
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"
        assert "UsageError" not in f.read_text(encoding="utf-8"), f


def test_import_resolution_of_the_check_above():
    names = _imports(APPS / "repro" / "deep_mlp.py")
    assert "depthinit.applications.training" in names and "depthinit.plots.figure" in names
