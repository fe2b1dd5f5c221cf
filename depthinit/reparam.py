"""Parameters whose right value follows from another one: weight-norm magnitudes and padding rows.

* ``torch.nn.utils.parametrizations.weight_norm`` (``parametrizations.weight.original0`` = g,
  ``original1`` = v) and the older ``torch.nn.utils.weight_norm`` (``weight_g``, ``weight_v``): the plan
  draws the direction ``v`` as the layer's weight (its role and fans), and after the fill the magnitude is
  set through the parametrization (``right_inverse``: ``g = ‖v‖``), so the effective weight is exactly the
  planned one. A plan never draws ``g`` itself (as a ``[out, 1]`` weight it would get fan_in 1).
* ``nn.Embedding(padding_idx=i)``: row ``i`` stays zero after the fill, as ``reset_parameters`` and HF keep
  it (its gradient is masked, so a non-zero padding row would stay wrong for ever).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

MAGNITUDE_NOTE = "weight-norm magnitude: set to the norm of its direction after the fill"


@dataclass
class Alias:
    """A parameter slot that stands for a module's weight: ``(module, module path, weight name)``."""

    module: nn.Module
    path: str
    tensor: str


def weight_aliases(model: nn.Module) -> tuple[dict[str, Alias], dict[str, str]]:
    """``(aliases, derived)``: parameter names that are a parametrized weight's direction (planned as that
    weight), and names whose value is derived after the fill (name -> note)."""
    aliases: dict[str, Alias] = {}
    derived: dict[str, str] = {}
    for mpath, mod in model.named_modules():
        pre = f"{mpath}." if mpath else ""
        if parametrize.is_parametrized(mod):
            for tname, plist in mod.parametrizations.items():
                base = f"{pre}parametrizations.{tname}"
                if getattr(plist, "is_tensor", True):
                    aliases[f"{base}.original"] = Alias(mod, mpath, tname)
                    continue
                shape = _parametrized_shape(mod, tname)
                for i in range(len([k for k in plist._parameters if k.startswith("original")])):
                    name, orig = f"{base}.original{i}", getattr(plist, f"original{i}")
                    if shape is not None and tuple(orig.shape) == shape and not any(
                            a.module is mod and a.tensor == tname for a in aliases.values()):
                        aliases[name] = Alias(mod, mpath, tname)
                    else:
                        derived[name] = MAGNITUDE_NOTE
        for hook in mod._forward_pre_hooks.values():
            if type(hook).__name__ == "WeightNorm":
                aliases[f"{pre}{hook.name}_v"] = Alias(mod, mpath, hook.name)
                derived[f"{pre}{hook.name}_g"] = MAGNITUDE_NOTE
    return aliases, derived


def _parametrized_shape(mod: nn.Module, tname: str) -> tuple[int, ...] | None:
    plist = mod.parametrizations[tname]
    originals = [getattr(plist, k) for k in plist._parameters if k.startswith("original")]
    if any(o.is_meta for o in originals):
        return max((tuple(o.shape) for o in originals), key=lambda s: (len(s), s))
    with torch.no_grad():
        return tuple(getattr(mod, tname).shape)


_PADDED = (nn.Embedding, nn.EmbeddingBag)  # the tables whose padding row torch keeps at zero


def padding_rows(model: nn.Module) -> dict[str, int]:
    """``weight name -> padding index`` of every embedding with a ``padding_idx``."""
    out = {}
    for mpath, mod in model.named_modules():
        if isinstance(mod, _PADDED) and mod.padding_idx is not None and mod.weight is not None:
            out[f"{mpath}.weight" if mpath else "weight"] = int(mod.padding_idx)
    return out


def finishes(mod: nn.Module) -> bool:
    """Whether :func:`finish` may have work on ``mod`` (a cheap test on its own dicts, no attribute lookups)."""
    return isinstance(mod, _PADDED) or bool(mod._forward_pre_hooks) or "parametrizations" in mod._modules


def finish(model: nn.Module, modules: Iterable[nn.Module] | None = None) -> None:
    """After a fill: zero the padding rows, set weight-norm magnitudes from their directions.

    ``modules``: the modules of ``model`` to look at (default all; a caller that walked the model already
    passes those for which :func:`finishes` holds)."""
    from .distributed import is_dtensor

    with torch.no_grad():
        for mod in model.modules() if modules is None else modules:
            if isinstance(mod, _PADDED) and mod.padding_idx is not None and mod.weight is not None:
                if is_dtensor(mod.weight):
                    from torch.distributed.tensor import distribute_tensor

                    w = mod.weight
                    full = w.full_tensor()
                    full[mod.padding_idx].zero_()
                    w.to_local().copy_(distribute_tensor(full, w.device_mesh, w.placements).to_local())
                else:
                    mod.weight[mod.padding_idx].zero_()
            if parametrize.is_parametrized(mod):
                for tname, plist in mod.parametrizations.items():
                    if getattr(plist, "is_tensor", True):
                        continue
                    shape = _parametrized_shape(mod, tname)
                    for k in list(plist._parameters):
                        orig = getattr(plist, k)
                        if tuple(orig.shape) == shape:
                            plist.right_inverse(orig.detach().clone())
                            break
            for hook in mod._forward_pre_hooks.values():
                if type(hook).__name__ == "WeightNorm":
                    g, v = getattr(mod, f"{hook.name}_g"), getattr(mod, f"{hook.name}_v")
                    g.copy_(torch.norm_except_dim(v, 2, hook.dim))
