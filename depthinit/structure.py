"""Structure from the model's own computation: one forward on fake tensors, recording how each parameter
is used.

:func:`trace` runs the model once with every parameter, buffer and input replaced by a fake tensor
(``FakeTensorMode``: shapes and dtypes only, no memory, no compute) under a ``TorchDispatchMode`` that
sees every aten op, and records for each parameter:

* the op that consumes it and how: a **contraction** (``mm``/``addmm``/``bmm``/``_grouped_mm``/
  ``convolution``: which of its dimensions is summed over gives the exact ``fan_in``/``fan_out`` for any
  storage layout, per expert for a batched bank), an **embedding lookup**, an **elementwise scale** (norm
  gains, residual scalars) or an **additive** use (biases; positional embeddings added to activations);
* where its output flows: an ``add`` whose one side descends from the other is a **residual add**; the last
  weight ops of the branch side are residual output projections, their order along the stream is their
  depth (models without named block stacks), the number of such adds is the number of residual branches; the
  last weight op before the model's output (not through a residual add) is the **head**.

Views of parameters (``t``, ``transpose``, ``permute``, ``select``, casts, ...) keep track of which
parameter dimension each view dimension is, so ``x @ W.t()`` (Linear), ``addmm(b, x, W)`` (HF ``Conv1D``,
``[in, out]``) and ``bmm(x, W[e])`` all give the right fans. Tracing fails on data-dependent ops (MoE
routing with ``nonzero``, ``.item()``) or on an op the recorder cannot read: the plan then falls back to
module types and names (``DEPTHINIT_TRACE_DEBUG=1`` raises the reason instead).
"""

from __future__ import annotations

import gc
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

aten = torch.ops.aten
_DEBUG = bool(os.environ.get("DEPTHINIT_TRACE_DEBUG"))


@dataclass
class Traced:
    """What the forward showed about one parameter."""

    uses: set[str] = field(default_factory=set)  # contraction, embedding, scale, add
    fan_in: int | None = None
    fan_out: int | None = None
    residual_out: bool = False  # its output is the branch side of a residual add
    head: bool = False
    branch: int | None = None  # 1-based index of the residual branch it lies on (execution order)
    order: int | None = None  # 1-based execution order among the weight ops
    residual_scale: bool = False
    offset: float | None = None  # used as ``offset + p`` (zero-centred norm gains: Gemma's ``x̂·(1 + w)``)


@dataclass
class Structure:
    params: dict[str, Traced]
    n_branches: int
    n_weight_ops: int


_VIEW_SAME = {aten._to_copy.default, aten.clone.default, aten.detach.default, aten.alias.default,
              aten.lift_fresh.default, aten._unsafe_view.default, aten.view.default, aten.expand.default,
              aten.reshape.default}
_GATING = {aten._softmax.default, aten.sigmoid.default, aten.topk.default, aten.sort.default, aten.argmax.default}
_NORMS = {aten.native_layer_norm.default, aten.native_group_norm.default, aten._native_batch_norm_legit.default,
          aten._native_batch_norm_legit_functional.default, aten.native_batch_norm.default}
_MATMULS = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default, aten._grouped_mm.default}
_ADDS = {aten.add.Tensor, aten.add_.Tensor}
_MULS = {aten.mul.Tensor, aten.mul_.Tensor, aten.div.Tensor}


