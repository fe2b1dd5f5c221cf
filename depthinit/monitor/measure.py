"""The statistics of one monitored step: weight and gradient views, one fused launch, one collective.

:class:`StepMeasure` assembles the ``[R, N_FIELDS]`` fp64 rows of a step in the layout of a
:class:`~depthinit.monitor.layout.RowTable`: the weights, gradients (and, ``update="exact"``, the weight deltas)
in one statistics launch, the update rows of :class:`~depthinit.monitor.updates.UpdateTracker`, and the step's
activation rows; the rows of sharded parameters (and, ``global_acts``, the activations) are merged across ranks
in ONE all_gather (:func:`depthinit.distributed.merge_sharded`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from depthinit.kernels.contract import N_FIELDS, NEUTRAL_ROW, SUMSQ

from .. import stats as _stats
from ..distributed import is_dtensor, local_slice, merge_sharded
from .layout import RowTable
from .updates import UpdateTracker

_FP8 = tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
                                          "float8_e8m0fnu") if hasattr(torch, n))


def measurable(t: Tensor) -> Tensor:
    """``t``, or its float32 upcast for the float8 dtypes (the statistics kernels read fp16/bf16/fp32/fp64)."""
    return t.float() if t.dtype in _FP8 else t


def traced_rows(views: list[Tensor]) -> Tensor:
    """``[n, F]`` statistics in plain torch ops, exact two-pass in fp64: what a hook runs under
    ``torch.compile`` (traced into the graph, fused by inductor; no data-dependent Python)."""
    rows = []
    for v in views:
        x = v.reshape(-1).to(torch.float64)
        if x.numel() == 0:
            rows.append(torch.tensor(NEUTRAL_ROW, dtype=torch.float64, device=x.device))
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


def _data_ptrs(params: list) -> list[int]:
    return [0 if p is None else p.data_ptr() for p in params]


class Constants:
    """Small constant device tensors, each built once (no host-to-device copy inside later steps)."""

    def __init__(self, device: torch.device):
        self.device = device
        self._t: dict = {}

    def get(self, key: Any, make: Callable[[], list], dtype: torch.dtype) -> Tensor:
        t = self._t.get(key)
        if t is None:
            t = self._t[key] = torch.tensor(make(), dtype=dtype, device=self.device)
        return t


class StepMeasure:
    """The rows of a step for one :class:`RowTable` (rebuilt with it), on ``consts.device``."""

    def __init__(self, table: RowTable, consts: Constants, group: Any = None, global_acts: bool = False):
        self.table, self.consts, self.group, self.global_acts = table, consts, group, global_acts
        self._weights: tuple[list, list[int], tuple] | None = None  # weight_views(): parameters, pointers, views

    def weight_views(self) -> tuple[list[Tensor], list[bool], list[bool], list[bool]]:
        """:meth:`param_views` of the weights: the same lists as last time while every parameter is the same
        object at the same address (its views then show its current values: an optimizer writes in place; a new
        ``.data``, a move or a resize changes the address). Built anew for DTensor and float8 parameters."""
        params = [pr.module._parameters.get(pr.leaf) for pr in self.table.prows]
        if self._weights is not None:
            before, ptrs, views = self._weights
            if all(map(operator.is_, params, before)) and _data_ptrs(params) == ptrs:
                return views
        views = self.param_views(False)
        plain = all(p is None or (p.dtype not in _FP8 and not is_dtensor(p)) for p in params)
        self._weights = (params, _data_ptrs(params), views) if plain else None
        return views

    def grad_views(self) -> tuple[list[Tensor], list[bool], list[bool], list[bool]]:
        """:meth:`param_views` of the gradients. While :meth:`weight_views` holds plain parameters (checked this
        step), their gradients are plain too: views straight from its list, without the DTensor / float8 checks."""
        if self._weights is None:
            return self.param_views(True)
        views, present = [], []
        for pr, p in zip(self.table.prows, self._weights[0]):
            g = None if p is None else p.grad
            present.append(g is not None)
            if g is not None:
                views.append(g if pr.dim is None else g.narrow(pr.dim, pr.start, pr.stop - pr.start))
        return views, [False] * len(views), [True] * len(views), present

    def param_views(self, grads: bool) -> tuple[list[Tensor], list[bool], list[bool], list[bool]]:
        """Local views of the weights (or gradients), their sharded / counted flags, and which rows exist.

        Called under ``torch.no_grad()`` (views without autograd history).
        """
        views, sharded, contrib, present = [], [], [], []
        for pr in self.table.prows:
            t = pr.module._parameters.get(pr.leaf)
            if t is not None and grads:
                t = t.grad
            if t is None:
                present.append(False)
                continue
            t = measurable(t)
            if is_dtensor(t):
                v, s, c = local_slice(t, pr.dim, pr.start, pr.stop, "VarianceMonitor")
            else:
                v, s, c = (t if pr.dim is None else t.narrow(pr.dim, pr.start, pr.stop - pr.start)), False, True
            views.append(v)
            sharded.append(s)
            contrib.append(c)
            present.append(True)
        return views, sharded, contrib, present

    @torch.no_grad()
    def __call__(self, step: int, updates: UpdateTracker, acts: Tensor, grads: bool) -> tuple[Tensor, list[bool], bool]:
        """``[R, F]`` rows of this step, which gradient rows exist, whether the update rows were measured.

        ``updates``: the :class:`~depthinit.monitor.updates.UpdateTracker` (its reference is used up here);
        ``acts``: the ``[n_acts, F]`` activation rows of the step (this rank's).
        """
        tab, dev = self.table, self.consts.device
        nw = tab.n_weights
        wv, ws, wc, _ = self.weight_views()
        gv, gs, gc, present = self.grad_views() if grads else ([], [], [], [False] * nw)
        has_update = updates.ready(step)
        dv = updates.deltas(wv) if has_update else []
        rows = [_stats.tensor_stats(wv + gv + dv).to(dev)] if wv or gv else []
        flags = ws + gs + (ws if dv else [])
        contrib = wc + gc + (wc if dv else [])
        norm = None
        if has_update and updates.mode == "norm":
            numel = self.consts.get(("numel",), lambda: [float(v.numel()) for v in wv], torch.float64)
            norm = updates.norm_rows(wv, numel, current_sq=rows[0][: len(wv), SUMSQ] if wv else None)
        if norm is not None:
            rows.append(norm)
            flags, contrib = flags + ws, contrib + wc
        updates.clear()
        n_param_rows = sum(r.shape[0] for r in rows)
        na = tab.n_acts
        if na and self.global_acts:  # rank-local activations merged into global batch figures
            rows.append(acts)
            flags, contrib = flags + [True] * na, contrib + [True] * na
        data = torch.cat(rows) if rows else torch.zeros((0, N_FIELDS), dtype=torch.float64, device=dev)
        if any(flags):
            data = self._global(data, flags, contrib)
        out = torch.zeros((len(tab), N_FIELDS), dtype=torch.float64, device=dev)
        out[tab.weights] = data[:nw]
        ng = len(gv)
        if ng == nw:
            out[tab.grads] = data[nw:2 * nw]
        elif ng:
            idx = self.consts.get(("grads", tuple(present)), lambda: [nw + i for i, p in enumerate(present) if p],
                                  torch.long)
            out.index_copy_(0, idx, data[nw:nw + ng])
        if na:
            out[tab.acts] = data[n_param_rows:] if self.global_acts else acts
        if has_update:
            out[tab.updates] = data[nw + ng:n_param_rows]
        return out, present, has_update

    def _global(self, data: Tensor, sharded: list[bool], contrib: list[bool]) -> Tensor:
        c = self.consts
        use = c.get(("mask", tuple(sharded), tuple(contrib)), lambda: [u or not s for s, u in zip(sharded, contrib)],
                    torch.bool)
        is_sharded = c.get(("sharded", tuple(sharded)), lambda: list(sharded), torch.bool)
        neutral = c.get(("neutral",), lambda: list(NEUTRAL_ROW), torch.float64)
        return merge_sharded(data, is_sharded, use, _stats.merge_stacked, self.group, neutral)
