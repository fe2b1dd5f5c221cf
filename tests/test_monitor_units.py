"""The units of depthinit.monitor, one at a time: the row layout (a GPT-2 built from a transformers config, fused
``c_attn``), the update fields and their named columns, the device ring (wrap-around, drain), the history and
the update reference (state round trips), the records, and the one sharded merge of depthinit.distributed.

Tolerances: the update fields are computed here in fp64 from the same fp64 rows: ``1e-12`` relative (a square
root and a division). The sharded merge is compared with the fp64 statistics of the concatenated data:
``1e-12`` (Chan's merge of two halves against one two-pass sum, n < 100).
"""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from depthinit import distributed
from depthinit.kernels.contract import COUNT, M2, N_FIELDS, NEUTRAL_ROW, SUMSQ
from depthinit.monitor import Row, VarianceMonitor
from depthinit.monitor.history import History
from depthinit.monitor.layout import Selection, build_rows
from depthinit.monitor.records import STAT_KEYS, RecordFormatter
from depthinit.monitor.ring import DeviceRing
from depthinit.monitor.updates import NORM_SQ, NUMEL, PREV_NORM_SQ, UpdateTracker, update_fields
from depthinit.stats import merge_stacked, stats_reference

REL = 1e-12


@pytest.fixture(scope="module")
def hf_gpt2():
    T = pytest.importorskip("transformers")
    T.logging.set_verbosity_error()
    torch.manual_seed(0)
    return T.GPT2LMHeadModel(T.GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=32, n_positions=8,
                                          bos_token_id=0, eos_token_id=0))


# -- layout ----------------------------------------------------------------------------------------------------


def test_layout_of_hf_gpt2_splits_fused_c_attn_into_q_k_v_and_heads(hf_gpt2):
    tab = build_rows(hf_gpt2, Selection(per_head=True))
    kinds = [r.kind for r in tab.rows]
    for block, kind in ((tab.weights, "weight"), (tab.grads, "grad"), (tab.updates, "update")):
        assert set(kinds[block]) == {kind}
    # the act block: module outputs, then the gradients with respect to the residual stream
    assert {(r.kind, r.stream) for r in tab.rows[tab.acts]} == {("act", False), ("act", True), ("grad", True)}
    assert tab.weights.stop - tab.weights.start == tab.n_weights == len(tab.prows)
    assert tab.updates.stop == len(tab) == 3 * tab.n_weights + tab.n_acts
    # HF Conv1D stores c_attn as [in=16, out=48]: q, k, v are thirds of dim 1, each of 2 heads of 8
    c_attn = hf_gpt2.transformer.h[1].attn.c_attn
    prows = {p.row.name: p for p in tab.prows if p.module is c_attn}
    want = {"q": 0, "k": 16, "v": 32}
    for part, a in want.items():
        p = prows[f"h.1.attn.{part}"]
        assert (p.leaf, p.dim, p.start, p.stop, p.row.qkv, p.row.head, p.row.layer) == ("weight", 1, a, a + 16,
                                                                                         part, None, 2)
        for h in range(2):
            ph = prows[f"h.1.attn.{part}.head{h}"]
            assert (ph.dim, ph.start, ph.stop, ph.row.head) == (1, a + 8 * h, a + 8 * h + 8, h)
        b = prows[f"h.1.attn.{part}.bias"]
        assert (b.leaf, b.dim, b.start, b.stop) == ("bias", 0, a, a + 16)
    assert len(prows) == 2 * 3 * 3  # weight and bias, 3 parts, each whole + 2 heads
    # the activation rows of c_attn are cut from the same pieces as its weight rows
    site = next(s for s in tab.sites if s.mname == "transformer.h.1.attn.c_attn")
    assert [r.name for r in site.rows] == [n for n in prows if not n.endswith(".bias")]
    assert site.splits == [(0, 16), (0, 8), (8, 16), (16, 32), (16, 24), (24, 32), (32, 48), (32, 40), (40, 48)]
    assert all(r.layer == 2 and r.kind == "act" for r in site.rows)
    # the residual stream: one act row per block, and the gradient with respect to it
    stream = [r for r in tab.rows if r.stream]
    assert [(r.kind, r.name, r.layer) for r in stream] == [("act", "h.0", 1), ("act", "h.1", 2),
                                                           ("grad", "h.0", 1), ("grad", "h.1", 2)]
    assert [s.grad_row for s in tab.sites if s.stream] == [tab.n_acts - 2, tab.n_acts - 1]
    # tied wte / lm_head: one weight row
    assert sum(r.name == "wte" for r in tab.rows[tab.weights]) == 1


