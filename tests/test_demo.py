"""`depthinit demo --quick`: the main job end to end (probe, training with the monitor, report folder)."""

import json
import math

import pytest
import torch

from depthinit.applications.demo import DemoConfig
from depthinit.cli import main
from depthinit.cli.demo import config_from_args
from depthinit.sinks import read_jsonl

PNG = b"\x89PNG\r\n\x1a\n"


THREADS = torch.get_num_threads()


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "report"
    return out, main(["demo", "--quick", "--out", str(out)])


def test_quick_demo_writes_the_report(quick, capsys):
    out, rc = quick
    assert rc == 0
    assert torch.get_num_threads() == THREADS  # the demo's own thread count is restored
    for name in ("report.md", "summary.json", "probe.json", "probe.png", "training.png", "monitor.png",
                 "gradients.png"):
        assert (out / name).is_file(), name
    for name in ("probe.png", "training.png", "monitor.png", "gradients.png"):
        assert (out / name).read_bytes()[:8] == PNG
    report = (out / "report.md").read_text()
    for label in ("he / normal", "he / uniform", "xavier / normal", "depth_aware K=1 / uniform", "![probe](probe.png)"):
        assert label in report


def test_quick_demo_numbers(quick):
    out, _ = quick
    s = json.loads((out / "summary.json").read_text())
    assert s["config"]["quick"] and s["config"]["depth"] == 54
    runs = {(r["scheme"], r["distribution"]): r for r in s["runs"]}
    assert len(runs) == 6
    # the probe's verdicts: He and depth-aware propagate, Xavier loses ~2^53 over 54 ReLU layers
    assert runs[("xavier", "normal")]["verdict"] == "vanishing"
    assert runs[("xavier", "uniform")]["verdict"] == "vanishing"
    assert runs[("he", "normal")]["verdict"] == "healthy"
    assert runs[("depth_aware", "normal")]["verdict"] == "healthy"
    # Xavier's gradients (~1e-15 at layer 1) cannot move it off the uniform prediction: loss ln(10) to 1e-3;
    # He and depth-aware start learning within the 3 quick epochs (measured: loss ~2.0-2.2)
    ln10 = math.log(10)
    assert runs[("xavier", "normal")]["train_loss"][-1] == pytest.approx(ln10, abs=1e-3)
    for key in (("he", "normal"), ("depth_aware", "normal"), ("depth_aware", "uniform")):
        assert runs[key]["train_loss"][-1] < ln10 - 0.05, key
        assert len(runs[key]["test_acc"]) == 4  # before training + 3 epochs
    # the monitor saw Xavier's vanishing signal
    assert runs[("xavier", "normal")]["alerts"].get("vanishing", 0) > 0


def test_quick_demo_report_explains_its_theory_numbers(quick):
    # before: He "healthy" beside a backward theory of 0.078 while the text said He preserves variance
    out, _ = quick
    cfg = json.loads((out / "summary.json").read_text())["config"]
    probe = {r["label"]: r for r in json.loads((out / "probe.json").read_text())["results"]}
    he = probe["he / normal"]
    head = 10 / cfg["width"]  # digits: 10 classes; the output layer's backward factor fan_out * (2/fan_in) / 2
    assert he["theory_forward_gain"] == pytest.approx(1.0, rel=1e-9)
    assert he["theory_backward_gain"] == pytest.approx(head, rel=1e-9)
    report = (out / "report.md").read_text()
    assert f"= {head:.3g} once, at the" in report and "He's whole backward theory" in report
    for col in ("**fwd gain**", "**bwd gain**", "its **theory**"):
        assert col in report


def test_quick_demo_names_xavier_gradients_vanishing(quick):
    # before: "grad variance grows 2.14e+15x from layer 1 to layer 54 ... exploding" for Xavier's gradients
    out, _ = quick
    _, alerts = read_jsonl(out / "monitor-xavier-normal.jsonl")
    depth = {(a["alert"], a["source"]) for a in alerts if a["layer"] == "depth"}
    assert ("vanishing", "grad") in depth and ("exploding", "grad") not in depth
    grad = [a for a in alerts if a["layer"] == "depth" and a["source"] == "grad"]
    assert all(a["value"] < 1e-4 and "toward the input" in a["message"] for a in grad)


def test_quick_demo_jsonl_logs(quick):
    out, _ = quick
    logs = sorted(out.glob("monitor-*.jsonl"))
    assert len(logs) == 6
    records, alerts = read_jsonl(logs[0])
    kinds = {r["kind"] for r in records}
    assert {"weight", "grad", "act"} <= kinds
    assert len({r["name"] for r in records if r["kind"] == "act"}) == 54  # every Linear output


def test_config_and_bad_input(tmp_path, capsys):
    import argparse

    from depthinit.applications.demo import run_demo

    ns = argparse.Namespace(depth=None, width=None, epochs=5, batch_size=None, optimizer=None, lr=None, seed=None,
                            threads=None, data="wine", data_root=None, n_train=None, n_test=None,
                            schemes="he,xavier:K=1", quick=True)
    with pytest.raises(ValueError, match="has no option"):  # checked before anything is written
        run_demo(config_from_args(ns), str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()
    ns.schemes = "he"
    assert config_from_args(ns) == DemoConfig.quick_config(epochs=5, data="wine", schemes=("he",))
    assert main(["demo", "--data", "cifar10"]) == 2
    assert "needs --data-root" in capsys.readouterr().err
    assert main(["demo", "--quick", "--epochs", "0", "--out", str(tmp_path / "never")]) == 2
    assert "--epochs must be >= 1" in capsys.readouterr().err
    assert main(["demo", "--schemes", "he,depth_aware:K"]) == 2
    assert "expected key=value" in capsys.readouterr().err
