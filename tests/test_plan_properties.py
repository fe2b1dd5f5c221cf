"""Property tests: random module trees -> the plan covers every floating parameter exactly once (tied ones
once), and applying it twice with the same seed is bitwise identical."""

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import depthinit as di

LEAVES = ("linear", "conv1d", "conv2d", "embedding", "layernorm", "batchnorm", "frozen", "buffer", "intparam")


def make_leaf(kind: str, width: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(width, width)
    if kind == "conv1d":
        return nn.Conv1d(width, width, 3)
    if kind == "conv2d":
        return nn.Conv2d(width, width, 2, bias=False)
    if kind == "embedding":
        return nn.Embedding(7, width)
    if kind == "layernorm":
        return nn.LayerNorm(width)
    if kind == "batchnorm":
        return nn.BatchNorm1d(width)
    if kind == "frozen":
        m = nn.Linear(width, 2)
        m.requires_grad_(False)
        return m
    if kind == "buffer":
        m = nn.Linear(width, width)
        m.register_buffer("scale", torch.ones(width))
        return m
    m = nn.Module()
    m.count = nn.Parameter(torch.zeros(2, dtype=torch.int32), requires_grad=False)
    return m


@st.composite
def module_trees(draw):
    width = draw(st.integers(1, 5))

    def node(depth):
        if depth == 0 or draw(st.booleans()):
            return make_leaf(draw(st.sampled_from(LEAVES)), width)
        children = [node(depth - 1) for _ in range(draw(st.integers(1, 3)))]
        if draw(st.booleans()):
            blocks = nn.ModuleList(children)
            holder = nn.Module()
            holder.layers = blocks
            return holder
        return nn.Sequential(*children)

    root = node(draw(st.integers(1, 3)))
    linears = [m for m in root.modules() if isinstance(m, nn.Linear) and m.weight.shape[0] == m.weight.shape[1]]
    if len(linears) >= 2 and draw(st.booleans()):
        linears[-1].weight = linears[0].weight  # tie
    return root


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=module_trees(), seed=st.integers(0, 2**64 - 1),
       scheme=st.sampled_from(["he", "xavier", "lecun", "depth_aware", "gpt2", "orthogonal", "trunc_normal"]))
def test_plan_covers_every_floating_parameter_once(model, seed, scheme):
    p = di.plan(model, scheme, seed=seed)
    unique = {id(t): n for n, t in model.named_parameters()}
    floating = {n for n, t in model.named_parameters() if t.is_floating_point()}
    planned = [r.name for r in p]
    assert len(planned) == len(set(planned))
    assert set(planned) == floating
    assert {s[0] for s in p.skipped} == set(unique.values()) - floating
    all_names = {n for n, t in model.named_parameters(remove_duplicate=False) if t.is_floating_point()}
    covered = set(planned) | {t for r in p for t in r.tied}
    assert covered == all_names

    p.apply()
    rows = {r.name: r for r in p}
    kept = {id(t) for n, t in model.named_parameters() if n in rows and rows[n].distribution == "keep"}
    assert kept == {id(t) for t in model.parameters() if t.is_floating_point() and not t.requires_grad}
    first = [t.detach().clone() for t in model.parameters()]
    for t in model.parameters():
        if t.is_floating_point():
            t.data.normal_()
    moved = [t.detach().clone() for t in model.parameters()]
    p.apply()
    for a, c, b in zip(first, moved, model.parameters()):
        # planned rows come back bit for bit; frozen parameters (kept rows) are left as they are
        assert torch.equal(c if id(b) in kept else a, b)