@pytest.mark.parametrize("micro", [1, 2])
def test_hf_gpt2_activation_rows_equal_fp64_of_the_outputs_one_or_two_forwards(micro):
    """A Hugging Face GPT-2 (Conv1D, fused c_attn, width 128, 32k-element outputs): the q / k / v thirds and the
    MLP rows of one training step equal fp64 statistics of what the modules returned, with one forward (rows
    copied from the kernel) and with two micro-batches (merged)."""
    T = pytest.importorskip("transformers")
    T.logging.set_verbosity_error()
    torch.manual_seed(0)
    model = T.GPT2LMHeadModel(T.GPT2Config(n_layer=2, n_embd=128, n_head=4, vocab_size=96, n_positions=64,
                                           bos_token_id=0, eos_token_id=0))  # fmt: skip
    blk = model.transformer.h[1]
    outs: dict[str, list[torch.Tensor]] = {"c_attn": [], "c_fc": []}
    hooks = [m.register_forward_hook(lambda mod, a, o, k=k: outs[k].append(o.detach().clone()))
             for k, m in (("c_attn", blk.attn.c_attn), ("c_fc", blk.mlp.c_fc))]  # fmt: skip
    mon = VarianceMonitor(model, every=1, alerts=None)
    g = torch.Generator().manual_seed(1)
    for _ in range(micro):
        ids = torch.randint(0, 96, (4, 64), generator=g)
        model(input_ids=ids, labels=ids).loss.backward()
    mon.step()
    for h in hooks:
        h.remove()
    mon.close()
    recs = {(r["name"], r.get("qkv")): r for r in mon.history if r["kind"] == "act"}
    qkv = torch.cat(outs["c_attn"]).double()
    want = {(f"h.1.attn.{p}", p): qkv[..., 128 * i:128 * (i + 1)] for i, p in enumerate("qkv")}
    want[("h.1.mlp.c_fc", None)] = torch.cat(outs["c_fc"]).double()
    for key, x in want.items():
        r = recs[key]
        assert r["count"] == x.numel() == micro * 4 * 64 * x.shape[-1], key
        for k, v in (("mean", x.mean()), ("var", x.var(unbiased=False)), ("min", x.min()), ("max", x.max()),
                     ("l2", x.norm())):  # fmt: skip
            assert r[k] == pytest.approx(float(v), rel=REL * 1e3), (key, k)


def test_layout_without_split_or_heads_and_without_grads(hf_gpt2):
    tab = build_rows(hf_gpt2, Selection(split_qkv=False, grads=False))
    names = [r.name for r in tab.rows[tab.weights]]
    assert "h.0.attn.c_attn" in names and not any(re.search(r"\.(q|k|v)(\.|$)", n) for n in names)
    assert all(s.splits is None for s in tab.sites)
    assert not any(r.kind == "grad" and r.stream for r in tab.rows)  # no gradient hooks without grads


def test_layout_gqa_sizes_come_from_the_layout_table():
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.n_heads, self.n_kv_heads = 4, 2
            self.qkv = nn.Linear(16, 16 + 8 + 8, bias=False)  # q: 4 heads of 4, k and v: 2 heads of 4

    tab = build_rows(Attn(), Selection(per_head=True))
    spans = {p.row.name: (p.start, p.stop) for p in tab.prows}
    assert spans["q"] == (0, 16) and spans["k"] == (16, 24) and spans["v"] == (24, 32)
    assert [n for n in spans if n.startswith("k.")] == ["k.head0", "k.head1"]
    assert spans["v.head1"] == (28, 32)


