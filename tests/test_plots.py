"""depthinit.plots and ``depthinit plot``: figures from a monitored run's JSONL log."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("matplotlib")

from depthinit import plots, sinks  # noqa: E402
from depthinit.cli import main  # noqa: E402
from depthinit.monitor import VarianceMonitor  # noqa: E402
from tests.test_monitor import tiny_gpt2, train  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_log(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "run.jsonl"
    model = tiny_gpt2(n_layer=3)
    mon = VarianceMonitor(model, every=1, sinks=[sinks.JSONL(path)])
    train(model, mon, 5)
    mon.close()
    return path, mon.history


def test_plot_run_writes_every_figure(run_log, tmp_path):
    path, _ = run_log
    out = plots.plot_run(path, tmp_path / "figs", dpi=50)
    names = sorted(p.rsplit("/", 1)[-1] for p in out)
    assert names == ["change_weight.png", "heatmap_act.png", "heatmap_grad.png", "heatmap_update.png",
                     "heatmap_weight.png", "profile.png", "qkv_act.png", "qkv_weight.png"]
    for p in out:
        with open(p, "rb") as f:
            head = f.read()
        assert head.startswith(PNG) and len(head) > 5_000  # a real drawing, not an empty canvas


def test_figures_have_labels_and_log_scales_where_values_span_decades(run_log):
    from matplotlib.colors import LogNorm

    _, hist = run_log
    fig = plots.heatmap(hist, "grad", "std")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "optimizer step" and "grad std" in ax.get_title()
    assert isinstance(ax.images[0].norm, LogNorm)  # gradient stds span decades here
    assert fig.axes[1].get_ylabel() == "std"  # the colorbar
    names, steps, m = plots.table(hist, "weight", "std")
    assert steps == [0, 1, 2, 3, 4] and "h.2.attn.q" in names and not any(n.endswith(".bias") for n in names)
    q = plots.qkv(hist)
    assert [a.get_title() for a in q.axes[:3]] == ["Q projection", "K projection", "V projection"]
    assert len(q.axes[0].lines) == 3  # one line per layer
    p = plots.profile(hist, kinds=("act",), steps=[0, 4])
    assert [t.get_text() for t in p.axes[0].get_legend().get_texts()] == ["step 0", "step 4"]


def test_cli_plot(run_log, tmp_path, capsys):
    path, _ = run_log
    assert main(["plot", str(path), "-o", str(tmp_path / "o"), "--steps", "0,4", "--dpi", "40"]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 8 and all(p.endswith(".png") for p in printed)
    assert main(["plot", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["plot", str(path), "--steps", "a,b"]) == 2


def test_clear_errors(run_log, monkeypatch):
    _, hist = run_log
    with pytest.raises(ValueError, match="no 'weight' records with statistic 'nope'"):
        plots.heatmap(hist, "weight", "nope")
    with pytest.raises(ValueError, match="Q/K/V"):
        plots.qkv([r for r in hist if not r.get("qkv")])
    with pytest.raises(ValueError, match="records must be dicts"):
        plots.load_records([{"x": 1}])
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'depthinit\[plots\]'"):
        plots.heatmap(hist)