class _Recorder(TorchDispatchMode):
    def __init__(self, names: dict[int, str]):
        super().__init__()
        self.names = names  # id(meta parameter) -> name
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.view: dict[int, tuple[str, tuple]] = {}  # id(view of a parameter) -> (name, parameter dims)
        self.keep: list[torch.Tensor] = []  # keeps every tensor alive so that ids stay unique
        self.tags: dict[int, frozenset[str]] = {}  # activation -> last weight ops that produced it
        self.anc: dict[int, int] = {}  # activation -> bitset of its ancestors' uids
        self.uid: dict[int, int] = {}
        self.info: dict[str, Traced] = {}
        self.weight_ops: list[tuple[str, int]] = []  # (param, uid of its output) in execution order
        self.scales: list[tuple[str, int]] = []  # (scalar param, uid of the scaled output)
        self.n_branches = 0
        self.failed = False

    # -- parameters and their views -----------------------------------------------------------------------
    def param_of(self, t: Any) -> tuple[str, tuple] | None:
        if not isinstance(t, torch.Tensor):
            return None
        if id(t) in self.names:
            return self.names[id(t)], tuple(range(t.dim()))
        return self.view.get(id(t))

    def _rec(self, name: str) -> Traced:
        return self.info.setdefault(name, Traced())

    def _fans(self, name: str, shape: tuple[int, ...], dims: tuple, k_dim: int, n_dim: int) -> None:
        r = self._rec(name)
        r.uses.add("contraction")
        if r.fan_in is None and dims[k_dim] is not None and dims[n_dim] is not None:
            r.fan_in, r.fan_out = shape[dims[k_dim]], shape[dims[n_dim]]

    # -- the op hook ------------------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not self.failed:
            try:
                self._record(func, args, kwargs, out)
            except Exception:  # noqa: BLE001 - an op the recorder cannot read: the whole trace is dropped
                if _DEBUG:
                    raise
                self.failed = True
        return out

    def _act(self, t: torch.Tensor) -> None:
        if id(t) not in self.uid:
            self.uid[id(t)] = len(self.uid)
            self.keep.append(t)

    def _record(self, func, args, kwargs, out) -> None:
        flat_in = _tensors(args, [])
        if kwargs:
            _tensors(tuple(kwargs.values()), flat_in)
        outs = _tensors(out, []) if type(out) is tuple or type(out) is list else (
            [out] if isinstance(out, torch.Tensor) else [])
        prov = [self.param_of(a) for a in flat_in]
        # Views and casts of a parameter stay that parameter.
        if outs and len(outs) == 1 and prov and prov[0] is not None and flat_in[0] is args[0]:
            name, dims = prov[0]
            o = outs[0]
            new = _view_dims(func, args, dims, o)
            if new is not None:
                self.view[id(o)] = (name, new)
                self.keep.append(o)
                return
        acts = [a for a, p in zip(flat_in, prov) if p is None]
        params = [(a, p) for a, p in zip(flat_in, prov) if p is not None]
        tag: frozenset[str] = frozenset()
        anc = 0
        for a in acts:
            if id(a) in self.uid:
                anc |= self.anc.get(id(a), 0) | (1 << self.uid[id(a)])
                tag |= self.tags.get(id(a), frozenset())
        weight_op = None
        if func in _MATMULS:
            mats = args[1:3] if func in (aten.addmm.default, aten.baddbmm.default) else args[:2]
            batched = func in (aten.bmm.default, aten.baddbmm.default) or mats[1].dim() == 3
            for pos, m in enumerate(mats):
                pm = self.param_of(m)
                if pm is None:
                    continue
                name, dims = pm
                base = 1 if batched and m.dim() == 3 else 0
                k_dim, n_dim = (base, base + 1) if pos == 1 else (base + 1, base)
                self._fans(name, self.shapes[name], dims, k_dim, n_dim)
                weight_op = name
            if func in (aten.addmm.default, aten.baddbmm.default) and self.param_of(args[0]) is not None:
                self._rec(self.param_of(args[0])[0]).uses.add("add")
        elif func is aten.convolution.default:
            pw = self.param_of(args[1])
            if pw is not None:
                name, _ = pw
                w = args[1]
                rf = math.prod(w.shape[2:])
                transposed, groups = args[6], args[8]
                r = self._rec(name)
                r.uses.add("contraction")
                if transposed:
                    r.fan_in, r.fan_out = w.shape[0] // groups * rf, w.shape[1] * rf
                else:
                    r.fan_in, r.fan_out = w.shape[1] * rf, w.shape[0] * rf
                weight_op = name
            if len(args) > 2 and self.param_of(args[2]) is not None:
                self._rec(self.param_of(args[2])[0]).uses.add("add")
        elif func in (aten.embedding.default, aten.embedding_bag.default, aten._embedding_bag.default):
            pe = self.param_of(args[0])
            if pe is not None:
                r = self._rec(pe[0])
                r.uses.add("embedding")
                r.fan_in, r.fan_out = args[0].shape[-1], args[0].shape[0]
                weight_op = pe[0]
        elif func in _NORMS:
            for a, p in params:
                self._rec(p[0]).uses.add("scale" if a.dim() >= 1 and a is _norm_weight(func, args) else "add")
        elif func in _MULS:
            for a, p in params:
                self._rec(p[0]).uses.add("scale")
                if a.numel() <= 1 and outs:
                    self._act(outs[0])
                    self.scales.append((p[0], self.uid[id(outs[0])]))
        elif func in _ADDS or func in (aten.cat.default, aten.sub.Tensor):
            for a, p in params:
                self._rec(p[0]).uses.add("add")
                if func in _ADDS and a is args[0] and len(args) > 1 and isinstance(args[1], (int, float)):
                    self._rec(p[0]).offset = float(args[1])
            if func in _ADDS and len(acts) == 2 and not params:
                self._residual(acts[0], acts[1], outs[0])
                return
        for o in outs:
            self._act(o)
            if func in _GATING:
                self.tags[id(o)] = frozenset()
            elif weight_op is not None:
                self.tags[id(o)] = frozenset([weight_op])
            else:
                self.tags[id(o)] = tag
            self.anc[id(o)] = anc
        if weight_op is not None and outs:
            self.weight_ops.append((weight_op, self.uid[id(outs[0])]))

    def _residual(self, a: torch.Tensor, b: torch.Tensor, o: torch.Tensor) -> None:
        ua, ub = self.uid.get(id(a)), self.uid.get(id(b))
        anc_a, anc_b = self.anc.get(id(a), 0), self.anc.get(id(b), 0)
        branch = stream = None
        if ub is not None and anc_a >> ub & 1:
            branch, stream = a, b
        elif ua is not None and anc_b >> ua & 1:
            branch, stream = b, a
        anc = anc_a | anc_b | (1 << ua if ua is not None else 0) | (1 << ub if ub is not None else 0)
        self._act(o)
        if branch is not None:  # a residual branch runs a weight op after the stream it is added to exists
            anc_branch = self.anc.get(id(branch), 0) | (1 << self.uid[id(branch)])
            last = {n for n in self.tags.get(id(branch), frozenset())
                    if any(u > self.uid[id(stream)] and anc_branch >> u & 1 for m, u in self.weight_ops if m == n)}
            if not last:
                branch = None
        if branch is None:
            self.tags[id(o)] = self.tags.get(id(a), frozenset()) | self.tags.get(id(b), frozenset())
            self.anc[id(o)] = anc
            return
        self.n_branches += 1
        k = self.n_branches
        anc_stream = self.anc.get(id(stream), 0) | (1 << self.uid[id(stream)])
        for name in last:
            self._rec(name).residual_out = True
        for name, u in self.weight_ops:
            if u > self.uid[id(stream)] and anc_branch >> u & 1 and not anc_stream >> u & 1:
                r = self._rec(name)
                if r.branch is None:
                    r.branch = k
        for name, u in self.scales:
            if anc_branch >> u & 1 and not anc_stream >> u & 1:
                self._rec(name).residual_scale = True
        self.tags[id(o)] = frozenset()  # the stream mixes everything: no single last weight op
        self.anc[id(o)] = anc