def test_layout_separate_projection_heads_and_interleaved_layout_stays_one_row():
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.num_heads = 2
            self.q_proj, self.k_proj, self.v_proj = nn.Linear(8, 8), nn.Linear(8, 4), nn.Linear(8, 4)

    tab = build_rows(Attn(), Selection(per_head=True))
    k = [(p.row.name, p.dim, p.start, p.stop, p.row.qkv, p.row.head) for p in tab.prows if p.row.qkv == "k"]
    assert k == [("k_proj", None, 0, 0, "k", None), ("k_proj.head0", 0, 0, 4, "k", 0),
                 ("k_proj.bias", None, 0, 0, "k", None), ("k_proj.head0.bias", 0, 0, 4, "k", 0)]
    site = next(s for s in tab.sites if s.mname == "k_proj")
    assert site.splits == [None, (0, 4)] and [r.name for r in site.rows] == ["k_proj", "k_proj.head0"]

    class Titan(nn.Module):
        def __init__(self):
            super().__init__()
            self.n_heads, self.n_kv_heads = 4, 2
            self.wqkv = nn.Linear(16, 32)

    with pytest.warns(UserWarning, match="interleaved"):
        tab = build_rows(Titan(), Selection())
    assert [r.name for r in tab.rows[tab.weights]] == ["wqkv", "wqkv.bias"]


def test_row_table_matches_saved_rows():
    tab = build_rows(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), Selection())
    keys = tab.keys()
    assert tab.match_saved(keys) is None
    with pytest.raises(ValueError, match="measured other rows"):
        tab.match_saved(keys[:-1])  # only residual-stream rows may be missing


# -- update tracking ---------------------------------------------------------------------------------------------


def test_update_fields_read_their_named_columns():
    w = np.zeros((2, N_FIELDS))
    w[:, SUMSQ] = [4.0, 9.0]  # ‖w_t‖ = 2, 3
    exact = np.zeros((2, N_FIELDS))
    exact[:, SUMSQ] = [0.01, 0.0]  # ‖Δw‖ = 0.1, 0
    got = update_fields("exact", exact, w)
    np.testing.assert_allclose(got, [[0.1, 0.05], [0.0, 0.0]], rtol=REL)
    norm = np.zeros((3, N_FIELDS))
    norm[:, NUMEL] = 5
    norm[:, NORM_SQ] = [4.0, 1.0, 0.0]
    norm[:, PREV_NORM_SQ] = [2.25, 1.0, 1.0]
    got = update_fields("norm", norm, w)
    assert got.shape == (3, 1)
    assert got[0, 0] == pytest.approx(0.25, rel=REL) and got[1, 0] == 0.0
    assert math.isnan(got[2, 0])  # ‖w_t‖ = 0: no finite ratio


@pytest.mark.parametrize("mode", ["exact", "norm"])
def test_update_tracker_reference_rows_and_state(mode):
    torch.manual_seed(0)
    w0 = [torch.randn(3, 4), torch.randn(5, dtype=torch.float64)]
    w1 = [w + 0.1 * torch.randn_like(w) for w in w0]
    tr = UpdateTracker(mode)
    dev = torch.device("cpu")
    assert tr.due(9, 10) and not tr.due(10, 10) and not UpdateTracker(None).due(9, 10)
    tr.prepare(9, w0, dev)
    assert tr.ready(10) and not tr.ready(11)
    state = tr.state_dict()
    assert state["prev_step"] == 9 and (state["snapshot"] is None) == (mode == "norm")
    other = UpdateTracker(mode)
    other.load_state_dict(state, dev)
    for t in (tr, other):
        if mode == "exact":
            d = t.deltas(w1)
            assert t.norm_rows(w1, torch.ones(2, dtype=torch.float64)) is None
            for a, b, x in zip(w1, w0, d):
                assert torch.equal(x, a - b)
        else:
            assert t.deltas(w1) == []
            u = t.norm_rows(w1, torch.tensor([12.0, 5.0], dtype=torch.float64))
            assert u.shape == (2, N_FIELDS)
            assert u[:, NUMEL].tolist() == [12.0, 5.0]
            for i, (a, b) in enumerate(zip(w1, w0)):
                assert u[i, NORM_SQ].item() == pytest.approx(a.double().square().sum().item(), rel=1e-6)
                assert u[i, PREV_NORM_SQ].item() == pytest.approx(b.double().square().sum().item(), rel=1e-6)
        t.clear()
        assert not t.ready(10)
    with pytest.raises(ValueError, match="update must be one of"):
        UpdateTracker("sometimes")


