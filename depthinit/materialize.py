"""Materialization: a model built on the ``meta`` device, allocated once on its target and filled once.

>>> with torch.device("meta"):
...     model = GPT(config)
>>> plan = di.materialize(model, device="cuda", scheme="gpt2", seed=0)

Parameters are allocated uninitialized on the target, each distinct (tied) parameter once, as
``Module.to_empty`` does but keeping ties (no CPU copy, no default init), and filled through the plan in
one fused launch per device. Buffers that hold values (a model built under accelerate's
``init_empty_weights()``: parameters on meta, buffers real, as HF Llama's rotary ``inv_freq`` or BERT's
``position_ids``) are moved to the target as they are. Buffers on ``meta`` have no values, so each module
that owns one re-creates it, in this order of preference:

1. ``buffers=callback``: ``callback(module_name, module)`` for every module that owns meta buffers;
2. the module's ``reset_running_stats()`` (BatchNorm and friends);
3. the module's ``reset_parameters()`` or ``init_weights()`` (rotary tables, masks); it runs before the
   plan is applied, so the plan's values win for that module's parameters.

Nothing is left uninitialized: before allocating, each method runs once on meta tensors, and a buffer it
does not write (a causal ``mask`` that ``reset_parameters`` leaves alone, spectral norm's ``u``/``v``), or a
parameter the plan does not define (``keep`` rows: a 1-D ``temperature``, residual scalars under a scheme
that does not set them) and no ``reset_parameters()`` writes, refuses the model, naming them. A callback's
writes are checked after it runs; anything it misses is refused the same way and the model goes back to
``meta``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .plan import InitPlan, plan

BufferInit = Callable[[str, nn.Module], None]
_BUFFER_METHODS = ("reset_running_stats", "_init_self_buffers", "reset_parameters", "init_weights")


_HF_CHAIN = "_init_weights of the module and its containers"


def _candidates(model: nn.Module, name: str, mod: nn.Module,
                params_only: bool) -> list[tuple[str, Callable[[], None]]]:
    """The ways to re-create a module's buffers (and, with ``params_only``, its undefined parameters): its
    own methods (torchtitan's ``_init_self_buffers`` included), then the model's HF ``_init_weights(module)``
    (rotary ``inv_freq``, BERT's ``position_ids``). For parameters of an HF model its own ``_init_weights``
    comes first, applied to the module and then to each container up the tree, as HF's init reaches them
    (Whisper's frozen sinusoidal ``embed_positions`` is written by the encoder's branch, not the embedding's)."""
    root = getattr(model, "_init_weights", None)
    out: list[tuple[str, Callable[[], None]]] = []
    if callable(root) and mod is not model:
        parts = name.split(".")
        chain = [model.get_submodule(".".join(parts[:i])) for i in range(len(parts), 0, -1)]
        out.append((_HF_CHAIN, lambda: [root(m) for m in chain]))
    names = ("reset_parameters",) if params_only else _BUFFER_METHODS
    out += [(m, getattr(mod, m)) for m in names if callable(getattr(mod, m, None))]
    if callable(root) and not params_only and mod is not model:
        out.append(("_init_weights", lambda: root(mod)))
    return out


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
        model: a module whose parameters are on ``meta`` (a module already materialized is refused); its
            buffers may be real (accelerate's ``init_empty_weights()``) or on meta.
        device: target device.
        scheme, seed, **options: as :func:`depthinit.plan`; ignored when ``init_plan`` is given.
        init_plan: a ready plan (e.g. loaded with ``InitPlan.from_json``, or with ``keep`` rows edited to a
            constant).
        buffers: ``callback(module_name, module)`` that fills a module's meta buffers (see the module docs).
        backend: ``auto``, ``torch`` or ``triton``.

    Returns:
        The plan that was applied.

    Raises:
        ValueError: before allocating, naming the buffers and parameters nothing would define.
    """
    params = list(model.parameters())
    if not params or not all(p.is_meta for p in params):
        raise ValueError("materialize() takes a model whose parameters are all on the meta device "
                         "(build it under `with torch.device('meta'):`); use plan(...).apply() for a real model")
    tie = getattr(model, "tie_weights", None)
    if callable(tie) and hasattr(model, "config"):
        # an HF model re-ties what its config ties: accelerate's init_empty_weights() re-registers every
        # parameter and so unties lm_head from the embedding before we see the model
        tie()
    p = init_plan if init_plan is not None else plan(model, scheme, seed=seed, **options)
    check_memory(p, device)
    meta_bufs = _meta_buffers(model)
    methods = _rebuilders(model, p, buffers)  # dry run on meta: refuses before allocating
    _allocate(model, torch.device(device))
    try:
        _rebuild(model, methods, meta_bufs, buffers)
    except ValueError:
        _allocate(model, torch.device("meta"))  # never leave uninitialized memory behind
        raise
    p.model = model
    p.apply(model, backend=backend)
    return p


def _undefined_params(model: nn.Module, p: InitPlan) -> dict[str, tuple[str, str]]:
    """Parameters the plan leaves as they are (``keep`` rows, not derived after the fill):
    ``name -> (module path, leaf)``."""
    from .reparam import MAGNITUDE_NOTE

    keep = {}
    for r in p.rows:
        if r.distribution == "keep" and r.note != MAGNITUDE_NOTE:
            for n in (r.name, *r.tied):
                keep[n] = r.name
    out = {}
    for mpath, mod in model.named_modules():
        for leaf, prm in mod._parameters.items():
            full = f"{mpath}.{leaf}" if mpath else leaf
            if prm is not None and full in keep and keep[full] not in out:
                out[keep[full]] = (mpath, leaf)
    return out


def _snapshot(mod: nn.Module, leaves: list[str], kind: str) -> dict[str, tuple[int, int]]:
    store = mod._buffers if kind == "buffer" else mod._parameters
    return {leaf: (id(store[leaf]), store[leaf]._version) for leaf in leaves if store.get(leaf) is not None}


def _written(mod: nn.Module, before: dict[str, tuple[int, int]], kind: str) -> set[str]:
    store = mod._buffers if kind == "buffer" else mod._parameters
    return {leaf for leaf, (ident, version) in before.items()
            if store.get(leaf) is not None and (id(store[leaf]) != ident or store[leaf]._version != version)}


def _rebuilders(model: nn.Module, p: InitPlan, callback: BufferInit | None) -> dict[str, tuple[str, list[str]]]:
    """``module name -> (method, undefined parameters)`` that re-creates its meta buffers and undefined
    parameters; checked by a dry run on meta tensors. Raises naming everything that would stay
    uninitialized."""
    undefined = _undefined_params(model, p)
    params_of: dict[str, list[str]] = {}
    for mpath, leaf in undefined.values():
        params_of.setdefault(mpath, []).append(leaf)
    missing: list[str] = []
    methods: dict[str, tuple[str, list[str]]] = {}
    for name, mod in model.named_modules():
        meta_bufs = [b for b, t in mod._buffers.items() if t is not None and t.is_meta]
        need_params = params_of.get(name, [])
        if not meta_bufs and not need_params:
            continue
        pre = f"{name}." if name else ""
        if callback is not None and meta_bufs and not need_params:
            continue  # checked after it runs
        done = False
        for label, fn in _candidates(model, name, mod, bool(need_params)):
            b0, p0 = _snapshot(mod, meta_bufs, "buffer"), _snapshot(mod, need_params, "param")
            try:
                with torch.no_grad():
                    fn()
            except Exception:  # noqa: BLE001 - one that cannot run on meta runs for real, checked there
                methods[name] = (label, need_params)
                done = True
                break
            if _written(mod, b0, "buffer") == set(meta_bufs) and _written(mod, p0, "param") == set(need_params):
                methods[name] = (label, need_params)
                done = True
                break
        if not done:
            missing += [f"{pre}{b} (buffer)" for b in meta_bufs] + [f"{pre}{x} (parameter)" for x in need_params]
    if missing:
        raise ValueError(
            f"{', '.join(missing)} would hold uninitialized memory after materialization: no method of their "
            "modules (reset_running_stats/reset_parameters/init_weights) writes them and the plan does not define "
            "them; pass buffers=callback(module_name, module) for buffers, set the parameters' plan rows (e.g. "
            "row.distribution = 'constant'; row.mean = 1.0) and pass init_plan=, or build the model under "
            "accelerate's init_empty_weights() so that buffers keep their values"
        )
    return methods


def _allocate(model: nn.Module, device: torch.device) -> None:
    """``Module.to_empty`` that keeps ties: each distinct parameter is allocated once (uninitialized) and
    every slot that shared it on ``meta`` shares the new tensor. (``to_empty`` from meta allocates each slot
    separately, which both unties weights and allocates tied ones twice.) Buffers with values are moved;
    meta buffers are allocated for their module to re-create."""
    new: dict[int, nn.Parameter] = {}
    for mod in model.modules():
        for name, prm in mod._parameters.items():
            if prm is None:
                continue
            if id(prm) not in new:
                new[id(prm)] = nn.Parameter(torch.empty_like(prm, device=device), requires_grad=prm.requires_grad)
            mod._parameters[name] = new[id(prm)]
        for name, buf in mod._buffers.items():
            if buf is None:
                continue
            if buf.is_meta or device.type == "meta":
                mod._buffers[name] = torch.empty_like(buf, device=device)
            else:
                mod._buffers[name] = buf.to(device)


def _meta_buffers(model: nn.Module) -> dict[str, list[str]]:
    out = {}
    for name, mod in model.named_modules():
        bufs = [b for b, t in mod._buffers.items() if t is not None and t.is_meta]
        if bufs:
            out[name] = bufs
    return out


def _rebuild(model: nn.Module, methods: dict[str, tuple[str, list[str]]], meta_bufs: dict[str, list[str]],
             callback: BufferInit | None) -> None:
    """Run the re-creating methods (and the callback) for real; every meta buffer and undefined parameter
    must have been written (a new tensor or an in-place write)."""
    missing = []
    with torch.no_grad():
        for name, mod in model.named_modules():
            bufs = meta_bufs.get(name, [])
            if name in methods:
                label, params = methods[name]
                b0, p0 = _snapshot(mod, bufs, "buffer"), _snapshot(mod, params, "param")
                dict(_candidates(model, name, mod, False))[label]()
                wrote = _written(mod, b0, "buffer") | _written(mod, p0, "param")
                missing += [f"{name}.{x}" if name else x for x in bufs + params if x not in wrote]
            elif callback is not None and bufs:
                b0 = _snapshot(mod, bufs, "buffer")
                callback(name, mod)
                missing += [f"{name}.{b}" if name else b for b in bufs if b not in _written(mod, b0, "buffer")]
    if missing:
        raise ValueError(
            f"buffers {', '.join(missing)} have no values after their re-creating method or buffers=callback ran: "
            "the callback must write every meta buffer of the modules it is given"
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
