"""Applying a plan to a model: resolve the target tensors once, fill them, finish reparametrizations.

:func:`apply_plan` is what :meth:`depthinit.InitPlan.apply` runs. The first call resolves the plan's rows to the
model's parameters and prepares the fill (kernel tables with their pointers); later calls reuse both while the
model is the same: the same rows unedited (:data:`EDITS`), the same modules and parameter objects under the same
names, each target with the same data pointer, storage size, dtype, shape and strides.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .distributed import is_dtensor, local_tensor, storage_key
from .kernels import tensor_meta
from .reparam import finish, finishes

EDITS = [0]  # edits of PlanRows made so far (PlanRow.__setattr__ counts them): a cached fill is checked again


def apply_plan(plan: Any, model: nn.Module, backend: str) -> nn.Module:
    """Fill ``model``'s parameters as ``plan`` (an :class:`~depthinit.InitPlan`) says, reusing what the last
    call resolved while it still describes the model."""
    walk = _walk(model)
    cached = plan._cache.get("apply")
    if cached is None or not cached.matches(plan, model, backend, walk):
        plan._cache.pop("apply", None)  # drop the old tables (and the tensors they hold) first
        cached = _resolve(plan, model, backend, walk)
    with torch.no_grad():
        if cached.fill is not None:
            cached.fill(plan.seed)
        for t, gain in cached.ortho:
            _orthogonalize_(t, gain)
    finish(model, cached.finishing)
    return model


def _resolve(plan: Any, model: nn.Module, backend: str, walk: tuple) -> _Applied:
    from .fill import prepare_fill

    edits = EDITS[0]
    tensors, rows, ortho = targets(plan, model)
    dtensors = any(is_dtensor(t) for t in tensors)
    if dtensors:
        plan.check_consistent()
    # The kernel tables (pointers, chunks, parameters) are built once and reused while the targets and
    # rows stay the same (re-initializing a model, a seed sweep).
    key = (backend, tuple(rows), tuple(map(_storage, tensors)))
    old = plan._cache.get("fill")
    if old is None or old[0] != key:
        old = plan._cache["fill"] = (key, prepare_fill(tensors, rows, backend) if tensors else None)
    applied = _Applied(model, backend, edits, list(plan.rows), *walk, [], (), old[1], ortho, _finishing(model))
    if not dtensors:  # DTensor plans check consistency across ranks on every call: never the fast path
        applied.targets = [p for p in _target_params(model, plan.rows)]
        applied.layout = _layout(applied.targets)
        plan._cache["apply"] = applied
    return applied


def targets(plan: Any, model: nn.Module) -> tuple[list, list, list]:
    """The tensors ``plan`` fills in ``model``, their ``FillRow``s, and the ``(tensor, gain)`` of orthogonal rows."""
    params = dict(model.named_parameters(remove_duplicate=False))
    tensors, ortho = [], []
    for r in plan.rows:
        if r.distribution == "keep":
            continue
        p = params.get(r.name)
        if p is None:
            raise ValueError(f"plan row {r.name!r} names no parameter of this model")
        if tuple(p.shape) != tuple(r.shape):  # a DTensor's shape is its global shape
            raise ValueError(f"plan row {r.name!r} has shape {r.shape}, the model's parameter {tuple(p.shape)}")
        if p.is_meta:
            raise ValueError(
                f"parameter {r.name!r} is on the meta device: use di.materialize(model, device=...) to allocate "
                "and fill it"
            )
        tensors.append(p.data if not is_dtensor(p) else p)
        if r.distribution == "orthogonal":
            if is_dtensor(p):
                raise NotImplementedError(f"orthogonal init of the sharded parameter {r.name!r} is not supported")
            ortho.append((p.data, r.std))
    return tensors, plan.fill_rows(), ortho


@dataclass
class _Applied:
    """What :meth:`InitPlan.apply` resolved, kept for the next call while :meth:`matches` holds."""

    model: nn.Module
    backend: str
    edits: int  # EDITS when the rows were read
    rows: list  # the PlanRow objects
    names: list  # the walk's names and objects (see _walk)
    objects: list
    targets: list  # the Parameter of each filled row
    layout: tuple  # data pointers, dtypes, shapes, strides of the targets (_layout)
    fill: Any  # PreparedFill or None
    ortho: list
    finishing: list  # the modules finish() looks at (a function of the walk's modules and parameters)

    def matches(self, plan: Any, model: nn.Module, backend: str, walk: tuple) -> bool:
        return (
            model is self.model
            and backend == self.backend
            and EDITS[0] == self.edits
            and _same_objects(plan.rows, self.rows)
            and walk[0] == self.names
            and _same_objects(walk[1], self.objects)
            and _layout(self.targets) == self.layout
        )


def _same_objects(a: list, b: list) -> bool:
    return len(a) == len(b) and all(map(operator.is_, a, b))


_SHAPE = operator.attrgetter("shape")


def _storage(t: torch.Tensor) -> tuple:
    """What a prepared fill of ``t`` depends on: the elements it views and the size of their storage (freed or
    shrunk at the same address, the fill is prepared again, and refused)."""
    t = local_tensor(t)
    return storage_key(t), 0 if t.is_meta else t.untyped_storage().nbytes()


def _layout(params: list) -> tuple:
    """The metadata of ``params`` (:func:`tensor_meta.read`: data pointers, element counts, storage sizes and
    offsets, dtypes, contiguity; one native call), their shapes and strides (one C-level map each)."""
    return tensor_meta.read(params).tobytes(), list(map(_SHAPE, params)), list(map(torch.Tensor.stride, params))


def _walk(model: nn.Module) -> tuple[list, list]:
    """The names and objects of every module's ``_parameters`` and ``_modules`` in a fixed order: equal lists
    (names equal, objects identical) mean the same modules and parameters under the same names."""
    names: list = []
    objects: list = [model]
    stack = [model]
    pop, push, name, obj = stack.pop, stack.extend, names.extend, objects.extend
    while stack:
        mod = pop()
        params, children = mod._parameters, mod._modules
        name(params)
        obj(params.values())
        if children:
            name(children)
            obj(children.values())
            push(c for c in children.values() if c is not None)
    return names, objects


def _finishing(model: nn.Module) -> list:
    """The modules :func:`~depthinit.reparam.finish` has to look at after a fill."""
    return [m for m in model.modules() if finishes(m)]


def _target_params(model: nn.Module, rows: list) -> Iterator[torch.Tensor]:
    params = dict(model.named_parameters(remove_duplicate=False))
    return (params[r.name] for r in rows if r.distribution != "keep")


def _orthogonalize_(t: torch.Tensor, gain: float) -> None:
    """Turn a tensor of contract normals into a (semi-)orthogonal matrix, as ``torch.nn.init.orthogonal_``."""
    if t.numel() == 0:
        return
    rows = t.size(0)
    cols = t.numel() // rows
    flat = t.reshape(rows, cols).double()
    if rows < cols:
        flat = flat.t()
    q, r = torch.linalg.qr(flat)
    q *= torch.sign(torch.diagonal(r, 0))
    if rows < cols:
        q = q.t()
    t.copy_((q * gain).reshape(t.shape).to(t.dtype))