def test_monitor_update_records_equal_the_weight_change():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    w = model[0].weight
    for mode, field in (("exact", "update_ratio"), ("norm", "norm_change_ratio")):
        mon = VarianceMonitor(model, every=2, update=mode, alerts=None, activations=False, grads=False)
        mon.step()  # step 0 monitored
        before = w.detach().clone()
        mon.step()  # step 1: the reference is taken after it
        with torch.no_grad():
            w.mul_(1.5)
        mon.step()  # step 2 monitored
        recs = {r["name"]: r for r in mon.history if r["kind"] == "update"}
        mon.close()
        after = w.detach().double()
        if mode == "exact":
            want = (after - before.double()).norm() / after.norm()
            assert recs["0"]["delta_l2"] == pytest.approx((after - before.double()).norm().item(), rel=1e-9)
        else:
            want = (after.norm() - before.double().norm()).abs() / after.norm()
        assert recs["0"][field] == pytest.approx(want.item(), rel=1e-5)  # 1/3 both ways: a pure scaling
        assert set(recs["0"]) == {"step", "kind", "name", "layer", *(["delta_l2"] if mode == "exact" else []), field}


def test_weight_views_are_kept_while_the_parameters_are_and_rebuilt_when_one_changes(hf_gpt2):
    """The monitor keeps its weight views (the q/k/v narrows of the fused ``c_attn`` included) from step to step:
    an in-place write keeps them; a new ``.data`` of the same shape and a new Parameter object (neither changes
    the parameters' names, dtypes or shapes, so no re-scan) get new views, and the rows of the next step are the
    current weights' (no stale view)."""
    model = copy.deepcopy(hf_gpt2)
    attn = model.transformer.h[0].attn.c_attn
    mon = VarianceMonitor(model, every=1, alerts=None, activations=False, grads=False, update=None)
    m = mon._measure
    first = m.weight_views()
    assert m.weight_views() is first  # nothing changed: the same views
    changes = {
        "in place": lambda: attn.weight.mul_(2.0),
        "new .data": lambda: setattr(attn.weight, "data", torch.randn_like(attn.weight) + 1.0),
        "new Parameter": lambda: setattr(attn, "weight", nn.Parameter(torch.randn_like(attn.weight) - 1.0)),
    }
    for what, change in changes.items():
        with torch.no_grad():
            change()
        views = m.weight_views()[0]
        assert (views is first[0]) == (what == "in place"), what
        fresh = m.param_views(False)[0]
        assert [(v.data_ptr(), v.shape, v.stride()) for v in views] == [(v.data_ptr(), v.shape, v.stride())
                                                                       for v in fresh], what  # fmt: skip
        mon.step()
        mon.flush()
        rec = next(r for r in mon.history if r["name"] == "h.0.attn.q" and r["step"] == mon.global_step - 1)
        assert rec["mean"] == pytest.approx(attn.weight[:, :16].double().mean().item(), rel=1e-12), what
    mon.close()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
def test_norm_change_of_unchanged_weights_is_exactly_zero(dtype):
    """Both norms of an update row are sums of squares of the same statistics kernel over the same elements: weights
    that did not move read 0, not the rounding difference of two summations (an fp32 norm pass against fp64 sums
    reads ~1e-7). A large weight (2**20 elements: many chunks, both threads) and a small one."""
    model = nn.Sequential(nn.Linear(1024, 1024), nn.Linear(1024, 3)).to(dtype)
    mon = VarianceMonitor(model, every=2, update="norm", alerts=None, activations=False, grads=False)
    for _ in range(5):
        mon.step()
    recs = [r for r in mon.history if r["kind"] == "update"]
    mon.close()
    assert len(recs) == 2 * 4 and all(r["norm_change_ratio"] == 0.0 for r in recs), recs  # 2 steps x 4 params


# -- ring ----------------------------------------------------------------------------------------------------------