def _tensors(xs: tuple | list, into: list) -> list:
    """The tensors of an op's arguments or outputs (in nested tuples and lists), in order, appended to ``into``."""
    for x in xs:
        if isinstance(x, torch.Tensor):
            into.append(x)
        elif type(x) is tuple or type(x) is list:
            _tensors(x, into)
    return into


def _norm_weight(func, args):
    if func is aten.native_layer_norm.default:
        return args[2] if len(args) > 2 else None
    return args[1] if len(args) > 1 else None


def _view_dims(func, args, dims: tuple, out: torch.Tensor) -> tuple | None:
    """Which parameter dimension each dimension of a view of a parameter is (None: not one)."""
    src = args[0]
    if func is aten.t.default:
        return tuple(reversed(dims))
    if func is aten.slice.Tensor:
        return dims
    if func is aten.transpose.int:
        d0, d1 = (d % src.dim() for d in args[1:3])
        new = list(dims)
        new[d0], new[d1] = new[d1], new[d0]
        return tuple(new)
    if func is aten.permute.default:
        return tuple(dims[d % src.dim()] for d in args[1])
    if func is aten.select.int:
        d = args[1] % src.dim()
        return dims[:d] + dims[d + 1:]
    if func is aten.unsqueeze.default:
        d = args[1] % (src.dim() + 1)
        return dims[:d] + (None,) + dims[d:]
    if func in _VIEW_SAME:
        if tuple(out.shape) == tuple(src.shape):
            return dims
        if func is aten.expand.default and out.dim() >= src.dim():
            return (None,) * (out.dim() - src.dim()) + dims
        squeezed = [s for s in src.shape if s != 1]
        if [s for s in out.shape if s != 1] == squeezed:  # only size-1 dimensions added or removed
            real = [d for d, s in zip(dims, src.shape) if s != 1]
            it = iter(real)
            return tuple(next(it) if s != 1 else None for s in out.shape)
        return None
    if func is aten.index.Tensor and out.dim() == src.dim():  # bank[idx]: the expert dimension is kept
        return dims
    return None


