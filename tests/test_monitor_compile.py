"""VarianceMonitor under torch.compile (CPU, inductor): hooks registered before compiling are traced into
the graph, and the records match an eager run of the same training.

Tolerance ``rel=1e-4``: weights and gradients are measured outside the graph by the same code, but the
compiled forward/backward round fp32 differently from eager (fused kernels, another summation order),
so the trained values drift by a few fp32 ulps per step (~1e-6 relative after 4 steps); activations are
reduced inside the graph in fp64 (``stats_reference``) instead of the eager fused path. 1e-4 leaves two
decades of margin over the observed 1e-6 and still catches a wrong row (errors of order 1).
"""

from __future__ import annotations

import pytest
import torch

from depthinit import models
from depthinit.monitor import VarianceMonitor

pytestmark = pytest.mark.slow


def run(compiled: bool):
    torch.manual_seed(0)
    model = models.mlp(depth=3, width=16, in_features=8, out_features=4)
    mon = VarianceMonitor(model, every=2, alerts=None)  # before compiling: hooks are part of the graph
    fwd = torch.compile(model) if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 8, generator=g), torch.randn(32, 4, generator=g)
    for _ in range(4):
        ((fwd(x) - y) ** 2).mean().backward()
        opt.step()
        mon.step()
        opt.zero_grad()
    mon.close()
    return mon.history


def test_compiled_model_records_match_eager():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    eager = run(False)
    counters.clear()
    comp = run(True)
    assert not counters["graph_break"], dict(counters["graph_break"])  # the hooks trace into one graph
    key = lambda r: (r["step"], r["kind"], r["name"])  # noqa: E731
    assert [key(r) for r in eager] == [key(r) for r in comp]
    assert {r["step"] for r in comp if r["kind"] == "act"} == {0, 2}  # hooks active on monitored steps only
    assert {r["name"] for r in comp if r["kind"] == "act"} == {"0", "2", "4"}
    for a, b in zip(eager, comp):
        for k in ("count", "nonfinite", "zeros"):
            if k in a:
                assert a[k] == b[k], (key(a), k)
        for k in ("mean", "std", "min", "max", "l2", "norm_change_ratio"):
            if k in a:
                assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-7), (key(a), k)


def train(model, fwd, mon, opt, data, steps):
    for x, y in data[:steps]:
        ((fwd(x) - y) ** 2).mean().backward()
        opt.step()
        mon.step()
        opt.zero_grad()


def resumed_run(how: str):
    """Three eager steps, then a new monitor resumed from the state at step 3 (an unmonitored step: the
    modules' hooks come off at its first eager forward, unless compiled), the model compiled ``how`` ("" for
    eager), 4 steps."""
    torch.manual_seed(0)
    model = models.mlp(depth=3, width=16, in_features=8, out_features=4)
    if how == "wrapped":  # each Linear replaced by its torch.compile wrapper before the monitor is made
        for i in (0, 2, 4):
            model[i] = torch.compile(model[i])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(32, 8, generator=g), torch.randn(32, 4, generator=g)) for _ in range(7)]
    mon = VarianceMonitor(model, every=2, alerts=None)
    train(model, model, mon, opt, data, 3)
    state = mon.state_dict()
    mon.close()
    mon = VarianceMonitor(model, every=2, alerts=None)
    mon.load_state_dict(state)
    ((model(data[3][0]) - data[3][1]) ** 2).mean()  # a forward of the idle step 3
    assert mon._capture.attached == (how == "wrapped")
    fwd = model
    if how == "model":
        fwd = torch.compile(model)
    elif how == "modules":  # in place, module by module (as torchtitan compiles its blocks)
        for m in model:
            m.compile()
    train(model, fwd, mon, opt, data[3:], 4)
    mon.close()
    return [dict(r, name=r["name"].replace("._orig_mod", "")) for r in mon.history if r["kind"] == "act"]


@pytest.mark.parametrize("how", ["model", "modules", "wrapped"])
def test_a_model_compiled_on_an_unmonitored_step_still_records_activations(how):
    """Dynamo never re-reads a module's hooks (``skip_nnmodule_hook_guards``): compiled while the idle hooks
    are off, a graph must be traced again with them, or the monitored steps record no activation."""
    torch._dynamo.reset()
    eager, comp = resumed_run(""), resumed_run(how)
    assert {r["step"] for r in eager} == {0, 2, 4, 6}  # 0 and 2 from the saved state
    assert [(r["step"], r["name"]) for r in comp] == [(r["step"], r["name"]) for r in eager]
    for a, b in zip(eager, comp):
        assert b["count"] == a["count"]
        for k in ("mean", "std", "min", "max"):
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-7), (a["step"], a["name"], k)