def test_ring_wraps_around_and_drains_in_order():
    ring = DeviceRing(drain=2)
    assert ring.capacity == 4 and not ring.allocated
    ring.allocate(3, torch.device("cpu"))
    seen = []
    for step in range(11):
        if ring.full:
            seen += [s for s, *_ in ring.drain(force=1)]
        data = torch.full((3, N_FIELDS), float(step), dtype=torch.float64)
        due = ring.push(step, data, np.array([True, step % 2 == 0, False]))
        data.fill_(-1.0)  # the ring holds a copy
        assert due == (step % 2 == 1)
        if due:
            for s, d, v in ring.drain():
                assert (d == s).all() and d.shape == (3, N_FIELDS) and v.tolist() == [True, s % 2 == 0, False]
                seen.append(s)
    seen += [s for s, *_ in ring.drain(force=-1)]
    assert seen == list(range(11)) and len(ring) == 0  # 11 steps through 4 slots: wrapped around


def test_ring_holds_steps_until_drained_and_checks_drain():
    ring = DeviceRing(drain=3)
    ring.allocate(1, torch.device("cpu"))
    for step in range(5):
        ring.push(step, torch.full((1, N_FIELDS), float(step), dtype=torch.float64), np.ones(1, dtype=bool))
    assert ring.full and len(ring) == 5
    with pytest.raises(AssertionError):
        ring.reset()  # pending steps would be lost
    out = list(ring.drain(force=-1))
    assert [s for s, *_ in out] == [0, 1, 2, 3, 4] and [d[0, 0] for _, d, _ in out] == [0, 1, 2, 3, 4]
    assert not ring.full
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match="drain must be an int >= 1"):
            DeviceRing(bad)


# -- history, records ----------------------------------------------------------------------------------------------


def test_history_state_round_trip_bound_and_missing_rows():
    h = History(max_steps=2)
    fmt = lambda s, d, v: [{"step": s, "x": float(d[0, 0])}]  # noqa: E731
    for s in range(3):
        h.append(s, np.full((2, N_FIELDS), float(s)), np.array([True, False]))
    assert len(h) == 2 and h.records(fmt) == [{"step": 1, "x": 1.0}, {"step": 2, "x": 2.0}]
    state = h.state_dict(2)
    assert state["steps"].tolist() == [1, 2] and state["data"].shape == (2, 2, N_FIELDS)
    assert state["data"].dtype == torch.float64 and state["valid"].dtype == torch.bool
    h2 = History(max_steps=2)
    h2.load_state_dict(state, 2)
    assert h2.records(fmt) == h.records(fmt)
    # a state with fewer rows: the rows it lacks are neutral and not valid
    h3 = History(None)
    h3.load_state_dict(state, 3, where=np.array([0, 2]))
    d = h3.state_dict(3)
    assert d["valid"].tolist() == [[True, False, False], [True, False, False]]
    assert d["data"][0, 1].tolist()[:1] == [NEUTRAL_ROW[COUNT]] and d["data"][1, 2, 0].item() == 2.0
    # archive (a re-scan): the kept steps become records and stay next to the new ones
    h.archive(fmt)
    h.append(3, np.full((2, N_FIELDS), 3.0), np.array([True, True]))
    assert [r["step"] for r in h.records(fmt)] == [2, 3]  # bounded: the newest 2 steps, old or new
    assert h.state_dict(2)["old_steps"] == [[2, [{"step": 2, "x": 2.0}]]]
    with pytest.raises(ValueError, match="history must be None or an int >= 1"):
        History(0)


def test_records_drop_rows_no_forward_reached_and_carry_row_keys():
    tab = build_rows(nn.Sequential(nn.Linear(2, 2)), Selection(grads=False))
    fmt = RecordFormatter(tab, "norm")
    data = np.tile(np.array(NEUTRAL_ROW), (len(tab), 1))
    data[tab.weights, COUNT], data[tab.weights, M2], data[tab.weights, SUMSQ] = 4.0, 2.0, 8.0
    valid = tab.valid(True, False, True, False)
    recs = fmt(7, data, valid)
    assert [(r["kind"], r["name"]) for r in recs] == [("weight", "0"), ("weight", "0.bias")]  # act row: no forward
    assert recs[0]["var"] == 0.5 and recs[0]["rms"] == math.sqrt(2.0) and recs[0]["count"] == 4
    assert list(recs[0]) == ["step", "kind", "name", "layer", "count", *STAT_KEYS, "nonfinite", "zeros"]
    assert recs[0]["l2"] == math.sqrt(8.0) and recs[0]["std"] == math.sqrt(0.5)
    assert Row("act", "x", 1, "q", 0, True) != Row("act", "x", 1, "q", 0)


