"""depthinit.alerts on hand-made records: each detector fires when it must, once, and its state survives a
state_dict round trip. No tolerance: thresholds are compared with values far on either side of them."""

from __future__ import annotations

import json
import math

import pytest

from depthinit.alerts import TOTAL, AlertEvent, Alerts

NO_BAND = {"act": None, "grad": None, "weight": None}


def rec(kind, name, layer=None, **stats):
    base = {"count": 100, "mean": 0.0, "std": 1.0, "var": 1.0, "l2": 10.0, "absmax": 3.0, "nonfinite": 0}
    base.update(stats)
    if "std" in stats and "var" not in stats:
        base["var"] = stats["std"] ** 2
    return {"step": 0, "kind": kind, "name": name, "layer": layer, **base}


def test_nonfinite_fires_once_per_row_and_again_after_it_clears():
    a = Alerts(spike_stats=())
    ok = [rec("grad", "fc1", 1), rec("grad", "fc2", 2)]
    bad = [rec("grad", "fc1", 1), rec("grad", "fc2", 2, nonfinite=3)]
    assert a.check(0, ok) == []
    ev = a.check(1, bad)
    assert [(e.kind, e.layer, e.statistic, e.value, e.step, e.source) for e in ev] == [
        ("nonfinite", "fc2", "nonfinite", 3.0, 1, "grad")]
    assert "first seen" in ev[0].message
    assert a.check(2, bad) == []  # still bad: not repeated
    assert a.check(3, ok) == []
    assert len(a.check(4, bad)) == 1  # bad again after recovering
    inf_stat = [rec("weight", "w", 1, l2=math.inf)]
    assert [e.statistic for e in a.check(5, inf_stat)] == ["l2"]


def test_per_layer_std_band():
    a = Alerts(std_band={"act": (1e-3, 10.0), "weight": None}, depth_ratio=None, spike_stats=())
    ev = a.check(0, [rec("act", "a", 1, std=1e-5), rec("act", "b", 2, std=50.0), rec("act", "c", 3, std=1.0),
                     rec("weight", "w", 1, std=1e9)])
    assert [(e.kind, e.layer, e.threshold) for e in ev] == [("vanishing", "a", 1e-3), ("exploding", "b", 10.0)]
    assert a.std_band["grad"] == (None, 1e4)  # defaults kept for the kinds not given


def test_depth_ratio_uses_geometric_mean_per_layer_and_skips_bias_and_heads():
    a = Alerts(std_band=NO_BAND, depth_ratio=100.0, spike_stats=())
    grow = [rec("act", f"l{i}", i, std=10.0 ** i) for i in range(1, 4)]  # var ratio last/first = 1e4
    grow.append(rec("act", "l1.bias", 1, std=1e-9))  # ignored
    grow.append(rec("act", "l3.head0", 3, std=1e-9, head=0))  # ignored
    ev = a.check(0, grow)
    assert [(e.kind, e.layer, e.statistic, e.source) for e in ev] == [("exploding", "depth", "var_ratio", "act")]
    assert ev[0].value == pytest.approx(1e4)
    # gradients travel toward the input: larger at layer 1 than at layer 3 is a gradient that grows on its way
    grows_to_input = [rec("grad", f"l{i}", i, std=10.0 ** -i) for i in range(1, 4)]
    ev = a.check(1, grows_to_input)
    assert [(e.kind, e.source) for e in ev] == [("exploding", "grad")] and ev[0].value == pytest.approx(1e4)
    shrinks_to_input = [rec("grad", f"l{i}", i, std=10.0 ** i) for i in range(1, 4)]
    ev = Alerts(std_band=NO_BAND, depth_ratio=100.0, spike_stats=()).check(1, shrinks_to_input)
    assert [(e.kind, e.source) for e in ev] == [("vanishing", "grad")] and ev[0].value == pytest.approx(1e-4)
    flat = [rec("act", f"l{i}", i, std=1.0) for i in range(1, 4)]
    assert a.check(2, flat) == []


def spike_run(a, values, start=0):
    events = []
    for i, v in enumerate(values):
        events += a.check(start + i, [rec("grad", "fc", 1, l2=v), rec("grad", "fc2", 2, l2=1.0)])
    return events


def test_spike_over_sliding_window_with_min_history_and_total():
    a = Alerts(std_band=NO_BAND, depth_ratio=None, spike_k=5, spike_window=8, spike_min_history=4)
    calm = [1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0, 1.02]
    assert spike_run(a, calm) == []
    ev = spike_run(a, [5.0], start=8)
    assert {(e.kind, e.layer, e.statistic) for e in ev} == {("spike", "fc", "l2"), ("spike", TOTAL, "l2")}
    fc = [e for e in ev if e.layer == "fc"][0]
    assert fc.value == 5.0 and 1.0 < fc.threshold < 5.0
    b = Alerts(std_band=NO_BAND, depth_ratio=None, spike_min_history=4, spike_window=8)
    assert spike_run(b, [1.0, 1.0, 100.0]) == []  # not enough history yet
    c = Alerts(std_band=NO_BAND, depth_ratio=None, spike_min_history=3, spike_window=8)
    assert spike_run(c, [1.0, 1.0, 1.0, 1.04]) == []  # flat history: sigma floored at 5 % of the mean


def test_state_dict_round_trip_continues_windows_and_active_conditions():
    vals = [1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0, 1.02, 9.0, 1.0]
    whole = Alerts(std_band=NO_BAND, depth_ratio=None, spike_min_history=4, spike_window=8)
    ev_whole = spike_run(whole, vals)
    first = Alerts(std_band=NO_BAND, depth_ratio=None, spike_min_history=4, spike_window=8)
    ev = spike_run(first, vals[:6])
    state = json.loads(json.dumps(first.state_dict()))  # plain data
    second = Alerts(std_band=NO_BAND, depth_ratio=None, spike_min_history=4, spike_window=8)
    second.load_state_dict(state)
    ev += spike_run(second, vals[6:], start=6)
    assert [e.to_dict() for e in ev] == [e.to_dict() for e in ev_whole] and ev
    assert second.state_dict() == whole.state_dict()


def test_callback_and_validation():
    got = []
    a = Alerts(callback=got.append)
    ev = a.check(0, [rec("weight", "w", 1, nonfinite=1)])
    a.dispatch(ev)
    assert got == ev and isinstance(got[0], AlertEvent) and a.events == ev
    for kw, msg in [({"depth_ratio": 0.5}, "depth_ratio"), ({"spike_window": 1}, "spike_min_history"),
                    ({"spike_k": 0}, "spike_k"), ({"std_band": {"act": (1.0, 0.1)}}, "below"),
                    ({"std_band": {"act": (1.0,)}}, "pair")]:
        with pytest.raises(ValueError, match=msg):
            Alerts(**kw)
