"""Live per-layer variance monitoring during training: weights, gradients, activations and update ratios.

Every ``every`` optimizer steps, :class:`VarianceMonitor` measures with the fused single-pass statistics of
:mod:`depthinit.stats` (count, mean, variance, RMS, L2, min/max/abs-max, non-finite and zero counts):

* the **weights** and the **gradients** of the selected modules, taken at :meth:`VarianceMonitor.step` time,
  in one fused statistics launch (``depthinit.stats.tensor_stats``) for both. Call ``mon.step()`` right
  **after** ``optimizer.step()`` and **before** ``optimizer.zero_grad()``; with gradient accumulation call
  it once per optimizer step (steps count optimizer updates, not backward calls);
* the **activations** (outputs) of the selected modules, through forward hooks: the outputs of one forward
  are reduced in a single pass (one fused launch when the forward ends, or one per module with
  ``act_reduce="module"``) into a preallocated device buffer, merged with Chan's formula over every forward
  of the step (all the micro-batches of an accumulated step count); the hooks return at once on the
  other steps and in eval mode;
* the **update ratio** of each weight between consecutive optimizer steps, see ``update`` below.

Q, K and V are reported as separate rows: a fused projection (GPT-2's ``c_attn``, ``qkv``, ``Wqkv``, or any
module given in ``qkv_modules``) is split into thirds of its output features (weight rows, bias, outputs);
separate projections are recognised by name (``q_proj/k_proj/v_proj``, ``wq/wk/wv``, ``query/key/value``);
``per_head=True`` adds one row per head.

Nothing is copied to the host inside a step: results stay in a device ring buffer; on CUDA each monitored
step's rows are copied ``non_blocking`` to pinned memory and read at a later drain once that copy has
landed (no stall), every ``drain`` monitored steps. Drained rows become records (plain dicts, one per row)::

    {"step": 50, "kind": "weight" | "grad" | "act" | "update", "name": "h.0.attn.q", "layer": 1,
     "qkv": "q", "head": 3,                       # only on Q/K/V and per-head rows
     "count", "mean", "var", "std", "rms", "l2", "min", "max", "absmax", "nonfinite", "zeros"}

kept in :attr:`VarianceMonitor.history`, checked by :class:`~depthinit.alerts.Alerts` and sent to the sinks
(:mod:`depthinit.sinks`). ``var`` is the population variance, ``layer`` the 1-based block index of
:func:`depthinit.roles.locate` (``None`` outside the block stack). Update rows carry ``update_ratio`` and
``delta_l2`` (``update="exact"``) or ``norm_change_ratio`` (``update="norm"``).

>>> mon = VarianceMonitor(model, every=50, sinks=[depthinit.sinks.JSONL("run.jsonl")])
>>> for batch in data: loss(model(batch)).backward(); opt.step(); mon.step(); opt.zero_grad()
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from . import stats as _stats
from .alerts import AlertEvent, Alerts
from .layouts import FUSED, SEPARATE, fused_layout
from .outputs import first_floating, residual_blocks
from .roles import locate
from .sinks import Sink, call_safely

FIELDS = _stats.FIELDS
N_FIELDS = _stats.N_FIELDS
COUNT, MEAN, M2, SUMSQ, MIN, MAX, ABSMAX, NONFINITE, ZEROS = range(N_FIELDS)
KINDS = ("weight", "grad", "act", "update")
UPDATE_MODES = ("norm", "exact", None)
DEFAULT_QKV = tuple(FUSED)  # the layouts of depthinit.layouts
_SEPARATE = SEPARATE
_PART_OF = {n: part for part, names in _SEPARATE.items() for n in names}
_WRAPPERS = {"_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module"}
_PREFIXES = ("module", "model", "transformer")
_HEAD_ATTRS = ("n_head", "num_heads", "n_heads", "num_attention_heads")
_NEUTRAL = (0.0, math.nan, 0.0, 0.0, math.nan, math.nan, math.nan, 0.0, 0.0)  # merges as "no element"
_OPEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its open monitor


@dataclass(frozen=True)
class Row:
    """What one row of the monitor measures: ``kind`` (weight/grad/act/update) of ``name``."""

    kind: str
    name: str
    layer: int | None
    qkv: str | None = None
    head: int | None = None
    stream: bool = False  # a residual-stream row: a block's output (act) or the gradient w.r.t. it (grad)


@dataclass
class _ParamRow:
    pname: str  # canonical parameter name
    module: nn.Module  # owner; the parameter is looked up at each step (FSDP and assign= swap the objects)
    leaf: str
    dim: int | None  # split dimension, None for the whole tensor
    start: int
    stop: int
    row: Row

    @property
    def param(self) -> Tensor | None:
        return self.module._parameters.get(self.leaf)


@dataclass
class _Site:
    mname: str
    row0: int
    splits: list[tuple[int, int]] | None  # ranges of the last dim of the output; None: the whole output
    rows: list[Row]
    stream: bool = False  # a residual block: its output is the residual stream
    grad_row: int | None = None  # residual block: the row (in the act buffer) of the gradient w.r.t. its output


def short_name(name: str) -> str:
    """``"_orig_mod.transformer.h.0.attn"`` -> ``"h.0.attn"``: wrappers and a leading model prefix dropped."""
    parts = [p for p in name.split(".") if p not in _WRAPPERS]
    while len(parts) > 1 and parts[0] in _PREFIXES:
        parts = parts[1:]
    return ".".join(parts)


# -- DTensor adapter (the split rows of a sharded fused projection) -------------------------------------------
# depthinit.stats merges whole DTensors; a Q/K/V third of a sharded weight is a slice of the local shard,
# so the monitor measures local slices itself and merges them across ranks with one all_gather (below).


def _dtensor_cls():
    try:
        from torch.distributed.tensor import DTensor
    except Exception:  # noqa: BLE001 - torch without distributed
        return None
    return DTensor


def _local_part(t: Tensor, dim: int | None, start: int, stop: int, dtensor) -> tuple[Tensor, bool, bool]:
    """``(local view, is sharded, counts on this rank)`` of ``t[start:stop]`` along ``dim`` (whole if None)."""
    if dtensor is None or not isinstance(t, dtensor):
        return (t if dim is None else t.narrow(dim, start, stop - start)), False, True
    from torch.distributed.tensor import Partial, Replicate
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    local = t.to_local()
    coord = t.device_mesh.get_coordinate()
    contrib = coord is not None
    for d, p in enumerate(t.placements):
        if isinstance(p, Partial):
            raise ValueError("VarianceMonitor: a DTensor with a Partial placement has no meaningful statistics; "
                             "redistribute it first")
        if isinstance(p, Replicate) and contrib and coord[d] != 0:
            contrib = False  # replicas count once
    if dim is None:
        return local, True, contrib
    _, offset = compute_local_shape_and_global_offset(t.shape, t.device_mesh, t.placements)
    lo, n = offset[dim], local.shape[dim]
    a, b = max(start, lo), min(stop, lo + n)
    return local.narrow(dim, a - lo, max(b - a, 0)) if b > a else local.narrow(dim, 0, 0), True, contrib


def _global_rows(data: Tensor, use: Tensor, sharded: Tensor, neutral: Tensor, group=None) -> Tensor:
    """Rows of sharded tensors merged across ranks: one all_gather, then Chan's merge in rank order.

    ``use`` (bool ``[n, 1]``): this rank's row counts (replicas count once); ``sharded`` (bool ``[n, 1]``):
    the row is a partial of a global figure (a DTensor shard, or this rank's activations); other rows are
    returned as they are.
    """
    import torch.distributed as dist

    local = torch.where(use, data, neutral).contiguous()
    world = dist.get_world_size(group)
    gathered = torch.empty((world * local.shape[0], N_FIELDS), dtype=local.dtype, device=local.device)
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # renamed in torch 2.13
    gather(gathered, local, group=group)
    return torch.where(sharded, _stats.merge_stacked(gathered.view(world, -1, N_FIELDS)), data)


def _traced_rows(views: list[Tensor]) -> Tensor:
    """``[n, F]`` statistics in plain torch ops, exact two-pass in fp64: what a hook runs under
    ``torch.compile`` (traced into the graph, fused by inductor; no data-dependent Python)."""
    rows = []
    for v in views:
        x = v.reshape(-1).to(torch.float64)
        if x.numel() == 0:
            rows.append(torch.tensor(_NEUTRAL, dtype=torch.float64, device=x.device))
            continue
        fin = torch.isfinite(x)
        cnt = fin.sum(dtype=torch.float64)
        xz = torch.where(fin, x, 0.0)
        mean = xz.sum() / cnt
        d = torch.where(fin, x - mean, 0.0)
        mn = torch.where(fin, x, math.inf).amin()
        mx = torch.where(fin, x, -math.inf).amax()
        nan = torch.full_like(mean, math.nan)
        empty = cnt == 0
        rows.append(torch.stack([
            cnt, torch.where(empty, nan, mean), (d * d).sum(), (xz * xz).sum(), torch.where(empty, nan, mn),
            torch.where(empty, nan, mx), torch.where(empty, nan, torch.maximum(mn.abs(), mx.abs())),
            x.numel() - cnt, (x == 0).sum(dtype=torch.float64)]))
    return torch.stack(rows)


_FP8 = tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
                                          "float8_e8m0fnu") if hasattr(torch, n))


def _measurable(t: Tensor) -> Tensor:
    """``t``, or its float32 upcast for the float8 dtypes (the statistics kernels read fp16/bf16/fp32/fp64)."""
    return t.float() if t.dtype in _FP8 else t


def _name_matches(key: str, mname: str) -> bool:
    """``key`` names module ``mname``: its full name, last component or short name, or a regex of it."""
    if key in (mname, mname.rsplit(".", 1)[-1], short_name(mname)):
        return True
    try:
        return re.fullmatch(key, mname) is not None
    except re.error:
        return False


def _compile_regexes(what: str, pats: str | Iterable[str] | None) -> list[re.Pattern]:
    if pats is None:
        return []
    if isinstance(pats, str):
        pats = [pats]
    out = []
    for p in pats:
        try:
            out.append(re.compile(p))
        except re.error as e:
            raise ValueError(f"VarianceMonitor: bad {what} regex {p!r}: {e}") from None
    return out


class VarianceMonitor:
    r"""Per-layer statistics of weights, gradients, activations and updates, every ``every`` optimizer steps.

    See the module docstring for what is measured and the record format. Cost of a monitored step: one
    fused statistics launch for weights and gradients (and, ``update="exact"``, the weight deltas), one
    per forward for the activations, a norm pass (``update="norm"``) there and on the step before, and
    under ``torch.distributed`` one all_gather of the rows; the other steps cost one Python call per
    hooked module. Nothing waits for the device inside a step (on CUDA).

    Args:
        model: the model (hooks go on its submodules: create the monitor *before* ``torch.compile``).
        every: monitor the optimizer steps ``0, every, 2·every, ...``.
        weights, grads, activations: what to measure.
        include, exclude: regexes searched in module names (``model.named_modules()``); the default
            selection is every module owning parameters directly (Linear, Conv, Embedding, norms...).
            Weights and gradients are the parameters of the selected modules (tied parameters: one row).
        split_qkv: report fused Q/K/V projections as separate ``q``, ``k``, ``v`` rows.
        qkv_modules: more fused projections: names / regexes (split in thirds) or a mapping
            ``{name: (q_size, k_size, v_size)}`` (grouped-query attention).
        per_head: add one row per attention head of each Q/K/V row.
        n_head: number of heads (default: read from the attention module: ``n_head``, ``num_heads``...).
        update: ``"norm"`` (default): ``norm_change_ratio = |‖w_t‖ − ‖w_{t−1}‖| / ‖w_t‖``, both norms from
            one ``torch._foreach_norm`` pass (fp32 accumulation: resolution about 1e-6) on the step before
            each monitored step and on that step: no memory, but only a **lower bound** of the update
            ratio ``‖Δw‖ / ‖w‖`` (the triangle inequality; a rotation that keeps the norm reads 0).
            ``"exact"``: ``update_ratio = ‖w_t − w_{t−1}‖ / ‖w_t‖``, exactly, from a copy of the monitored
            weights (in their own dtype) kept during the one step before each monitored step:
            transiently one more copy of the weights. ``None``: off. Both compare consecutive optimizer
            steps, not consecutive monitored steps. Why not from the weight statistics of two monitored
            steps: ``‖Δw‖`` is not a function of ``‖w_t‖`` and ``‖w_{t-1}‖``; a bf16 snapshot would not
            do either (its rounding, ~2**-9 ‖w‖, is as large as a typical update, ~1e-3 ‖w‖).
        act_reduce: ``"forward"`` (default): the hooks keep a reference to each output and the model's own
            forward hook measures them all in one fused launch when the forward ends (outputs that
            autograd does not save live until then: a little more peak memory on monitored steps);
            ``"module"``: each hook measures its output at once (one launch per module, least memory).
            Under ``torch.compile`` the hooks are traced into the graph (plain torch ops, fused).
        sinks: :mod:`depthinit.sinks` objects (a failing sink warns once and never stops training).
        alerts: an :class:`~depthinit.alerts.Alerts` (default: the default detectors), or ``None``.
        drain: hand the records to history, alerts and sinks every ``drain`` monitored steps.
        train_only: record activations only in training mode (``model.train()``).
        history: monitored steps kept in memory for :attr:`history` and :meth:`state_dict` (``None``: all;
            each step costs ``72 bytes x rows``, ~50 KB for GPT-2 small); the sinks get every step.
        rank_zero_only: under ``torch.distributed``, only rank 0 writes to the sinks (every rank keeps the
            history and runs the alerts on the same global figures, so a callback decides alike everywhere).
        global_acts: merge each rank's activation rows into global-batch figures, in the same collective
            as the sharded weights (default: when ``torch.distributed`` runs with more than one rank).
            Every rank must then call :meth:`step` at the same steps (as with any collective).
        group: process group of the collective (default: the world).
        residual_stream: also record the residual stream: the output of each residual block (``act`` rows
            named after the block, ``"stream": True``) and the gradient with respect to it (``grad`` rows,
            ``"stream": True``; taken by a tensor hook in backward, not under ``torch.compile``). The depth
            alerts follow these rows. Default: when the model has residual blocks and ``include`` is not given
            (:func:`depthinit.structure.residual_blocks`: the container items holding residual output
            projections); ``False``: never.

    Parameters added, removed, re-parametrized or cast after the monitor was made are noticed at the next
    monitored step: the rows are rebuilt (one warning naming the changed parameters), the records of the
    earlier steps stay in :attr:`history`. Float8 tensors are measured after an upcast to float32 (a copy
    at each monitored step); every other floating dtype in its own precision (fp64 in fp64).

    Example::

        mon = VarianceMonitor(model, every=50, sinks=[depthinit.sinks.TensorBoard("runs/x")])
        for x, y in data:
            F.cross_entropy(model(x), y).backward()
            opt.step(); mon.step(); opt.zero_grad()
        mon.close()
    """

    def __init__(
        self,
        model: nn.Module,
        every: int = 50,
        *,
        weights: bool = True,
        grads: bool = True,
        activations: bool = True,
        include: str | Iterable[str] | None = None,
        exclude: str | Iterable[str] | None = None,
        split_qkv: bool = True,
        qkv_modules: Iterable[str] | Mapping[str, Sequence[int]] | None = None,
        per_head: bool = False,
        n_head: int | None = None,
        update: str | None = "norm",
        act_reduce: str = "forward",
        sinks: Sequence[Sink] = (),
        alerts: Alerts | None | bool = True,
        drain: int = 1,
        train_only: bool = True,
        history: int | None = 1000,
        rank_zero_only: bool = True,
        global_acts: bool | None = None,
        group=None,
        residual_stream: bool | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"VarianceMonitor: expected an nn.Module, got {type(model).__name__}")
        for k, v in (("every", every), ("drain", drain)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"VarianceMonitor: {k} must be an int >= 1, got {v!r}")
        if history is not None and (not isinstance(history, int) or history < 1):
            raise ValueError(f"VarianceMonitor: history must be None or an int >= 1, got {history!r}")
        if update not in UPDATE_MODES:
            raise ValueError(f"VarianceMonitor: update must be one of {UPDATE_MODES}, got {update!r}")
        if act_reduce not in ("forward", "module"):
            raise ValueError(f"VarianceMonitor: act_reduce must be 'forward' or 'module', got {act_reduce!r}")
        if n_head is not None and (not isinstance(n_head, int) or n_head < 1):
            raise ValueError(f"VarianceMonitor: n_head must be an int >= 1, got {n_head!r}")
        self.model = getattr(model, "_orig_mod", model)  # a torch.compile'd module: hook the original
        if self.model is not model:
            warnings.warn("VarianceMonitor: model is already compiled; create the monitor before torch.compile "
                          "to avoid a recompilation", stacklevel=2)
        self.every, self.drain = every, drain
        self._stream_grads_skipped = self._warned_stream_grads = False
        self.weights, self.grads, self.activations = weights, grads, activations
        self.update = update
        self.act_reduce = act_reduce
        self.split_qkv, self.per_head, self.n_head = split_qkv, per_head, n_head
        self.train_only = train_only
        self.max_history = history
        self.group = group
        self.residual_stream = residual_stream
        if global_acts is None:
            import torch.distributed as dist

            global_acts = dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1
        self.global_acts = bool(global_acts)
        self.sinks = list(sinks)
        for s in self.sinks:
            if not isinstance(s, Sink):
                raise TypeError(f"VarianceMonitor: sinks must be depthinit.sinks.Sink objects, got {type(s).__name__}")
        self.alerts: Alerts | None = Alerts() if alerts is True else (alerts or None)
        self._include = _compile_regexes("include", include)
        self._exclude = _compile_regexes("exclude", exclude)
        self._qkv = self._qkv_specs(qkv_modules)

        self._hooks: list[Any] = []
        self._dtensor = _dtensor_cls()
        self._device = self._find_device()
        self.global_step = 0
        self._active = False
        self._paused = False
        self._closed = False
        self._pending: deque = deque()  # (slot, step, valid, event)
        self._since_drain = 0
        self._hist: deque = deque(maxlen=history)  # (step, data [R, F] float64, valid [R] bool)
        self._old: deque = deque(maxlen=history)  # (step, records) of the steps before a re-scan
        self._hist_records: list[dict] = []
        self._hist_built = 0
        self._layout()
        self._emit = self._emitting(rank_zero_only)

        old = _OPEN.get(self.model)
        old = old() if old is not None else None
        if old is not None and not old._closed:
            warnings.warn("VarianceMonitor: this model already has an open monitor; closing it (its hooks are "
                          "removed) so that hooks do not stack", stacklevel=2)
            old.close()
        _OPEN[self.model] = weakref.ref(self)
        self._register_hooks()
        if self._emit:
            for s in self.sinks:
                call_safely(s, "open")
        self._set_active()

    # -- construction ------------------------------------------------------------------------------------

    def _layout(self) -> None:
        """Rows and per-layout buffers from the model's current parameters (at creation and at a re-scan)."""
        self._prows: list[_ParamRow] = []
        self._sites: list[_Site] = []
        self._build()
        k = sum(len(s.rows) for s in self._sites)
        for site in self._sites:
            if site.stream and self.grads:
                site.grad_row, k = k, k + 1
        self.rows: list[Row] = (
            [p.row for p in self._prows]
            + [Row("grad", p.row.name, p.row.layer, p.row.qkv, p.row.head) for p in self._prows]
            + [r for s in self._sites for r in s.rows]
            + [Row("grad", s.rows[0].name, s.rows[0].layer, stream=True) for s in self._sites if s.grad_row is not None]
            + [Row("update", p.row.name, p.row.layer, p.row.qkv, p.row.head) for p in self._prows]
        )
        self._nw = len(self._prows)
        self._na = sum(len(s.rows) + (s.grad_row is not None) for s in self._sites)
        self._a0, self._u0 = 2 * self._nw, 2 * self._nw + self._na
        self._signature = self._params_signature()
        self._act_buf = torch.tensor([_NEUTRAL] * self._na, dtype=torch.float64, device=self._device).reshape(
            self._na, N_FIELDS)
        self._act_neutral = self._act_buf.clone()
        self._pending_acts: list[tuple[int, Tensor]] = []  # (act row, output view) until the forward ends
        self._const: dict = {}
        self._prev_sq: Tensor | None = None  # update="norm": ‖w_{t-1}‖² of each weight row
        self._snap: list[Tensor] | None = None  # update="exact": the weights of step t-1
        self._prev_step = -1
        self._ring: Tensor | None = None
        self._host: Tensor | None = None
        self._free: list[int] = []
        self._bases: list[dict] | None = None

    def _params_signature(self) -> tuple:
        return tuple((n, p.dtype, tuple(p.shape)) for n, p in self.model.named_parameters())

    def _check_params(self) -> None:
        """Re-scan the model if its parameters changed (added, removed, re-parametrized, cast) since the rows
        were built: pending steps are drained first, their records kept in :attr:`history`."""
        sig = self._params_signature()
        if sig == self._signature:
            return
        old_names, new_names = {n for n, *_ in self._signature}, {n for n, *_ in sig}
        changed = sorted({n for n, *_ in set(sig) ^ set(self._signature)} & old_names & new_names)
        what = [f"{k}: {', '.join(v[:4])}{' ...' if len(v) > 4 else ''}" for k, v in (
            ("added", sorted(new_names - old_names)), ("removed", sorted(old_names - new_names)),
            ("changed dtype/shape", changed)) if v]
        warnings.warn(f"VarianceMonitor: the model's parameters changed at step {self.global_step} "
                      f"({'; '.join(what)}); its rows are rebuilt", stacklevel=3)
        self.flush()
        for s, d, v in self._hist:
            self._old.append((s, self._records(s, d, v)))
        self._hist.clear()
        self._hist_records, self._hist_built = [], 0
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        self._layout()
        self._register_hooks()

    @staticmethod
    def _qkv_specs(qkv_modules) -> list[tuple[str, tuple[int, ...] | None]]:
        if qkv_modules is None:
            return []
        if isinstance(qkv_modules, str):
            qkv_modules = [qkv_modules]
        items = qkv_modules.items() if isinstance(qkv_modules, Mapping) else ((k, None) for k in qkv_modules)
        out = []
        for k, sizes in items:
            if sizes is not None:
                sizes = tuple(int(s) for s in sizes)
                if len(sizes) != 3 or min(sizes) < 1:
                    raise ValueError(f"VarianceMonitor: qkv_modules[{k!r}] must be 3 positive sizes, got {sizes!r}")
            out.append((str(k), sizes))
        return out

    def _selected(self, name: str, mod: nn.Module) -> bool:
        if self._include:
            if not any(p.search(name) for p in self._include):
                return False
        elif not any(p is not None for p in mod._parameters.values()):
            return False
        return not any(p.search(name) for p in self._exclude)

    def _fused_sizes(self, mname: str, mod: nn.Module) -> tuple[int, int, int] | None:
        if not self.split_qkv:
            return None
        last = mname.rsplit(".", 1)[-1]
        sizes: tuple[int, ...] | None | str = "none"
        for key, sz in self._qkv:
            if _name_matches(key, mname):
                sizes = sz
        w = mod._parameters.get("weight")
        if sizes == "none":
            if last not in DEFAULT_QKV or w is None:
                return None
            lay = fused_layout(self.model, mname, mod, self._out_features(mod, w))
            if lay.sizes is None or lay.names != ("q", "k", "v"):
                # qkv_modules splits into contiguous ranges: right for an unknown contiguous layout, wrong
                # for one interleaved per head or KV group (each range would mix q, k and v)
                hint = ("its q/k/v rows are interleaved, so no contiguous split exists" if lay.kind == "kv_groups"
                        else "give its sizes in qkv_modules if its q, k and v are contiguous ranges")
                warnings.warn(f"VarianceMonitor: {lay.warning or f'{mname}: {lay.kind} layout'}; not split into "
                              f"q/k/v ({hint})", stacklevel=3)
                return None
            return lay.sizes  # type: ignore[return-value]
        if w is None:
            return None
        out = self._out_features(mod, w)
        if sizes is None:
            if out % 3:
                warnings.warn(f"VarianceMonitor: {mname} has {out} output features, not divisible by 3; "
                              "not split into q/k/v (give its sizes in qkv_modules)", stacklevel=3)
                return None
            return (out // 3,) * 3
        if sum(sizes) != out:
            raise ValueError(f"VarianceMonitor: qkv sizes {sizes} of {mname} do not add up to its {out} outputs")
        return sizes  # type: ignore[return-value]

    @staticmethod
    def _out_features(mod: nn.Module, w: Tensor) -> int:
        if isinstance(mod, nn.Linear) or w.dim() == 1:
            return w.shape[0]
        if type(mod).__name__ == "Conv1D":  # HF GPT-2: weight [in, out]
            return w.shape[-1]
        return w.shape[0]

    def _heads(self, mname: str, sizes: Sequence[int]) -> list[list[tuple[int, int]]]:
        """Per-head ranges (relative to each part) of the parts of a Q/K/V projection."""
        n_head, head_dim = self.n_head, None
        path = mname.split(".")
        mods = dict(self.model.named_modules())
        for i in range(len(path) - 1, -1, -1):
            m = mods.get(".".join(path[:i])) if i else self.model
            if m is None:
                continue
            for holder in (m, getattr(m, "config", None)):
                if holder is None:
                    continue
                if n_head is None:
                    for a in _HEAD_ATTRS:
                        v = getattr(holder, a, None)
                        if isinstance(v, int) and v > 0:
                            n_head = v
                            break
                hd = getattr(holder, "head_dim", None)
                if head_dim is None and isinstance(hd, int) and hd > 0:
                    head_dim = hd
        if n_head is None and head_dim is None:
            raise ValueError(f"VarianceMonitor: per_head=True but the number of heads of {mname} is unknown; "
                             "pass n_head=")
        if head_dim is None:
            q_size = sizes[0]
            parent = mods.get(mname.rsplit(".", 1)[0]) if "." in mname else self.model
            if len(sizes) == 1 and parent is not None:  # a separate k/v projection: the head size comes from q
                for qn in _SEPARATE["q"]:
                    q = getattr(parent, qn, None)
                    w = getattr(q, "weight", None)
                    if isinstance(w, Tensor) and w.dim() >= 1:
                        q_size = self._out_features(q, w)
                        break
            head_dim = q_size // n_head
        out = []
        for s in sizes:
            if head_dim < 1 or s % head_dim:
                raise ValueError(f"VarianceMonitor: {mname}: size {s} is not a multiple of the head size {head_dim}")
            out.append([(h * head_dim, (h + 1) * head_dim) for h in range(s // head_dim)])
        return out

    def _build(self) -> None:
        model = self.model
        canon: dict[int, str] = {}
        for n, p in model.named_parameters():
            canon.setdefault(id(p), n)
        locs = locate(model, list(canon.values())) if canon else {}
        blocks = self._stream_blocks({n: loc.role for n, loc in locs.items()})
        selected = [(n, m) for n, m in model.named_modules() if self._selected(n, m)]
        if not selected:
            raise ValueError("VarianceMonitor: no module selected (check include= / exclude=, or the model has "
                             "no parameters)")
        unmatched = [k for k, _ in self._qkv if not any(_name_matches(k, n) for n, _ in model.named_modules())]
        if unmatched:
            raise ValueError(f"VarianceMonitor: qkv_modules {unmatched} match no module of the model")
        names = [n for n, _ in model.named_modules()]
        shorts = [short_name(n) for n in names]
        short = dict(zip(names, shorts)) if len(set(shorts)) == len(shorts) else {
            n: ".".join(p for p in n.split(".") if p not in _WRAPPERS) for n in names}
        seen: set[int] = set()
        for mname, mod in selected:
            base = short.get(mname, mname)
            parent = short.get(mname.rsplit(".", 1)[0], "") if "." in mname else ""
            sizes = self._fused_sizes(mname, mod)
            part = _PART_OF.get(mname.rsplit(".", 1)[-1])
            layer = None
            for leaf, p in mod._parameters.items():
                if p is None or not p.is_floating_point():
                    continue
                pname = canon[id(p)]
                if layer is None:
                    layer = locs[pname].layer
                if id(p) in seen:
                    continue
                seen.add(id(p))
                suffix = "" if leaf == "weight" else f".{leaf}"
                row_layer = locs[pname].layer
                dim = self._split_dim(p, sum(sizes)) if sizes is not None else None
                if dim is not None:
                    heads = self._heads(mname, sizes) if self.per_head else None
                    a = 0
                    for j, (q, s) in enumerate(zip("qkv", sizes)):
                        name = f"{parent}.{q}" if parent else q
                        row = Row("weight", name + suffix, row_layer, q)
                        self._prows.append(_ParamRow(pname, mod, leaf, dim, a, a + s, row))
                        for h, (ha, hb) in enumerate(heads[j] if heads else []):
                            self._prows.append(_ParamRow(pname, mod, leaf, dim, a + ha, a + hb,
                                                         Row("weight", f"{name}.head{h}{suffix}", row_layer, q, h)))
                        a += s
                else:
                    name = (base + suffix) if base else leaf
                    self._prows.append(_ParamRow(pname, mod, leaf, None, 0, 0, Row("weight", name, row_layer, part)))
                    if self.per_head and part is not None and leaf in ("weight", "bias"):
                        for h, (ha, hb) in enumerate(self._heads(mname, [p.shape[0]])[0]):
                            self._prows.append(_ParamRow(pname, mod, leaf, 0, ha, hb,
                                                         Row("weight", f"{base}.head{h}{suffix}", row_layer, part, h)))
            if mod is model:
                continue  # the model's own output is not a layer activation
            if layer is None:  # a module without its own parameters (a block): the depth of its first one
                first = next(iter(mod.parameters()), None)
                layer = locs[canon[id(first)]].layer if first is not None and id(first) in canon else None
            row0 = sum(len(s.rows) for s in self._sites)
            w = mod._parameters.get("weight")
            if sizes is not None and w is not None:
                heads = self._heads(mname, sizes) if self.per_head else None
                splits, rows, a = [], [], 0
                for j, (q, s) in enumerate(zip("qkv", sizes)):
                    name = f"{parent}.{q}" if parent else q
                    splits.append((a, a + s))
                    rows.append(Row("act", name, layer, q))
                    for h, (ha, hb) in enumerate(heads[j] if heads else []):
                        splits.append((a + ha, a + hb))
                        rows.append(Row("act", f"{name}.head{h}", layer, q, h))
                    a += s
                self._sites.append(_Site(mname, row0, splits, rows))
            elif self.per_head and part is not None and w is not None:
                ranges = self._heads(mname, [self._out_features(mod, w)])[0]
                self._sites.append(_Site(mname, row0, [(0, ranges[-1][1])] + ranges,
                                         [Row("act", base, layer, part)]
                                         + [Row("act", f"{base}.head{h}", layer, part, h) for h in range(len(ranges))]))
            else:
                stream = mname in blocks
                self._sites.append(_Site(mname, row0, None, [Row("act", base or "<root>", layer, part,
                                                                 stream=stream)], stream))
        have = {s.mname for s in self._sites}
        for i, b in enumerate(blocks):
            if b not in have:
                row0 = sum(len(s.rows) for s in self._sites)
                self._sites.append(_Site(b, row0, None, [Row("act", short.get(b, b), i + 1, stream=True)], True))

    def _stream_blocks(self, roles: dict[str, str]) -> list[str]:
        if self.residual_stream is False or not self.activations or (self.residual_stream is None and self._include):
            return []
        blocks = residual_blocks(self.model, roles)
        if self.residual_stream and not blocks:
            raise ValueError("VarianceMonitor: residual_stream=True but the model has no residual blocks (no "
                             "container items holding residual output projections, see depthinit.structure)")
        return blocks

    @staticmethod
    def _split_dim(p: Tensor, out: int) -> int | None:
        for d in [0] + list(range(p.dim() - 1, 0, -1)):
            if p.shape[d] == out:
                return d
        return None

    def _find_device(self) -> torch.device:
        for p in self.model.parameters():
            t = p.to_local() if hasattr(p, "to_local") else p
            return t.device
        return torch.device("cpu")

    @staticmethod
    def _emitting(rank_zero_only: bool) -> bool:
        if not rank_zero_only:
            return True
        import torch.distributed as dist

        return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0

    def _register_hooks(self) -> None:
        if not (self.activations and self._sites):
            return
        mods = dict(self.model.named_modules())
        for i, site in enumerate(self._sites):
            self._hooks.append(mods[site.mname].register_forward_hook(self._make_hook(i)))
        if self.act_reduce == "forward":  # after the whole forward: one fused launch for every output
            self._hooks.append(self.model.register_forward_hook(self._forward_done))

    def _make_hook(self, i: int) -> Callable:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if self._active and not self._paused and (module.training or not self.train_only):
                self._observe(i, output)

        return hook

    def _forward_done(self, module: nn.Module, args: Any, output: Any) -> None:
        if self._pending_acts:
            self._reduce_acts()

    # -- activations ---------------------------------------------------------------------------------------

    def _observe(self, i: int, output: Any) -> None:
        t = first_floating(output)
        if t is None:
            return
        site = self._sites[i]
        if site.grad_row is not None and t.requires_grad:
            if torch.compiler.is_compiling():  # a tensor hook on an intermediate would break the graph
                self._stream_grads_skipped = True
            else:
                t.register_hook(self._grad_hook(site.grad_row))
        x = _measurable(t.detach())
        if self._dtensor is not None and isinstance(x, self._dtensor):
            x = x.to_local()  # activations are rank-local (data parallel)
        views = [x] if site.splits is None else [x.narrow(-1, a, b - a) for a, b in site.splits]
        if torch.compiler.is_compiling():  # traced into the graph: plain torch ops that inductor fuses
            with torch.no_grad():
                a, b = site.row0, site.row0 + len(views)
                rows = _traced_rows(views).to(self._act_buf.device)
                self._act_buf[a:b] = _stats.merge_stacked(torch.stack([self._act_buf[a:b], rows]))
            return
        self._pending_acts.extend(zip(range(site.row0, site.row0 + len(views)), views))
        if self.act_reduce == "module":
            self._reduce_acts()

    def _grad_hook(self, row: int) -> Callable[[Tensor], None]:
        def hook(g: Tensor) -> None:
            if self._active:
                self._pending_acts.append((row, _measurable(g.detach())))
                if self.act_reduce == "module":
                    self._reduce_acts()

        return hook

    def _reduce_acts(self) -> None:
        """Statistics of the pending outputs in one launch, merged (Chan) into their rows of the step."""
        idx, views = zip(*self._pending_acts)
        self._pending_acts = []
        with torch.no_grad():
            by_dev: dict[torch.device, list[int]] = {}
            for j, v in enumerate(views):
                by_dev.setdefault(v.device, []).append(j)
            if len(by_dev) == 1:
                new = _stats.tensor_stats(list(views)).to(self._device)
            else:  # outputs on several devices (model parallel): one launch per device
                new = torch.empty((len(views), N_FIELDS), dtype=torch.float64, device=self._device)
                for js in by_dev.values():
                    new[js] = _stats.tensor_stats([views[j] for j in js]).to(self._device)
            owner = self._cached(("owner", idx), lambda: list(range(self._na)) + list(idx), torch.long)
            merged = _stats.merge_partials(torch.cat([self._act_buf, new]), owner, self._na)
            self._act_buf.copy_(merged)

    def _cached(self, key: Any, make: Callable[[], list], dtype: torch.dtype) -> Tensor:
        """A small constant device tensor, built once (no host-to-device copy inside later steps)."""
        t = self._const.get(key)
        if t is None:
            t = self._const[key] = torch.tensor(make(), dtype=dtype, device=self._device)
        return t

    def _set_active(self) -> None:
        self._active = bool(self.activations and self._sites and self.global_step % self.every == 0)
        self._pending_acts = []
        if self._active:
            self._check_params()
            self._follow_device()
            self._act_buf.copy_(self._act_neutral)

    def _follow_device(self) -> None:
        """The model moved (``model.cuda()`` after the monitor was made): move the buffers along."""
        dev = self._find_device()
        if dev == self._device:
            return
        self.flush()
        self._device = dev
        self._act_buf, self._act_neutral = self._act_buf.to(dev), self._act_neutral.to(dev)
        self._const, self._ring, self._host, self._free = {}, None, None, []
        self._prev_sq = None if self._prev_sq is None else self._prev_sq.to(dev)
        self._snap = None if self._snap is None else [t.to(dev) for t in self._snap]

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No activation is recorded inside this block (an evaluation pass in the middle of a step)."""
        prev, self._paused = self._paused, True
        try:
            yield
        finally:
            self._paused = prev

    # -- measuring -----------------------------------------------------------------------------------------

    def _param_views(self, grads: bool) -> tuple[list[Tensor], list[bool], list[bool], list[bool]]:
        """Local views of the weights (or gradients), their sharded / counted flags, and which rows exist.

        Called under ``torch.no_grad()`` (views without autograd history).
        """
        views, sharded, contrib, present = [], [], [], []
        dt = self._dtensor
        for pr in self._prows:
            t = pr.module._parameters.get(pr.leaf)
            if t is not None and grads:
                t = t.grad
            if t is None:
                present.append(False)
                continue
            t = _measurable(t)
            if dt is not None and isinstance(t, dt):
                v, s, c = _local_part(t, pr.dim, pr.start, pr.stop, dt)
            else:
                v, s, c = (t if pr.dim is None else t.narrow(pr.dim, pr.start, pr.stop - pr.start)), False, True
            views.append(v)
            sharded.append(s)
            contrib.append(c)
            present.append(True)
        return views, sharded, contrib, present

    def _sumsq(self, views: list[Tensor]) -> Tensor:
        """``[n]`` fp64 squared L2 norms (fp32 accumulation, one native pass per tensor)."""
        if not views:
            return torch.zeros(0, dtype=torch.float64, device=self._device)
        wide = [v.dtype == torch.float64 for v in views]
        if not any(wide):
            norms = torch._foreach_norm(views, 2, dtype=torch.float32)
            return torch.stack(norms).to(torch.float64).square().to(self._device)
        out = [None] * len(views)  # fp64 tensors in fp64 (a float32 accumulation cannot take them)
        for w, dt in ((False, torch.float32), (True, torch.float64)):
            idx = [i for i, x in enumerate(wide) if x == w]
            if idx:
                for i, n in zip(idx, torch._foreach_norm([views[i] for i in idx], 2, dtype=dt)):
                    out[i] = n.to(torch.float64)
        return torch.stack(out).square().to(self._device)

    @torch.no_grad()
    def _prepare_update(self) -> None:
        """On the step before a monitored step: the reference the update ratio is measured against."""
        if self.update == "exact":
            self._snap = [v.clone() for v in self._param_views(False)[0]]
        else:
            self._prev_sq = self._sumsq(self._param_views(False)[0])

    def step(self) -> None:
        """Record the step that just ended (if monitored) and prepare the next one.

        Call after ``optimizer.step()`` and before ``optimizer.zero_grad()``, once per optimizer step.
        """
        if self._closed:
            raise RuntimeError("VarianceMonitor.step() after close()")
        s = self.global_step
        monitored, prepare = s % self.every == 0, self.update is not None and (s + 1) % self.every == 0
        if monitored or prepare:
            self._check_params()
        if monitored:
            self._record(s)
            if self._stream_grads_skipped and not self._warned_stream_grads:
                self._warned_stream_grads = True
                warnings.warn("VarianceMonitor: gradients with respect to the residual stream are not recorded "
                              "under torch.compile (a tensor hook inside the compiled graph); block outputs, "
                              "weights and parameter gradients are. residual_stream=False silences this",
                              stacklevel=2)
        if prepare and self._nw:
            self._prepare_update()
            self._prev_step = s
        self.global_step = s + 1
        self._set_active()

    def _alloc(self) -> None:
        cap = self.drain + 2
        r = len(self.rows)
        self._ring = torch.empty((cap, r, N_FIELDS), dtype=torch.float64, device=self._device)
        if self._device.type == "cuda":
            self._host = torch.empty((cap, r, N_FIELDS), dtype=torch.float64, pin_memory=True)
        self._free = list(range(cap))

    @torch.no_grad()
    def _measure(self, s: int) -> tuple[Tensor, list[bool], bool]:
        """``[R, F]`` rows of this step (weights, grads, acts, update), grads present, update present.

        One statistics launch for weights, gradients (and weight deltas), one collective for the
        sharded ones. Update rows: ``update="exact"``: the statistics of ``w_t - w_{t-1}``;
        ``update="norm"``: ``count``, ``m2 = ‖w_t‖²`` and ``sumsq = ‖w_{t-1}‖²`` (see :meth:`_records`).
        """
        nw = self._nw
        wv, ws, wc, _ = self._param_views(False)
        gv, gs, gc, present = self._param_views(True) if self.grads else ([], [], [], [False] * nw)
        has_update = self._prev_step == s - 1 and (self._snap is not None or self._prev_sq is not None)
        dv: list[Tensor] = []
        if has_update and self.update == "exact":
            for v, snap in zip(wv, self._snap):
                torch.sub(v, snap, out=snap)  # snap := w_t - w_{t-1}, in place
            dv = self._snap
        rows = [_stats.tensor_stats(wv + gv + dv).to(self._device)] if wv or gv else []
        flags = ws + gs + (ws if dv else [])
        contrib = wc + gc + (wc if dv else [])
        if has_update and self.update == "norm":
            n = self._cached(("numel",), lambda: [float(v.numel()) for v in wv], torch.float64)
            u = torch.zeros((nw, N_FIELDS), dtype=torch.float64, device=self._device)
            u[:, COUNT], u[:, M2], u[:, SUMSQ] = n, self._sumsq(wv), self._prev_sq
            rows.append(u)
            flags, contrib = flags + ws, contrib + wc
        self._snap, self._prev_sq = None, None
        n_param_rows = sum(r.shape[0] for r in rows)
        if self._na and self.global_acts:  # rank-local activations merged into global batch figures
            rows.append(self._act_buf)
            flags, contrib = flags + [True] * self._na, contrib + [True] * self._na
        data = torch.cat(rows) if rows else torch.zeros((0, N_FIELDS), dtype=torch.float64, device=self._device)
        if any(flags):
            data = self._global(data, flags, contrib)
        out = torch.zeros((len(self.rows), N_FIELDS), dtype=torch.float64, device=self._device)
        out[:nw] = data[:nw]
        ng = len(gv)
        if ng == nw:
            out[nw:2 * nw] = data[nw:2 * nw]
        elif ng:
            idx = self._cached(("grads", tuple(present)), lambda: [nw + i for i, p in enumerate(present) if p],
                               torch.long)
            out.index_copy_(0, idx, data[nw:nw + ng])
        if self._na:
            out[self._a0:self._u0] = data[n_param_rows:] if self.global_acts else self._act_buf
        if has_update:
            out[self._u0:] = data[nw + ng:n_param_rows]
        return out, present, has_update

    def _global(self, data: Tensor, sharded: list[bool], contrib: list[bool]) -> Tensor:
        key = ("mask", tuple(sharded), tuple(contrib))
        use = self._cached(key, lambda: [[c or not s] for s, c in zip(sharded, contrib)], torch.bool)
        is_sharded = self._cached(("sharded", tuple(sharded)), lambda: [[s] for s in sharded], torch.bool)
        neutral = self._cached(("neutral",), lambda: list(_NEUTRAL), torch.float64)
        return _global_rows(data, use, is_sharded, neutral, self.group)

    def _record(self, s: int) -> None:
        self._follow_device()
        if self._pending_acts:  # outputs of submodules called outside the model's forward
            self._reduce_acts()
        if self._ring is None:
            self._alloc()
        if not self._free:
            self._drain(force=1)
        slot = self._free.pop(0)
        data, present, has_update = self._measure(s)
        self._ring[slot].copy_(data)
        nw, valid = self._nw, np.zeros(len(self.rows), dtype=bool)
        valid[:nw] = self.weights
        valid[nw:2 * nw] = present if self.grads else False
        valid[self._a0:self._u0] = bool(self.activations)
        valid[self._u0:] = has_update
        event = None
        if self._host is not None:
            self._host[slot].copy_(self._ring[slot], non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        self._pending.append((slot, s, valid, event))
        self._since_drain += 1
        if self._since_drain >= self.drain:
            self._drain()

    # -- draining ------------------------------------------------------------------------------------------

    def _drain(self, force: int = 0) -> None:
        """Emit the pending steps whose copy has landed; wait for the first ``force`` of them (all if -1)."""
        self._since_drain = 0
        k = 0
        while self._pending:
            slot, step, valid, event = self._pending[0]
            if event is not None and not (force < 0 or k < force) and not event.query():
                break
            if event is not None:
                event.synchronize()
            data = (self._host[slot] if self._host is not None else self._ring[slot]).numpy().copy()
            self._pending.popleft()
            self._free.append(slot)
            k += 1
            self._emit_step(step, data, valid)

    def flush(self) -> None:
        """Wait for every pending step and hand it to history, alerts and sinks (one host sync)."""
        if self._pending:
            self._drain(force=-1)
        if self._emit:
            for s in self.sinks:
                call_safely(s, "flush")

    def _emit_step(self, step: int, data: np.ndarray, valid: np.ndarray) -> None:
        self._hist.append((step, data, valid))
        records = self._records(step, data, valid)
        events: list[AlertEvent] = self.alerts.check(step, records) if self.alerts is not None else []
        if self._emit:
            for s in self.sinks:  # each sink gets its own copies: what one changes, the others never see
                call_safely(s, "write", step, [dict(r) for r in records])
                for ev in events:
                    call_safely(s, "alert", dataclasses.replace(ev))
                call_safely(s, "flush")
        if self.alerts is not None:
            self.alerts.dispatch(events)

    _STAT_KEYS = ("mean", "var", "std", "rms", "l2", "min", "max", "absmax")

    def _records(self, step: int, data: np.ndarray, valid: np.ndarray) -> list[dict[str, Any]]:
        """One dict per valid row (the record format of the module docstring), built column-wise."""
        if self._bases is None:  # the constant part of each row's record
            self._bases = []
            for row in self.rows:
                base = {"kind": row.kind, "name": row.name, "layer": row.layer}
                if row.qkv is not None:
                    base["qkv"] = row.qkv
                if row.head is not None:
                    base["head"] = row.head
                if row.stream:
                    base["stream"] = True
                self._bases.append(base)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            cnt = data[:, COUNT]
            var = data[:, M2] / cnt
            l2 = np.sqrt(data[:, SUMSQ])
            cols = np.stack([data[:, MEAN], var, np.sqrt(var), np.sqrt(data[:, SUMSQ] / cnt), l2, data[:, MIN],
                             data[:, MAX], data[:, ABSMAX]], 1)
            ints = np.nan_to_num(data[:, [COUNT, NONFINITE, ZEROS]]).astype(np.int64)
            upd = None
            if valid[self._u0:].any():
                u = slice(self._u0, len(self.rows))
                if self.update == "exact":  # stats of w_t - w_{t-1}; ‖w_t‖ from the weight row
                    upd = np.stack([l2[u], l2[u] / l2[: self._nw]], 1)
                else:  # m2 = ‖w_t‖², sumsq = ‖w_{t-1}‖², both from the same fp32 norm
                    cur = np.sqrt(np.maximum(data[u, M2], 0.0))
                    upd = (np.abs(cur - l2[u]) / cur)[:, None]
                upd = np.where(np.isfinite(upd), upd, np.nan).tolist()
        keep = valid.copy()
        keep[self._a0:self._u0] &= (ints[self._a0:self._u0, 0] > 0) | (ints[self._a0:self._u0, 1] > 0)  # ran
        idx = np.flatnonzero(keep[: self._u0]).tolist()
        cols, ints, bases, keys = cols.tolist(), ints.tolist(), self._bases, self._STAT_KEYS
        out = []
        for i in idx:
            c, nf, z = ints[i]
            rec = {"step": step, **bases[i], "count": c, **dict(zip(keys, cols[i])), "nonfinite": nf, "zeros": z}
            out.append(rec)
        if upd is not None:
            names = ("delta_l2", "update_ratio") if self.update == "exact" else ("norm_change_ratio",)
            for i in np.flatnonzero(keep[self._u0:]).tolist():
                out.append({"step": step, **bases[self._u0 + i], **dict(zip(names, upd[i]))})
        return out

    # -- results -------------------------------------------------------------------------------------------

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every drained record, oldest first (built on access from the compact rows; ``history=`` bounds it)."""
        old = [r for _, recs in self._old_steps() for r in recs]
        if self.max_history is not None:
            return old + [r for s, d, v in self._hist for r in self._records(s, d, v)]
        for s, d, v in list(self._hist)[self._hist_built:]:
            self._hist_records.extend(self._records(s, d, v))
        self._hist_built = len(self._hist)
        return old + self._hist_records

    def _old_steps(self) -> list[tuple[int, list[dict]]]:
        """``(step, records)`` of the steps drained before a re-scan that still fit in ``history=``."""
        old = list(self._old)
        if self.max_history is not None:
            old = old[max(0, len(old) - max(0, self.max_history - len(self._hist))):]
        return old

    @property
    def events(self) -> list[AlertEvent]:
        """Every alert raised so far."""
        return list(self.alerts.events) if self.alerts is not None else []

    def state_dict(self) -> dict[str, Any]:
        """History, step counter, pending update reference and alert windows (flushes pending steps first)."""
        self.flush()
        hist = list(self._hist)
        r = len(self.rows)
        return {
            "version": 1,
            "global_step": self.global_step,
            "every": self.every,
            "update": self.update,
            "rows": [f"{row.kind}:{row.name}" for row in self.rows],
            "steps": torch.tensor([h[0] for h in hist], dtype=torch.int64),
            "data": torch.from_numpy(np.stack([h[1] for h in hist])) if hist else torch.zeros((0, r, N_FIELDS),
                                                                                              dtype=torch.float64),
            "valid": torch.from_numpy(np.stack([h[2] for h in hist])) if hist else torch.zeros((0, r),
                                                                                               dtype=torch.bool),
            "prev_sq": None if self._prev_sq is None else self._prev_sq.cpu(),
            # update="exact" between the step before a monitored step and that step: the weights of step t-1
            "snapshot": None if self._snap is None else [t.cpu() for t in self._snap],
            "prev_step": self._prev_step,
            "alerts": None if self.alerts is None else self.alerts.state_dict(),
            "old_steps": [[s, [dict(r) for r in recs]] for s, recs in self._old_steps()],  # before a re-scan
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue a run: same rows required (same model and options); history and alerts are restored.

        A state saved with a subset of these rows (before the residual-stream rows existed) loads too: the
        rows it lacks read as not measured at its steps.
        """
        if state.get("version") != 1:
            raise ValueError(f"VarianceMonitor.load_state_dict: unknown state version {state.get('version')!r}")
        rows = [f"{row.kind}:{row.name}" for row in self.rows]
        saved = list(state["rows"])
        stream = {f"{row.kind}:{row.name}" for row in self.rows if row.stream}
        if saved != rows and not (set(saved) <= set(rows) and set(rows) - set(saved) <= stream):
            diff = sorted(set(saved) ^ set(rows))[:4]
            raise ValueError("VarianceMonitor.load_state_dict: the saved monitor measured other rows (different "
                             f"model or options), e.g. {diff}")
        where = None if saved == rows else np.array([rows.index(k) for k in saved], dtype=np.int64)
        self._drain(force=-1)
        self.global_step = int(state["global_step"])
        self._hist.clear()
        for s, d, v in zip(state["steps"].tolist(), state["data"].numpy(), state["valid"].numpy()):
            if where is not None:
                d_all, v_all = np.tile(np.array(_NEUTRAL), (len(rows), 1)), np.zeros(len(rows), dtype=bool)
                d_all[where], v_all[where] = d, v
                d, v = d_all, v_all
            self._hist.append((int(s), d.copy(), v.copy()))
        self._old.clear()
        self._old.extend((int(s), [dict(r) for r in recs]) for s, recs in state.get("old_steps", []))
        self._hist_records, self._hist_built = [], 0
        prev = state.get("prev_sq")
        self._prev_sq = None if prev is None else prev.to(self._device)
        snap = state.get("snapshot")
        self._snap = None if snap is None else [t.to(self._device) for t in snap]
        self._prev_step = int(state.get("prev_step", -1))
        if self.alerts is not None and state.get("alerts") is not None:
            self.alerts.load_state_dict(state["alerts"])
        self._set_active()

    # -- lifetime ------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Flush pending steps, remove every hook and close the sinks. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._active = False
        try:
            if self._ring is not None:
                self.flush()
        finally:
            for h in self._hooks:
                h.remove()
            self._hooks.clear()
            if self._emit:
                for s in self.sinks:
                    call_safely(s, "close")
            ref = _OPEN.get(self.model)
            if ref is not None and ref() is self:
                del _OPEN[self.model]

    def __enter__(self) -> VarianceMonitor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        n = {k: sum(r.kind == k for r in self.rows) for k in KINDS}
        return (f"VarianceMonitor(every={self.every}, step={self.global_step}, rows: {n['weight']} weights, "
                f"{n['act']} activations, update={self.update!r}, sinks={len(self.sinks)}, "
                f"{'closed' if self._closed else 'open'})")
