"""The probe package's structure: the public scheme-spec grammar, one import direction between the probe and
the calibration, no application imported by the library, strict JSON and the figure in depthinit.plots."""

import ast
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import depthinit as di
import depthinit.probe  # noqa: F401  (the module; `depthinit.probe` the attribute is the function)

P = sys.modules["depthinit.probe"]
ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "depthinit" / "probe"
APPLICATIONS = ("models", "demo", "data", "repro", "applications", "bench", "cli")

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------- the grammar


@pytest.mark.parametrize("text,want", [
    ("3", 3), (" -2 ", -2), ("0", 0), ("1.5", 1.5), ("-0.5", -0.5), ("1e-3", 1e-3), ("2.", 2.0),
    ("true", True), ("False", False), ("TRUE", True), ("uniform", "uniform"), (" ramp ", "ramp"), ("1.5x", "1.5x"),
    ("", ""),
])
def test_parse_value(text, want):
    got = P.parse_value(text)
    assert got == want and type(got) is type(want)  # 1 stays an int, 1.0 a float, true a bool (not 1)


def test_parse_value_non_finite_reads_as_float():
    assert math.isnan(P.parse_value("nan")) and P.parse_value("-inf") == -math.inf


def test_the_cli_and_the_specs_share_one_value_grammar():
    from depthinit.cli import _common

    assert _common.parse_value is P.parse_value
    assert P.parse_scheme("x:a=1+b=true+c=0.25+d=relu")[1] == {"a": 1, "b": True, "c": 0.25, "d": "relu"}


# ------------------------------------------------------------------------------------------- import structure


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(absolute module, imported names)`` of every import in ``path``, function-level ones included."""
    pkg = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    if path.name == "__init__.py":
        pkg = pkg.rsplit(".", 1)[0] + ".__init__"
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = pkg.split(".")[: len(pkg.split(".")) - node.level] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out.append((mod, [a.name for a in node.names]))
    return out


def test_the_probe_imports_neither_the_calibration_nor_any_application():
    files = sorted(PACKAGE.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "spec.py", "hooks.py", "theory.py", "results.py", "api.py"}
    for f in files:
        for mod, names in _imports(f):
            targets = [mod] + [f"{mod}.{n}" for n in names]
            for t in targets:
                assert not t.startswith("depthinit.calibrate"), (f.name, t)
                assert not any(t == f"depthinit.{a}" or t.startswith(f"depthinit.{a}.") for a in APPLICATIONS), (
                    f.name, t)


def test_the_calibration_takes_public_probe_names_only():
    uses = [(m, n) for m, n in _imports(ROOT / "depthinit" / "calibrate.py") if m.startswith("depthinit.probe")]
    assert uses, "depthinit.calibrate measures with the probe's hooks"
    assert all(not name.startswith("_") for _, names in uses for name in names), uses


@pytest.mark.parametrize("first,second", [("depthinit.probe", "depthinit.calibrate"),
                                          ("depthinit.calibrate", "depthinit.probe")])
def test_fresh_interpreter_imports_in_either_order_and_probes_without_applications(first, second):
    code = f"""
import importlib, sys
a = importlib.import_module({first!r}); b = importlib.import_module({second!r})
probe_pkg, cal = sys.modules["depthinit.probe"], sys.modules["depthinit.calibrate"]
assert not hasattr(probe_pkg, "calibrate"), "depthinit.probe re-exports the calibration"
import torch
from torch import nn
model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
rep = probe_pkg.probe(model, torch.randn(4, 8), schemes=["he"])
assert rep.model == "Sequential with 108 parameters (0.0 MiB in fp32)", rep.model
cal.calibrate(model, torch.randn(16, 8), mode="lsuv", scheme="he")
apps = sorted(m for m in sys.modules for a in {APPLICATIONS!r}
              if m == "depthinit." + a or m.startswith("depthinit." + a + "."))
assert not apps, apps
print("ok")
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


def test_every_probe_module_is_small():
    for f in PACKAGE.glob("*.py"):
        tree = ast.parse(f.read_text())
        assert len(f.read_text().splitlines()) <= 600, f.name
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                assert node.end_lineno - node.lineno + 1 <= 400, (f.name, node.name)


# ------------------------------------------------------------------------------------------- report and theory


def test_to_json_is_strict_json():
    layers = [P.LayerProbe(1, "0", 1.0, math.nan), P.LayerProbe(2, "1", math.inf, 2.0, theory_fwd=1.0)]
    rep = P.ProbeReport([P.SchemeProbe("he", "he", {}, layers, math.nan)], "m")

    def no_constants(c):
        raise AssertionError(f"non-strict JSON constant {c}")

    d = json.loads(rep.to_json(), parse_constant=no_constants)
    got = d["results"][0]
    assert got["input_m2"] is None and got["layers"][0]["bwd"] is None and got["layers"][1]["fwd"] is None
    assert got["layers"][1]["theory_fwd"] == 1.0 and got["verdict"] == "non-finite"
    assert math.isnan(rep.to_dict()["results"][0]["input_m2"])  # to_dict keeps the Python values


@pytest.mark.parametrize("mean,std,low,high", [(0.0, 1.0, -2.0, 2.0), (0.3, 0.5, -0.1, 2.0), (0.0, 0.02, -0.04, 0.01),
                                               (1.0, 2.0, 4.0, 9.0)])
def test_trunc_normal_second_moment_against_scipy(mean, std, low, high):
    from scipy.stats import truncnorm

    row = di.PlanRow("w", (4, 4), "float32", "cpu", "weight", 1, 1, 4, 4, "trunc_normal", mean, std, low, high, 0)
    d = truncnorm((low - mean) / std, (high - mean) / std, loc=mean, scale=std)
    assert P.row_second_moment(row) == pytest.approx(d.var() + d.mean() ** 2, rel=1e-9)


def test_probe_profile_figure_lives_in_plots():
    pytest.importorskip("matplotlib")
    from depthinit import plots

    model = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16))
    rep = P.probe(model, torch.randn(8, 16), schemes=["he", "xavier"])
    fig = plots.probe_profile(rep, title="t")
    fwd, bwd = fig.axes[:2]
    assert fwd.get_yscale() == bwd.get_yscale() == "log" and fig._suptitle.get_text() == "t"
    assert len(fwd.get_lines()) == 4  # measured and theory, per initialization
    for name in ("figure", "COLORS", "align"):
        assert not hasattr(P, name), name
