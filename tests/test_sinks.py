"""Sinks: a monitored training loop writes JSONL / CSV / TensorBoard logs that read back to the monitor's
history; a failing sink warns once and loses nothing elsewhere; optional packages fail softly.

Tolerances: JSONL keeps Python floats exactly (repr round trip); CSV writes ``repr`` too; TensorBoard
stores scalars as fp32, hence ``rel=1e-6`` (fp32 has 24 bits: 6e-8 relative, with margin), and the
histogram's count / sum / sum of squares as fp64 (exact to ``1e-12``).
"""

from __future__ import annotations

import csv
import io
import math
import sys
import types
import warnings

import pytest

from depthinit import sinks
from depthinit.alerts import AlertEvent
from depthinit.monitor import VarianceMonitor
from tests.test_monitor import tiny_gpt2, train


def run_with(sink_list, steps=4, every=2):
    model = tiny_gpt2()
    mon = VarianceMonitor(model, every=every, sinks=sink_list)
    train(model, mon, steps)
    mon.close()
    return mon


def same(a: dict, b: dict) -> bool:
    return all(b.get(k) == v or (isinstance(v, float) and math.isnan(v) and math.isnan(b.get(k))) for k, v in a.items())


def test_jsonl_csv_round_trip(tmp_path):
    j, c = tmp_path / "run.jsonl", tmp_path / "sub" / "run.csv"
    mon = run_with([sinks.JSONL(j), sinks.CSV(c)])
    records, alerts = sinks.read_jsonl(j)
    assert len(records) == len(mon.history) > 0
    assert all(same(a, b) for a, b in zip(mon.history, records))
    with open(c, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(mon.history)
    assert tuple(rows[0]) == sinks.CSV_COLUMNS
    for r, h in zip(rows, mon.history):
        assert (int(r["step"]), r["kind"], r["name"]) == (h["step"], h["kind"], h["name"])
        if "std" in h:
            assert float(r["std"]) == h["std"]


def test_tensorboard_scalars_and_moment_histograms(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    mon = run_with([sinks.TensorBoard(tmp_path / "tb", bins=16)])
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    assert "weight/std/h.0.attn.q" in tags["scalars"] and "grad/l2/h.1.mlp.c_fc" in tags["scalars"]
    assert "update/norm_change_ratio/h.0.attn.k" in tags["scalars"]
    ev = acc.Scalars("weight/std/h.0.attn.q")
    want = {r["step"]: r["std"] for r in mon.history if r["kind"] == "weight" and r["name"] == "h.0.attn.q"}
    assert {e.step: e.value for e in ev} == pytest.approx(want, rel=1e-6)
    hist = acc.Histograms("act/hist/h.1.mlp.c_fc")
    rec = {r["step"]: r for r in mon.history if r["kind"] == "act" and r["name"] == "h.1.mlp.c_fc"}
    for h in hist:
        r, v = rec[h.step], h.histogram_value
        assert v.num == r["count"] and v.min == r["min"] and v.max == r["max"]
        assert v.sum == pytest.approx(r["mean"] * r["count"], rel=1e-12, abs=1e-12)
        assert v.sum_squares == pytest.approx(r["l2"] ** 2, rel=1e-12)
        assert sum(v.bucket) == pytest.approx(r["count"], rel=1e-12) and len(v.bucket) == 16


def test_moment_histogram():
    limits, counts = sinks.moment_histogram(1000, 0.0, 1.0, -3.0, 3.0, bins=12)
    assert len(limits) == len(counts) == 12 and limits[-1] == 3.0
    assert all(b > a for a, b in zip(limits, limits[1:]))
    assert sum(counts) == pytest.approx(1000, rel=1e-12)
    assert counts[5] == pytest.approx(counts[6]) and counts[5] > counts[0]  # symmetric, peaked at the mean
    assert sinks.moment_histogram(7, 2.0, 0.0, 2.0, 2.0) == ([2.0], [7.0])  # constant tensor
    assert sinks.moment_histogram(0, math.nan, math.nan, math.nan, math.nan) == ([], [])


class Broken(sinks.Sink):
    def __init__(self):
        self.calls = 0

    def write(self, step, records):
        self.calls += 1
        raise OSError(28, "No space left on device")


def test_failing_sink_warns_once_and_loses_nothing(tmp_path):
    broken = Broken()
    good = sinks.JSONL(tmp_path / "ok.jsonl")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        mon = run_with([broken, good], steps=6, every=1)
    sink_warnings = [x for x in w if issubclass(x.category, sinks.SinkWarning)]
    assert len(sink_warnings) == 1 and "No space left" in str(sink_warnings[0].message)
    assert broken.calls == 6  # kept being tried, training went on
    assert len(sinks.read_jsonl(tmp_path / "ok.jsonl")[0]) == len(mon.history) > 0
    assert sorted({r["step"] for r in mon.history}) == list(range(6))


@pytest.mark.parametrize("package,make", [
    ("wandb", lambda tmp: sinks.WandB()),
    ("tensorboard", lambda tmp: sinks.TensorBoard(tmp / "tb")),
])
def test_optional_sink_missing_its_package_fails_at_construction(monkeypatch, tmp_path, package, make):
    """A missing package is a configuration error found before training starts, with the install command."""
    from depthinit.errors import MissingDependency

    monkeypatch.setitem(sys.modules, package, None)  # import -> ImportError, as when it is not installed
    with pytest.raises(MissingDependency, match=rf"needs {package}: pip install 'depthinit\["):
        make(tmp_path)


def test_wandb_logs_scalars_and_alerts_with_a_fake_module(monkeypatch):
    logged = []
    run = types.SimpleNamespace(log=lambda data, step: logged.append((step, data)))
    fake = types.SimpleNamespace(run=None, init=lambda **kw: run, Histogram=lambda np_histogram: ("hist", np_histogram))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    s = sinks.WandB(histograms=True, project="x")
    s.open()
    recs = [{"step": 3, "kind": "act", "name": "fc", "layer": 1, "count": 10, "mean": 0.0, "std": 1.0, "rms": 1.0,
             "l2": 3.0, "min": -2.0, "max": 2.0, "absmax": 2.0}]
    s.write(3, recs)
    s.alert(AlertEvent(3, "spike", "fc", "l2", 9.0, 4.0, "m", "grad"))
    (step, data), (astep, adata) = logged
    assert step == 3 and data["act/std/fc"] == 1.0 and data["act/hist/fc"][0] == "hist"
    assert astep == 3 and adata == {"alerts/spike/grad/fc": 9.0}


def test_console_prints_a_compact_table_and_alerts():
    out = io.StringIO()
    s = sinks.Console(stream=out)
    run_with([s], steps=1, every=1)
    text = out.getvalue()
    assert "step 0" in text and "weight" in text and "grad" in text and "total l2" in text
    s.alert(AlertEvent(5, "nonfinite", "fc", "nonfinite", 2.0, 0.0, "step 5: bad", "grad"))
    assert "ALERT nonfinite" in out.getvalue()


def test_tensorboard_needs_a_place_and_jsonl_reader_errors(tmp_path):
    with pytest.raises(ValueError, match="logdir"):
        sinks.TensorBoard()
    p = tmp_path / "bad.jsonl"
    p.write_text('{"step": 0}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        sinks.read_jsonl(p)