# -- the one sharded merge -------------------------------------------------------------------------------------------


def test_merge_sharded_is_one_gather_and_a_rank_ordered_merge(monkeypatch):
    import torch.distributed as dist

    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(30, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64) + 1
    plain = torch.randn(7, generator=g, dtype=torch.float64)
    mine = stats_reference([x0, plain, x0])  # rank 0's rows
    theirs = stats_reference([x1, plain * 9, x1])  # rank 1's rows
    calls = []

    def gather(out, local, group=None):
        calls.append(group)
        out.copy_(torch.cat([local, theirs]))

    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "all_gather_single", gather, raising=False)
    monkeypatch.setattr(dist, "all_gather_into_tensor", gather)
    # row 0: sharded, counted; row 1: not sharded (kept as it is); row 2: sharded, a replica on this rank
    got = distributed.merge_sharded(mine, [True, False, True], [True, True, False], merge_stacked, "grp")
    assert calls == ["grp"]
    both = stats_reference([torch.cat([x0, x1])])[0]
    torch.testing.assert_close(got[0], both, rtol=REL, atol=0)
    assert torch.equal(got[1], mine[1])
    torch.testing.assert_close(got[2], theirs[2], rtol=REL, atol=0)  # only rank 1's replica counted
    # device-tensor flags (what the monitor caches) give the same
    got2 = distributed.merge_sharded(mine, torch.tensor([True, False, True]), torch.tensor([True, True, False]),
                                     merge_stacked, "grp", torch.tensor(NEUTRAL_ROW, dtype=torch.float64))
    assert torch.equal(torch.nan_to_num(got2), torch.nan_to_num(got))


def test_local_slice_and_contributes_of_plain_tensors():
    t = torch.arange(12.0).reshape(3, 4)
    v, sharded, contrib = distributed.local_slice(t, 1, 1, 3)
    assert torch.equal(v, t[:, 1:3]) and not sharded and contrib
    assert distributed.local_slice(t, None, 0, 0)[0] is t
    assert distributed.contributes(t)


def test_saved_snapshot_is_a_copy_that_later_steps_leave_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3))
    mon = VarianceMonitor(model, every=2, update="exact", alerts=None, activations=False, grads=False)
    mon.step()
    mon.step()  # step 1: the snapshot of the weights is taken
    state = mon.state_dict()
    saved = [t.clone() for t in state["snapshot"]]
    with torch.no_grad():
        model[0].weight.add_(1.0)
    mon2 = VarianceMonitor(nn.Sequential(nn.Linear(3, 3)), every=2, update="exact", alerts=None)
    mon2.load_state_dict(state)
    mon.step()  # step 2: the live snapshot becomes w_t - w_{t-1} in place
    mon2.step()
    for a, b in zip(state["snapshot"], saved):
        assert torch.equal(a, b)
    mon.close()
    mon2.close()


def test_saved_state_keeps_its_keys_and_update_columns():
    # states written before the package split load unchanged: the same keys in the same order, and the update
    # rows of update="norm" in the columns count / m2 / sumsq of the fp64 block
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2, bias=False))
    w = model[0].weight
    mon = VarianceMonitor(model, every=2, update="norm", alerts=None, activations=False, grads=False)
    mon.step()
    mon.step()
    before = w.detach().double().norm().item()
    with torch.no_grad():
        w.mul_(2.0)
    mon.step()
    st = mon.state_dict()
    mon.close()
    assert list(st) == ["version", "global_step", "every", "update", "rows", "steps", "data", "valid", "prev_sq",
                        "snapshot", "prev_step", "alerts", "old_steps"]
    assert st["rows"] == ["weight:0", "grad:0", "act:0", "update:0"] and st["steps"].tolist() == [0, 2]
    assert st["data"].dtype == torch.float64 and st["data"].shape == (2, 4, N_FIELDS)
    assert st["valid"].tolist() == [[True, False, False, False], [True, False, False, True]]
    u = st["data"][1, 3]
    assert (COUNT, M2, SUMSQ) == (NUMEL, NORM_SQ, PREV_NORM_SQ)
    assert u[COUNT].item() == 6.0
    assert u[M2].item() == pytest.approx((2 * before) ** 2, rel=1e-6)
    assert u[SUMSQ].item() == pytest.approx(before**2, rel=1e-6)
    assert st["prev_sq"] is None and st["snapshot"] is None and st["prev_step"] == 1


