"""Every user error of every command: one line naming the fix, exit status 2, found before any work.

The table lists each case as (command, expected exit status, expected first words of the message); the
message is stderr's ``depthinit: error: ...`` line for status 2, the first stdout line otherwise.
"""

import ast
import copy
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import depthinit as di
from depthinit.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "depthinit: error: "


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Paths the table refers to: a plain file, a monitor log, an empty log, and hostile plan files."""
    from depthinit.monitor import VarianceMonitor
    from depthinit.sinks import JSONL

    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "file").write_text("not a folder")
    (tmp / "empty.jsonl").write_text("")
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    mon = VarianceMonitor(m, every=1, sinks=[JSONL(tmp / "run.jsonl")])
    for _ in range(3):
        m(torch.randn(4, 8)).square().mean().backward()
        mon.step()
    mon.close()
    good = json.loads(di.plan(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)), "depth_aware").to_json())

    def plan_file(name, edit):
        d = copy.deepcopy(good)
        edit(d)
        (tmp / f"{name}.json").write_text(json.dumps(d))

    plan_file("no_options", lambda d: d.update(options={}))
    plan_file("alpha_null", lambda d: d.update(constants={"alpha": None}))
    plan_file("constants_x", lambda d: d.update(constants="x"))
    plan_file("ortho_0d", lambda d: d["rows"][1].update(distribution="orthogonal", shape=[], std=1.0))
    plan_file("mean_1e300", lambda d: d["rows"][0].update(mean=1e300))
    plan_file("huge_L", lambda d: [r.update(n_layers=10**12) for r in d["rows"]])
    plan_file("twice", lambda d: d["rows"].append(copy.deepcopy(d["rows"][0])))
    return tmp


CASES = [
    # devices
    (["stats", "--device", "cuda"], 2, "--device cuda:"),
    (["stats", "--device", "tpu"], 2, "--device 'tpu' is not a device"),
    # outputs: a file where a folder must be created, or given as the folder itself
    (["probe", "--plot", "{tmp}/file/dir/p.png"], 2, "--plot {tmp}/file/dir/p.png: cannot create the folder"),
    (["probe", "--plot", "/proc/p.png"], 2, "--plot /proc/p.png: cannot write in the folder /proc"),
    (["probe", "--plot", "{tmp}/p.unknownext"], 2, "--plot {tmp}/p.unknownext: unknown file type 'unknownext'"),
    (["probe", "--plot", ""], 2, "--plot needs a file name"),
    (["plot", "{tmp}/run.jsonl", "--dpi", "100000"], 2, "argument --dpi: must be 10 to 1200, got 100000"),
    (["probe", "--json", "{tmp}/file/dir/x.json"], 2, "--json {tmp}/file/dir/x.json: cannot create the folder"),
    (["probe", "--json", "{tmp}"], 2, "--json {tmp} is a folder"),
    (["demo", "--out", "{tmp}/file"], 2, "--out {tmp}/file is a file, not a folder"),
    (["plot", "{tmp}/run.jsonl", "-o", "{tmp}/file"], 2, "-o/--out {tmp}/file is a file, not a folder"),
    (["repro", "deep-mlp", "--out", "{tmp}/file"], 2, "--out {tmp}/file is a file, not a folder"),
    (["bench", "--bench-dir", str(ROOT / "bench"), "--json", "{tmp}/file/b.json"], 2, "--json {tmp}/file/b.json"),
    # model specs and scheme options
    (["plan", "--model", "mlp:in=-5"], 2, "in=-5 in model spec: must be >= 1"),
    (["plan", "--model", "mlp:in=0"], 2, "in=0 in model spec: must be >= 1"),
    (["plan", "--model", "mlp:depth=3,depth=4"], 2, "depth is given twice"),
    (["plan", "--option", "K=1", "--option", "K=2"], 2, "scheme option 'K' is given twice"),
    (["plan", "--K", "1", "--option", "K=2"], 2, "scheme option 'K' is given twice"),
    (["plan", "--seed", "-1"], 2, "argument --seed: must be in [0, 2**64)"),
    # saved plans, validated completely at load
    (["plan", "--load", "{tmp}/no_options.json"], 2, "plan options lack K, base"),
    (["plan", "--load", "{tmp}/alpha_null.json"], 2, "plan constant 'alpha'=None must be a finite number"),
    (["plan", "--load", "{tmp}/constants_x.json"], 2, "plan 'constants' must be an object"),
    (["plan", "--load", "{tmp}/ortho_0d.json"], 2, "plan row '0.bias': orthogonal needs a parameter of 2 or more"),
    (["plan", "--load", "{tmp}/twice.json"], 2, "plan rows: parameter '0.weight' appears twice"),
    (["plan", "--load", "{tmp}/mean_1e300.json"], 2, "plan row '0.weight': mean=1e+300 is not a finite fp32"),
    (["plan", "--load", "{tmp}/huge_L.json"], 0, "InitPlan: scheme=depth_aware"),  # closed forms: no O(L) loop
    (["plan", "--load", "{tmp}/missing.json"], 2, "cannot read {tmp}/missing.json"),
    # non-finite weights
    (["stats", "--scheme", "orthogonal", "--option", "gain=nan"], 2, "plan row '0.weight': orthogonal gain=nan"),
    (["stats", "--scheme", "normal", "--std", "1e39"], 2, "plan row '0.weight': std=1e+39 is not a finite fp32"),
    (["plan", "--scheme", "normal", "--std", "1e38"], 2, "plan row '0.weight': normal(mean=0, std=1e+38) overflows"),
    # logs: unknown statistics, empty logs, steps outside the log
    (["plot", "{tmp}/run.jsonl", "-o", "{tmp}/p", "--stat", "foo"], 2, "unknown statistic 'foo'"),
    (["plot", "{tmp}/empty.jsonl", "-o", "{tmp}/p"], 2, "{tmp}/empty.jsonl holds no monitor records"),
    (["plot", "{tmp}/run.jsonl", "-o", "{tmp}/p", "--steps", "9999"], 2, "steps 9999 are outside the monitored"),
    (["plot", "{tmp}/run.jsonl", "-o", "{tmp}/p", "--steps", "x"], 2, "--steps takes integers"),
    (["plot", "{tmp}/nope.jsonl"], 2, "no such file: {tmp}/nope.jsonl"),
    (["plot", "{tmp}/run.jsonl", "--dpi", "0"], 2, "argument --dpi: must be >= 1"),
    # other commands
    (["probe", "--threshold", "0.5"], 2, "--threshold must be a finite number > 1"),
    (["probe", "--batch", "0"], 2, "argument --batch: must be >= 1"),
    (["demo", "--data", "cifar10"], 2, "--data cifar10 needs --data-root"),
    (["bench", "--timeout", "-1"], 2, "argument --timeout: must be a finite number > 0"),
]


def _fill(text: str, tmp: Path) -> str:
    return text.replace("{tmp}", str(tmp))


@pytest.mark.parametrize("argv,status,first", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_cli_table(files, capsys, argv, status, first):
    if argv[:3] == ["stats", "--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = main([_fill(a, files) for a in argv])
    out, err = capsys.readouterr()
    assert code == status, (out[-500:], err)
    if status == 2:
        assert err.startswith(PREFIX + _fill(first, files)), err
        assert err.count("\n") == 1 and "Traceback" not in err
    else:
        assert out.startswith(_fill(first, files)), out[:200]


def test_outputs_get_their_parent_folders_everywhere(files, capsys):
    """One policy: missing parent folders of every output are created (as bench --json always did)."""
    t = files / "made"
    assert main(["probe", "--model", "mlp:depth=3,width=8", "--plot", str(t / "a/p.png"),
                 "--json", str(t / "b/x.json")]) == 0
    assert (t / "a/p.png").is_file() and json.loads((t / "b/x.json").read_text())["results"]
    assert main(["plot", str(files / "run.jsonl"), "-o", str(t / "c/d")]) == 0
    assert (t / "c/d/heatmap_weight.png").is_file()
    capsys.readouterr()


def test_huge_L_plan_loads_in_closed_form(files, capsys):
    assert main(["plan", "--load", str(files / "huge_L.json")]) == 0
    assert "predicted end-to-end variance gain (L=1000000000000): 2.718" in capsys.readouterr().out


def test_ctrl_c_exits_130_without_a_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "depthinit", "demo", "--quick", "--out", str(tmp_path / "r")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    first = p.stderr.readline()  # the first progress line: the command is at work, past its imports
    assert first.startswith("[1/6]"), first
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "Traceback" not in err and err.strip().endswith("depthinit: interrupted")


# ------------------------------------------------------------------------------------------ the library side


@pytest.mark.parametrize("scheme,options,dtype,match", [
    ("orthogonal", {"gain": math.nan}, torch.float32, r"orthogonal gain=nan .* valid: a finite gain"),
    ("normal", {"std": 1e39}, torch.float32, r"std=1e\+39 is not a finite fp32 number .* valid: \|std\| <= 3.403e\+38"),
    ("normal", {"std": 2e4}, torch.float16, r"overflows float16 .* std <= 1.136e\+04"),
    ("normal", {"std": math.inf}, torch.float64, r"std must be a finite number"),
])
def test_non_finite_weights_are_refused_with_the_valid_range(scheme, options, dtype, match):
    m = nn.Linear(4, 4).to(dtype)
    before = m.weight.detach().clone()
    with pytest.raises(ValueError, match=match):
        di.init_(m, scheme, **options)
    assert torch.equal(m.weight, before)  # refused before anything was written


def test_fp64_targets_take_fp64_ranges():
    # fp64 parameters are filled in fp64 (the random-number contract), so values beyond fp32 are valid there
    m = nn.Linear(64, 64).double()
    di.init_(m, "normal", std=1e39, seed=0)
    assert torch.isfinite(m.weight).all() and 5e38 < float(m.weight.std()) < 2e39
    with pytest.raises(ValueError, match=r"overflows float64 .* std <= 3.117e\+307"):
        di.init_(m, "normal", std=1e308, seed=0)  # draws reach 5.77·std


def test_edited_rows_are_checked_before_the_fill():
    m = nn.Linear(4, 4)
    p = di.plan(m, "he")
    p["weight"].mean = 1e300
    with pytest.raises(ValueError, match="mean=1e\\+300"):
        p.apply()


def test_layer_stats_of_gradients_before_backward_is_an_error():
    from depthinit.stats import layer_stats

    m = nn.Linear(4, 4)
    with pytest.raises(ValueError, match=r"no parameter has a gradient yet; call loss.backward\(\) first"):
        layer_stats(m, grads=True)
    m(torch.randn(2, 4)).sum().backward()
    assert layer_stats(m, grads=True).names == ["weight", "bias"]


@pytest.mark.parametrize("L", [1, 54, 4096, 4097, 10_000, 200_000])
@pytest.mark.parametrize("K", [-0.9, -1e-5, 1e-9, 1e-3, 0.05])
def test_predicted_gain_closed_form_equals_the_product(L, K):
    """The linear schedule's gain in O(1) against the explicit sum of logs (fsum, 1e-12 relative)."""
    from depthinit.schemes import depth_multiplier, predicted_gain

    log = math.fsum(math.log(depth_multiplier(lyr, L, K, "linear")) for lyr in range(1, L + 1))
    want = math.exp(min(log, 709.0))
    assert predicted_gain(L, K, "linear") == pytest.approx(want, rel=1e-10, abs=1e-300)
    assert predicted_gain(L, K, "ramp") == pytest.approx(math.exp(K), rel=1e-15)


