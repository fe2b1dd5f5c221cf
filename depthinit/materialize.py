"""Materialization: a model built on the ``meta`` device, allocated once on its target and filled once.

>>> with torch.device("meta"):
...     model = GPT(config)
>>> plan = di.materialize(model, device="cuda", scheme="gpt2", seed=0)

Parameters are allocated uninitialized on the target, each distinct (tied) parameter once, as
``Module.to_empty`` does but keeping ties (no CPU copy, no default init), and filled through the plan in
one fused launch per device. Buffers have no values on ``meta``, so each module that owns buffers
re-creates them, in this order of preference:

1. ``buffers=callback``: ``callback(module_name, module)`` for every module that owns buffers;
2. the module's ``reset_running_stats()`` (BatchNorm and friends);
3. the module's ``reset_parameters()`` or ``init_weights()`` (rotary tables, masks); it runs before the
   plan is applied, so the plan's values win for that module's parameters;
4. otherwise a ``ValueError`` names the buffers: never uninitialized memory in a model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .plan import InitPlan, plan

BufferInit = Callable[[str, nn.Module], None]


def materialize(
    model: nn.Module,
    device: str | torch.device = "cuda",
    scheme: str = "he",
    *,
    seed: int = 0,
    init_plan: InitPlan | None = None,
    buffers: BufferInit | None = None,
    backend: str = "auto",
    **options: Any,
) -> InitPlan:
    """Allocate a meta-device model on ``device`` and fill it with ``scheme`` (or ``init_plan``).

    Args:
        model: a module whose parameters are on ``meta`` (a module already materialized is refused).
        device: target device.
        scheme, seed, **options: as :func:`depthinit.plan`; ignored when ``init_plan`` is given.
        init_plan: a ready plan (e.g. loaded with ``InitPlan.from_json``).
        buffers: ``callback(module_name, module)`` that fills a module's buffers (see the module docs).
        backend: ``auto``, ``torch`` or ``triton``.

    Returns:
        The plan that was applied.
    """
    params = list(model.parameters())
    if not params or not all(p.is_meta for p in params):
        raise ValueError("materialize() takes a model whose parameters are all on the meta device "
                         "(build it under `with torch.device('meta'):`); use plan(...).apply() for a real model")
    p = init_plan if init_plan is not None else plan(model, scheme, seed=seed, **options)
    check_memory(p, device)
    _allocate(model, torch.device(device))
    _init_buffers(model, buffers)
    p.model = model
    p.apply(model, backend=backend)
    return p


def _allocate(model: nn.Module, device: torch.device) -> None:
    """``Module.to_empty`` that keeps ties: each distinct parameter is allocated once (uninitialized) and
    every slot that shared it on ``meta`` shares the new tensor. (``to_empty`` from meta allocates each slot
    separately, which both unties weights and allocates tied ones twice.)"""
    new: dict[int, nn.Parameter] = {}
    for mod in model.modules():
        for name, prm in mod._parameters.items():
            if prm is None:
                continue
            if id(prm) not in new:
                new[id(prm)] = nn.Parameter(torch.empty_like(prm, device=device), requires_grad=prm.requires_grad)
            mod._parameters[name] = new[id(prm)]
        for name, buf in mod._buffers.items():
            if buf is not None:
                mod._buffers[name] = torch.empty_like(buf, device=device)


def _init_buffers(model: nn.Module, callback: BufferInit | None) -> None:
    missing = []
    with torch.no_grad():
        for name, mod in model.named_modules():
            own = [b for b in mod._buffers.values() if b is not None]
            if not own:
                continue
            if callback is not None:
                callback(name, mod)
            elif hasattr(mod, "reset_running_stats"):
                mod.reset_running_stats()
            elif hasattr(mod, "reset_parameters"):
                mod.reset_parameters()
            elif hasattr(mod, "init_weights"):
                mod.init_weights()
            else:
                missing += [f"{name}.{b}" if name else b for b, t in mod._buffers.items() if t is not None]
    if missing:
        raise ValueError(
            f"buffers {', '.join(missing)} have no values after materialization and their modules have no "
            "reset_running_stats/reset_parameters/init_weights: pass buffers=callback(module_name, module)"
        )


def check_memory(p: InitPlan, device: str | torch.device) -> None:
    """Refuse, before allocating, a plan whose parameters do not fit in the target's free memory."""
    need = sum(r.numel * torch.empty((), dtype=_dtype(r.dtype), device="meta").element_size() for r in p.rows)
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(dev)
    elif dev.type == "cpu":
        free = _available_host_memory()
    else:
        return
    if free is not None and need > free:
        raise MemoryError(
            f"materializing needs {need / 2**30:.2f} GiB of parameters on {dev}, but only {free / 2**30:.2f} GiB "
            "is available; shard the model (FSDP2 / DTensor) or use a smaller one"
        )


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name.replace("torch.", ""))


def _available_host_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
