"""``plan.apply()`` again on the same plan: the cached targets and tables give bitwise the values of a fresh
plan, and any change of the model (a replaced, reallocated or re-viewed parameter, a replaced module) or of
the rows is seen, never filled through stale pointers."""

import pytest
import torch
from torch import nn

import depthinit as di


class Net(nn.Module):
    """Embedding with a padding row, Linear layers, LayerNorm, a head tied to the embedding."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(40, 24, padding_idx=3)
        self.layers = nn.ModuleList(nn.Linear(24, 24) for _ in range(4))
        self.norm = nn.LayerNorm(24)
        self.head = nn.Linear(24, 40, bias=False)
        self.head.weight = self.emb.weight


def build(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return Net()


def scribble(model: nn.Module) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))


def fresh_values(scheme: str = "he", edit=None, seed: int = 5, **options) -> dict[str, torch.Tensor]:
    """A new model and a new plan, applied once: the oracle for the cached path."""
    model = build(1)
    plan = di.plan(model, scheme, seed=seed, **options)
    if edit:
        edit(model, plan)
    plan.apply()
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def assert_bitwise(model: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    got = dict(model.named_parameters())
    assert got.keys() == expected.keys()
    for n, want in expected.items():
        assert torch.equal(got[n].detach(), want), n
        assert not torch.isnan(got[n]).any(), n


@pytest.mark.parametrize("scheme", ["he", "gpt2", "orthogonal"])
def test_cached_apply_is_bitwise_a_fresh_plan(scheme):
    model = build()
    plan = di.plan(model, scheme, seed=5)
    plan.apply()
    cached = plan._cache["apply"]
    for _ in range(2):
        scribble(model)
        plan.apply()
        assert plan._cache["apply"] is cached  # the fast path was taken
        assert_bitwise(model, fresh_values(scheme))
    assert float(model.emb.weight.detach()[3].abs().max()) == 0.0  # padding row zeroed on the cached path too


def test_cached_apply_follows_the_seed():
    model = build()
    plan = di.plan(model, "he", seed=5)
    plan.apply()
    plan.seed = 11
    scribble(model)
    plan.apply()
    assert_bitwise(model, fresh_values(seed=11))


def _replace_parameter(model):
    model.layers[2].weight = nn.Parameter(torch.full((24, 24), float("nan")))


def _reallocate(model):
    model.layers[1].weight.data = torch.full((24, 24), float("nan"))


def _transposed_view(model):  # same storage and pointer, other strides: the fill must follow the new layout
    w = model.layers[0].weight
    w.data = w.data.t()


def _replace_module(model):
    model.layers[3] = nn.Linear(24, 24)
    scribble(model.layers[3])


def _cast(model):
    model.double()


@pytest.mark.parametrize(
    "change", [_replace_parameter, _reallocate, _transposed_view, _replace_module, _cast], ids=lambda f: f.__name__
)
def test_a_changed_model_is_filled_correctly(change):
    model = build()
    plan = di.plan(model, "he", seed=5)
    plan.apply()
    change(model)
    scribble(model)
    plan.apply()

    def same_change(m, _plan):
        change(m)

    assert_bitwise(model, fresh_values(edit=same_change))


def test_an_edited_row_is_filled_as_edited():
    model = build()
    plan = di.plan(model, "he", seed=5)
    plan.apply()
    plan["layers.1.weight"].std = 0.5
    scribble(model)
    plan.apply()

    def edit(_m, p):
        p["layers.1.weight"].std = 0.5

    assert_bitwise(model, fresh_values(edit=edit))
    assert float(model.layers[1].weight.std()) == pytest.approx(0.5, rel=0.2)


def test_a_deleted_parameter_is_refused_on_the_cached_path():
    model = build()
    plan = di.plan(model, "he", seed=5)
    plan.apply()
    del model.layers[2].bias
    model.layers[2].register_parameter("bias", None)
    with pytest.raises(ValueError, match="layers.2.bias"):
        plan.apply()


def test_many_small_tensors_cached_path():
    """Large enough to take the C kernel's many-tensor path; the cached call equals the first call."""
    model = nn.Sequential(*(nn.Linear(16, 16, bias=False) for _ in range(300)))
    plan = di.plan(model, "normal", seed=2)
    plan.apply()
    first = [p.detach().clone() for p in model.parameters()]
    scribble(model)
    plan.apply()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), first))