# ------------------------------------------------------------------------------------------ texts


def _actions(parser, path=()):
    import argparse

    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                yield from _actions(sp, (*path, name))
        elif a.dest != "help":
            yield " ".join(path), a


def test_every_option_has_help_and_states_its_default():
    for cmd, a in _actions(build_parser()):
        name = f"{cmd} {a.option_strings or a.dest}"
        assert a.help, name
        if a.default not in (None, False):
            assert "default" in a.help, name


def test_schemes_listing_is_plain_whole_sentences(capsys):
    assert main(["schemes"]) == 0
    out = capsys.readouterr().out
    assert "`" not in out and ":func:" not in out
    assert "Breaks symmetry" not in out and "Does not break symmetry" in out
    assert all(len(line) <= 100 for line in out.splitlines())
    # gpt2's first paragraph spans several docstring lines: printed whole, not cut at the first line end
    assert "GPT-2: every weight N(0, 0.02²); residual output projections" in " ".join(out.split())


def test_the_library_never_imports_the_command_line():
    """Imports read with ast: no module outside depthinit/cli (and __main__) imports depthinit.cli."""
    offenders = []
    for path in (ROOT / "depthinit").rglob("*.py"):
        rel = path.relative_to(ROOT / "depthinit")
        if "cli" in rel.parts or rel.name == "__main__.py":  # the command line itself, and `python -m depthinit`
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            mods = []
            if isinstance(node, ast.ImportFrom):
                mods = [("." * node.level) + (node.module or "")] + [("." * node.level) + a.name for a in node.names
                                                                     if not node.module]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            for m in mods:
                if m in ("depthinit.cli", ".cli", "..cli") or m.startswith(("depthinit.cli.", ".cli.", "..cli.")):
                    offenders.append(f"{path.relative_to(ROOT)}: {m}")
    assert not offenders, offenders