# -- alerts on the monitor's columns ------------------------------------------------------------------------------


def test_alerts_on_the_monitors_columns_equal_alerts_on_its_records(hf_gpt2):
    """The monitor checks its alerts on column arrays without building records; the same alerts fed the records of
    its history (``Alerts.check``) raise the same events, in the same order, and end in the same state. Thresholds
    are set so that every detector fires on HF GPT-2 within eight steps (with per-head and update rows, and a NaN
    gradient at step 3 and
    ten times every gradient at step 6), which the test asserts too, so that it compares something."""
    from depthinit.alerts import Alerts

    def alerts():
        return Alerts(std_band={"act": (0.5, 2.0), "grad": (1e-3, None), "weight": (None, 0.05),
                                "update": (None, 1e-9)}, depth_ratio=1.5,
                      spike_k=0.5, spike_window=4, spike_min_history=2,
                      spike_stats=(("grad", "l2"), ("act", "std"), ("update", "norm_change_ratio"),
                                   ("weight", "absmax")))  # fmt: skip

    model = copy.deepcopy(hf_gpt2)
    mon = VarianceMonitor(model, every=1, alerts=alerts(), per_head=True, update="norm")
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    g = torch.Generator().manual_seed(2)
    for step in range(8):
        ids = torch.randint(0, 32, (2, 8), generator=g)
        model(input_ids=ids, labels=ids).loss.backward()
        if step == 3:
            model.transformer.h[1].mlp.c_fc.weight.grad[0, 0] = math.nan
        opt.step()
        if step == 6:  # a spike of every gradient the monitor sees (after the optimizer used them)
            for p in model.parameters():
                p.grad.mul_(10.0)
        mon.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():  # keep the weights finite after the NaN step
            for p in model.parameters():
                p.nan_to_num_(0.0)
    mon.flush()
    events = [e.to_dict() for e in mon.events]
    assert {(e["kind"], e["layer"] == "depth") for e in events} >= {("nonfinite", False), ("vanishing", False),
                                                                    ("exploding", False), ("spike", False)}
    assert any(e["layer"] == "depth" for e in events)
    assert any(e["source"] == "update" for e in events) and any(e["layer"] == "<total>" for e in events)
    ref = alerts()
    by_step: dict[int, list[dict]] = {}
    for r in mon.history:
        by_step.setdefault(r["step"], []).append(r)
    for step, recs in sorted(by_step.items()):
        ref.check(step, recs)
    assert [e.to_dict() for e in ref.events] == events
    assert ref.state_dict() == mon.alerts.state_dict()
    mon.close()


def test_gradient_views_from_the_cached_weights_equal_the_general_ones(hf_gpt2):
    """The monitor takes gradient views from its cached weight list (plain parameters); they are the views of
    the general path (same memory, shape and strides, the per-head and q / k / v pieces included), and a
    parameter without a gradient is absent in both."""
    from depthinit.monitor.measure import StepMeasure

    model = copy.deepcopy(hf_gpt2)
    mon = VarianceMonitor(model, every=1, per_head=True)
    x = torch.randint(0, 32, (2, 8), generator=torch.Generator().manual_seed(0))
    model(x, labels=x).loss.backward()
    model.transformer.h[1].mlp.c_fc.weight.grad = None
    measure = mon._measure
    assert isinstance(measure, StepMeasure)
    measure.weight_views()
    assert measure._weights is not None  # the fast path is the one compared

    def key(views):
        return [(v.data_ptr(), tuple(v.shape), v.stride()) for v in views[0]], views[1:]

    fast, general = measure.grad_views(), measure.param_views(True)
    assert len(fast[0]) > len(list(model.parameters())) and not all(fast[3])  # pieces, and one absent
    assert key(fast) == key(general)
    mon.close()
