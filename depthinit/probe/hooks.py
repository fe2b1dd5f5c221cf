"""Hook capture for the probe and the calibration: which modules to measure, one hooked forward (and
backward) pass, and the fused statistics of what it captured.

The captured tensors of one pass go to ONE :func:`depthinit.layer_stats` call and one host transfer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..outputs import first_floating, primary_output
from ..roles import weight_bearing

__all__ = ["default_modules", "resolve_modules", "first_tensor", "check_input", "stats_host", "capture"]


def default_modules(model: nn.Module) -> list[str]:
    """Names of the weight-bearing leaf modules of ``model`` (Linear, Conv, ...), in model order."""
    return [n for n, m in model.named_modules() if weight_bearing(m) and not any(True for _ in m.children())]


def resolve_modules(model: nn.Module, modules: Sequence[str | nn.Module] | None) -> list[str]:
    """The names to measure: ``modules`` (names or submodules of ``model``), or :func:`default_modules`.

    Raises:
        ValueError: a name or module that is not part of the model, an empty selection, or (by default) a
            model without weight-bearing leaf modules.
    """
    if modules is None:
        names = default_modules(model)
        if not names:
            raise ValueError(
                f"{type(model).__name__} has no weight-bearing leaf modules (Linear, Conv, ...) to probe; pass "
                "modules=[names] to choose what to measure"
            )
        return names
    by_id = {id(m): n for n, m in model.named_modules()}
    valid = dict(model.named_modules())
    names = []
    for m in modules:
        if isinstance(m, nn.Module):
            if id(m) not in by_id:
                raise ValueError(f"module {type(m).__name__} given in modules= is not part of the model")
            names.append(by_id[id(m)])
        elif isinstance(m, str) and m in valid:
            names.append(m)
        else:
            some = ", ".join(list(valid)[1:6])
            raise ValueError(f"modules=: {m!r} names no submodule of the model (e.g. {some}, ...)")
    if not names:
        raise ValueError("modules= is empty: nothing to probe")
    return names


def first_tensor(out: Any) -> torch.Tensor | None:
    """The first tensor in ``out`` (a tensor, or nested tuples, lists and dicts), else None."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        for o in out:
            t = first_tensor(o)
            if t is not None:
                return t
    if isinstance(out, dict):
        for o in out.values():
            t = first_tensor(o)
            if t is not None:
                return t
    return None


def check_input(example_input: Any) -> None:
    """ValueError unless ``example_input`` is a tensor or a tuple/list/dict holding one."""
    if first_tensor(example_input) is None:
        raise ValueError(
            f"example_input must be a tensor (or a tuple/dict holding one), got {type(example_input).__name__}"
        )


def stats_host(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[float, float, float]]:
    """``{name: (var, mean, n_nonfinite)}`` from ONE ``layer_stats`` call and one host transfer."""
    if not tensors:
        return {}
    from ..stats import layer_stats

    st = layer_stats(tensors)
    host = torch.stack([st.var, st.mean, st.nonfinite]).double().cpu().tolist()
    return {n: (host[0][i], host[1][i], host[2][i]) for i, n in enumerate(st.names)}


def capture(
    model: nn.Module,
    x: Any,
    names: Sequence[str],
    *,
    inputs_of: Sequence[str] = (),
    backward: bool = False,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
    seed: int = 0,
) -> tuple[list[str], dict[str, torch.Tensor], dict[str, torch.Tensor], Any]:
    """Run ``model(x)`` with hooks: the output of each module in ``names`` (first call only), the input of
    each module in ``inputs_of`` (keys ``"<name>:in"``), and with ``backward`` the gradient with respect to
    each captured output. Returns ``(call order, forward tensors, gradients, model output)``.

    Parameters' ``.grad`` are left untouched (``torch.autograd.grad``).
    """
    mods = dict(model.named_modules())
    order: list[str] = []
    fwd: dict[str, torch.Tensor] = {}
    grads: dict[str, torch.Tensor] = {}
    handles = []

    def out_hook(name: str):
        def hook(_m, _inp, out):
            if name in fwd:
                return
            t = first_floating(out)
            if t is None:
                return
            order.append(name)
            fwd[name] = t.detach().clone()  # clone: an in-place activation may overwrite the output
            if backward and t.requires_grad:
                t.register_hook(lambda g: grads.setdefault(name, g.detach()))

        return hook

    def in_hook(name: str):
        def hook(_m, args):
            key = name + ":in"
            t = first_tensor(args)
            if key not in fwd and t is not None:
                fwd[key] = t.detach().clone()

        return hook

    try:
        for n in names:
            handles.append(mods[n].register_forward_hook(out_hook(n)))
        for n in inputs_of:
            handles.append(mods[n].register_forward_pre_hook(in_hook(n)))
        out = None
        with torch.enable_grad() if backward else torch.no_grad():
            out = model(x)
            if backward:
                wrt = [p for p in model.parameters() if p.requires_grad]
                if loss_fn is None:  # the standard-normal backward from the output (its logits if it has any)
                    y = primary_output(out)
                    if y is None:
                        raise ValueError(f"the model's output ({type(out).__name__}) holds no floating-point tensor "
                                         "to send the standard-normal gradient back from; pass loss_fn=")
                    g = torch.Generator().manual_seed(seed)
                    r = torch.randn(y.shape, generator=g, dtype=torch.float32).to(device=y.device, dtype=y.dtype)
                    y, grad_outputs, what = y, r, "the model's output"
                else:
                    y = loss_fn(out)
                    if not (isinstance(y, torch.Tensor) and y.numel() == 1 and y.is_floating_point()):
                        raise ValueError(f"loss_fn must return a floating-point scalar tensor, got "
                                         f"{type(y).__name__}{tuple(y.shape) if isinstance(y, torch.Tensor) else ''}")
                    grad_outputs, what = None, "loss_fn(output)"
                if not (y.requires_grad and wrt):
                    raise ValueError(f"{what} does not depend on any parameter that requires grad")
                torch.autograd.grad(y, wrt, grad_outputs=grad_outputs, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    return order, fwd, grads, out
