"""The command line: plan output, JSON, one-line errors with exit status 2."""

import json
import subprocess
import sys

import pytest

from depthinit.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "depthinit", *args], capture_output=True, text=True, timeout=120)


def test_plan_prints_54_layer_table():
    r = run("plan", "--model", "mlp:depth=54,width=512", "--scheme", "depth_aware", "--K", "1",
            "--distribution", "uniform")
    assert r.returncode == 0, r.stderr
    assert "54/54" in r.stdout and "uniform" in r.stdout
    assert "predicted end-to-end variance gain (L=54): 2.718" in r.stdout


def test_plan_json_gpt2(capsys):
    assert main(["plan", "--model", "gpt2:n_layer=2,n_embd=16,n_head=2,vocab=32,block=8", "--scheme", "gpt2",
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["scheme"] == "gpt2" and any(r["role"] == "attn_qkv" for r in d["rows"])


@pytest.mark.parametrize("args,match", [
    (["plan", "--model", "resnet:depth=3"], "unknown model kind"),
    (["plan", "--model", "mlp:depth=x"], "bad value 'x' for depth"),
    (["plan", "--model", "mlp:depth"], "expected key=value"),
    (["plan", "--model", "mlp:colour=3"], "unknown key"),
    (["plan", "--model", "mlp:depth=0"], "must be >= 1"),
    (["plan", "--model", "gpt2:n_embd=10,n_head=3"], "divisible"),
    (["plan", "--model", "mlp:depth=100000,width=100000"], "over the limit"),
    (["plan", "--scheme", "nope"], "unknown scheme"),
    (["plan", "--K", "nan", "--schedule", "ramp"], "K must be a finite number"),
    (["plan", "--K", "abc"], "not a number"),
    (["plan", "--option", "bogus=1"], "has no option"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_one_line_exit_2(args, match, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("depthinit: error: ") and match in err


def test_bad_spec_subprocess_has_no_traceback():
    r = run("plan", "--model", "mlp:depth=-3")
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1


def test_schemes_lists_everything(capsys):
    assert main(["schemes"]) == 0
    out = capsys.readouterr().out
    for name in ("he", "xavier", "depth_aware", "torchtitan_depth", "olmo_mitchell", "deepnorm", "rezero"):
        assert name in out


def test_stats_prints_fused_statistics_of_the_initialized_model(capsys):
    assert main(["stats", "--model", "mlp:depth=3,width=64", "--scheme", "he", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("0.", "2.", "4."))}
    # He: std = sqrt(2/64) = 0.177; 4,096 samples give a relative s.e. of ~1.1%, so 6% is > 5 s.e.
    for name in ("0.weight", "2.weight", "4.weight"):
        assert float(rows[name][3]) == pytest.approx((2 / 64) ** 0.5, rel=0.06)
    assert rows["2.bias"][-1] == "64"  # zero count: biases are zero


@pytest.mark.parametrize("content,match", [
    (b"\xff\xfe\x00", "not UTF-8"),
    (b'{"format": "depthinit.plan/1", "rows": "x", "seed": 0}', "must be a list"),
    (b'{"format": "depthinit.plan/1", "seed": 0, "rows": [{"name": 1}]}', "unknown field|missing field"),
    (b"[" * 50000, "not valid plan JSON"),
    (b'{"__class__": "os.system", "format": "pickle"}', "not a depthinit plan"),
])
def test_load_hostile_plan_json_one_line_exit_2(tmp_path, capsys, content, match):
    f = tmp_path / "plan.json"
    f.write_bytes(content)
    assert main(["plan", "--load", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("depthinit: error: ")
    assert any(m in err for m in match.split("|")), err


def test_load_roundtrip_and_missing_file(tmp_path, capsys):
    assert main(["plan", "--model", "mlp:depth=3,width=8", "--scheme", "he", "--json"]) == 0
    f = tmp_path / "p.json"
    f.write_text(capsys.readouterr().out)
    assert main(["plan", "--load", str(f)]) == 0
    assert "3/3" in capsys.readouterr().out
    assert main(["plan", "--load", str(tmp_path / "nope.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
