"""What the probe and the monitor read off a model: its primary output and its residual blocks.

* :func:`first_floating` / :func:`primary_output`: the tensor a module's output stands for, whatever its
  shape: a tensor, a tuple / list, a dict, a dataclass or an HF ``ModelOutput`` (an ordered dict).
* :func:`residual_blocks`: the residual blocks of a network (the items of its block stack whose output is
  the residual stream), found from the roles of its parameters: a block is the container item (an entry
  of an ``nn.ModuleList`` / ``nn.ModuleDict`` / ``nn.Sequential``) that holds a residual output projection
  (roles ``attn_out`` / ``mlp_out`` of :mod:`depthinit.roles`, the rows a plan scales with depth).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .schemes import RESIDUAL_OUT_ROLES

_CONTAINERS = (nn.ModuleList, nn.ModuleDict, nn.Sequential)


def first_floating(out: Any, _depth: int = 0) -> torch.Tensor | None:
    """The first floating-point tensor of ``out``, depth first: ``out`` itself, the items of a tuple or list,
    the values of a dict / ``ModelOutput`` in order, the fields of a dataclass; None if there is none.

    Integer and boolean tensors (token ids, masks, indices) are skipped. Only the first floating tensor is
    taken: by convention it is the module's output (HF returns the hidden states first, attention weights
    and caches after), and mixing attention probabilities into hidden-state statistics would be wrong.
    """
    if isinstance(out, torch.Tensor):
        return out if out.is_floating_point() else None
    if _depth > 8 or out is None or isinstance(out, (str, bytes, int, float, bool)):
        return None
    if isinstance(out, Mapping):
        items = list(out.values())
    elif isinstance(out, (tuple, list)):
        items = list(out)
    elif dataclasses.is_dataclass(out) and not isinstance(out, type):
        items = [getattr(out, f.name, None) for f in dataclasses.fields(out)]
    else:
        return None
    for o in items:
        t = first_floating(o, _depth + 1)
        if t is not None:
            return t
    return None


def primary_output(out: Any) -> torch.Tensor | None:
    """The tensor a model's output stands for: ``out.logits`` (or ``out["logits"]``) when it has one (HF
    causal-LM / classification outputs, whose first field may be the loss), else :func:`first_floating`."""
    logits = out.get("logits") if isinstance(out, Mapping) else getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor) and logits.is_floating_point():
        return logits
    return first_floating(out)


def _container_items(model: nn.Module, pname: str) -> list[str]:
    """Module paths along ``pname`` (top-down) that are items of a ModuleList / ModuleDict / Sequential."""
    parts = pname.split(".")[:-1]
    out, mod = [], model
    for i, p in enumerate(parts):
        child = mod._modules.get(p) if hasattr(mod, "_modules") else None
        if child is None:
            break
        if isinstance(mod, _CONTAINERS):
            out.append(".".join(parts[: i + 1]))
        mod = child
    return out


def residual_blocks(model: nn.Module, roles: Mapping[str, str] | None = None) -> list[str]:
    """Names of the residual blocks of ``model`` in registration order, ``[]`` if it has fewer than two.

    Args:
        model: the network.
        roles: ``{parameter name: role}``, e.g. ``{r.name: r.role for r in plan.rows}`` (tied names too);
            default: :func:`depthinit.roles.locate` on the model's parameters (what a plan would say).

    A block is the outermost container item that holds a residual output projection and does not hold
    them all (a model that is itself an ``nn.Sequential`` around its block stack still has its blocks).
    """
    if roles is None:
        from .roles import locate

        names = list(dict(model.named_parameters()))
        roles = {n: loc.role for n, loc in locate(model, names).items()} if names else {}
    chains = [_container_items(model, n) for n, r in roles.items() if r in RESIDUAL_OUT_ROLES]
    chains = [c for c in chains if c]
    if not chains:
        return []
    common = set(chains[0]).intersection(*chains[1:])
    blocks = {next((p for p in c if p not in common), None) for c in chains}
    blocks.discard(None)
    if len(blocks) < 2:
        return []
    order = [n for n, _ in model.named_modules()]
    return sorted(blocks, key=order.index)