def default_example(model: nn.Module) -> Any:
    """The model's own example input, where it has one: ``model.example_input()`` (depthinit's built-in
    models), or an HF model's main input (``input_ids`` / ``pixel_values``) built from its config."""
    fn = getattr(model, "example_input", None)
    if callable(fn):
        return fn()
    cfg = getattr(model, "config", None)
    main = getattr(model, "main_input_name", None)
    if cfg is None or main is None:
        return None
    if main == "input_ids":
        ids = torch.zeros(1, 8, dtype=torch.long)
        ex = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if getattr(cfg, "is_encoder_decoder", False):
            ex["decoder_input_ids"] = ids
        if "use_cache" in getattr(cfg, "__dict__", {}) or hasattr(cfg, "use_cache"):
            ex["use_cache"] = False
        return ex
    if main == "pixel_values":
        size = getattr(cfg, "image_size", None)
        size = size if isinstance(size, int) else (size[0] if size else None)
        if size is None:
            return None
        return {"pixel_values": torch.zeros(1, getattr(cfg, "num_channels", 3), size, size)}
    return None


def trace(model: nn.Module, example: Any = None) -> Structure | None:
    """Run one forward of ``model`` on meta tensors and return what it showed (None when there is no
    example input or the forward cannot run on meta)."""
    from .distributed import is_dtensor

    if type(model).__name__ == "OptimizedModule" or any(is_dtensor(p) for p in model.parameters()):
        return None  # a compiled or sharded model: its forward would compile or communicate
    if example is None:
        example = default_example(model)
    if example is None:
        return None
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.func import functional_call

    fake = FakeTensorMode(allow_non_fake_inputs=False)

    def to_fake(t: torch.Tensor) -> torch.Tensor:
        with fake:  # a fake CPU tensor: no memory, whatever the original's device (meta included)
            return torch.empty(t.shape, dtype=t.dtype, device="cpu")

    subs = {n: to_fake(p) for n, p in model.named_parameters()}
    bufs = {n: to_fake(b) for n, b in model.named_buffers()}
    rec = _Recorder({id(t): n for n, t in subs.items()})
    rec.shapes.update({n: tuple(t.shape) for n, t in subs.items()})
    meta_in = tree_map(lambda x: to_fake(x) if isinstance(x, torch.Tensor) else x, example)
    args, kwargs = (((), meta_in) if isinstance(meta_in, Mapping) else
                    ((meta_in if isinstance(meta_in, tuple) else (meta_in,)), {}))
    was_training = model.training
    model.eval()
    # fake-tensor errors are expected here (the plan falls back); torch would log each one at ERROR level
    fake_log = logging.getLogger("torch._subclasses.fake_tensor")
    level = fake_log.level
    fake_log.setLevel(logging.DEBUG if _DEBUG else logging.CRITICAL)
    # The trace makes tens of thousands of short-lived objects (fake tensors, cache entries) and keeps them all
    # alive: the cyclic collector would run several full passes over the whole heap (torch's and the model
    # library's modules) for nothing, a third of the first trace of a model in a fresh process.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with torch.no_grad(), fake, rec:
            out = functional_call(model, {**subs, **bufs}, args, dict(kwargs), tie_weights=True, strict=False)
    except Exception as e:  # noqa: BLE001 - any failure on meta: fall back to module types and names
        if _DEBUG:
            raise
        del e
        return None
    finally:
        if gc_was_enabled:
            gc.enable()
        fake_log.setLevel(level)
        model.train(was_training)
    if rec.failed:
        return None
    final = getattr(out, "logits", None)
    if final is None:
        leaves = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        final = leaves[0] if leaves else None
    if isinstance(final, torch.Tensor):
        for name in rec.tags.get(id(final), frozenset()):
            rec._rec(name).head = True
    for i, (name, _) in enumerate(rec.weight_ops):
        r = rec._rec(name)
        if r.order is None:
            r.order = i + 1
    return Structure(rec.info, rec.n_branches, len({n for n, _ in rec.weight_ops}))


def trace_structure(model: nn.Module, example: Any = None) -> Structure | None:
    """:func:`trace`, for the plan."""
    return trace(model, example)
