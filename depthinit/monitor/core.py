"""The :class:`VarianceMonitor`: it wires the rows (:mod:`.layout`), the activation hooks (:mod:`.capture`),
the update reference (:mod:`.updates`), the step's statistics (:mod:`.measure`), the device ring
(:mod:`.ring`), the records (:mod:`.records`) and the history (:mod:`.history`) to the alerts and sinks."""

from __future__ import annotations

import dataclasses
import warnings
import weakref
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch
from torch import nn

from ..alerts import AlertEvent, Alerts
from ..distributed import is_emitting_rank, multi_rank
from ..sinks import Sink, call_safely
from .capture import ActivationCapture
from .history import History
from .layout import KINDS, RowTable, Selection, build_rows, describe_change, params_signature
from .measure import Constants, StepMeasure
from .records import RecordFormatter
from .ring import DeviceRing
from .updates import UpdateTracker

_OPEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its open monitor


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (its local shard for a DTensor), CPU without parameters."""
    for p in model.parameters():
        return (p.to_local() if hasattr(p, "to_local") else p).device
    return torch.device("cpu")


def _checked_sinks(sinks: Sequence[Sink]) -> list[Sink]:
    for s in sinks:
        if not isinstance(s, Sink):
            raise TypeError(f"VarianceMonitor: sinks must be depthinit.sinks.Sink objects, got {type(s).__name__}")
    return list(sinks)


def _claim(model: nn.Module, mon: VarianceMonitor) -> None:
    """Register ``mon`` as the open monitor of ``model``, closing an open one first (hooks must not stack)."""
    old = _OPEN.get(model)
    old = old() if old is not None else None
    if old is not None and not old._closed:
        warnings.warn("VarianceMonitor: this model already has an open monitor; closing it (its hooks are "
                      "removed) so that hooks do not stack", stacklevel=3)
        old.close()
    _OPEN[model] = weakref.ref(mon)


def _release(model: nn.Module, mon: VarianceMonitor) -> None:
    ref = _OPEN.get(model)
    if ref is not None and ref() is mon:
        del _OPEN[model]


def _send(sinks: list[Sink], step: int, records: list[dict], events: list[AlertEvent]) -> None:
    """One step's records and alerts to every sink; each sink gets its own copies (what one changes, the
    others never see), and a failing sink warns once and never stops training."""
    for s in sinks:
        call_safely(s, "write", step, [dict(r) for r in records])
        for ev in events:
            call_safely(s, "alert", dataclasses.replace(ev))
        call_safely(s, "flush")


class VarianceMonitor:
    r"""Per-layer statistics of weights, gradients, activations and updates, every ``every`` optimizer steps.

    See the module docstring for what is measured and the record format. Cost of a monitored step: one
    fused statistics launch for weights and gradients (and, ``update="exact"``, the weight deltas), one
    per forward for the activations, a norm pass (``update="norm"``) there and on the step before, and
    under ``torch.distributed`` one all_gather of the rows; the other steps cost two hooks on the model (the
    modules' hooks are on in monitored steps only; under ``torch.compile``, on for good). No host sync in a step.

    Args:
        model: the model (hooks go on its submodules, first among their forward hooks: each sees the module's
            own output; create the monitor *before* ``torch.compile``).
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
        update: ``"norm"`` (default): ``norm_change_ratio = |‖w_t‖ − ‖w_{t−1}‖| / ‖w_t‖`` (fp64 sums of
            squares: the weight statistics of the step before and of the monitored step; unchanged weights read
            exactly 0): no memory, but only a **lower bound** of ``‖Δw‖ / ‖w‖`` (the triangle inequality; a
            rotation that keeps the norm reads 0).
            ``"exact"``: ``update_ratio = ‖w_t − w_{t−1}‖ / ‖w_t‖``, exactly, from a copy of the monitored
            weights (in their own dtype) kept during the one step before each monitored step:
            transiently one more copy of the weights. ``None``: off. Both compare consecutive optimizer
            steps, not consecutive monitored steps (see :mod:`depthinit.monitor.updates`).
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

    Parameters added, removed, re-parametrized or cast, and submodules replaced, after the monitor was made
    are noticed at the next monitored step: the rows are rebuilt (one warning naming what changed), the
    records of the earlier steps stay in :attr:`history`. Float8 tensors are measured after an upcast to
    float32 (a copy at each monitored step); every other floating dtype in its own precision (fp64 in fp64).

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
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"VarianceMonitor: every must be an int >= 1, got {every!r}")
        self.model = getattr(model, "_orig_mod", model)  # a torch.compile'd module: hook the original
        self._ring, self._history, self._updates = DeviceRing(drain), History(history), UpdateTracker(update)
        self._capture = ActivationCapture(self.model, act_reduce, train_only, enabled=activations)
        self._sel = Selection.from_options(include, exclude, qkv_modules, split_qkv=split_qkv, per_head=per_head,
                                           n_head=n_head, grads=grads, activations=activations,
                                           residual_stream=residual_stream)
        if self.model is not model:
            warnings.warn("VarianceMonitor: model is already compiled; create the monitor before torch.compile "
                          "to avoid a recompilation", stacklevel=2)
        self.every, self.drain, self.weights, self.grads, self.activations = every, drain, weights, grads, activations
        self.update, self.act_reduce, self.train_only, self.max_history = update, act_reduce, train_only, history
        self.split_qkv, self.per_head, self.n_head = split_qkv, per_head, n_head
        self.group, self.residual_stream = group, residual_stream
        self.global_acts = bool(multi_rank(group) if global_acts is None else global_acts)
        self.sinks = _checked_sinks(sinks)
        self.alerts: Alerts | None = Alerts() if alerts is True else (alerts or None)
        self._device = model_device(self.model)
        self.global_step, self._closed = 0, False
        self._layout()
        self._emit = is_emitting_rank(rank_zero_only)
        _claim(self.model, self)
        self._capture.register()
        self._call_sinks("open")
        self._set_active()

    def _layout(self) -> None:
        """Rows and the per-layout pieces from the model's current parameters (at creation and at a re-scan)."""
        self._table: RowTable = build_rows(self.model, self._sel)
        self.rows = self._table.rows
        self._signature = params_signature(self.model)
        self._consts = Constants(self._device)
        self._measure = StepMeasure(self._table, self._consts, self.group, self.global_acts)
        self._records = RecordFormatter(self._table, self.update)
        self._capture.set_sites(self._table.sites, self._table.n_acts, self._consts)
        self._updates.reset()
        self._ring.reset()

    def _check_params(self) -> None:
        """Re-scan the model if its parameters changed (added, removed, re-parametrized, cast) since the rows
        were built: pending steps are drained first, their records kept in :attr:`history`."""
        sig = params_signature(self.model)
        if sig == self._signature:
            return
        warnings.warn(f"VarianceMonitor: the model's parameters changed at step {self.global_step} "
                      f"({describe_change(self._signature, sig)}); its rows are rebuilt", stacklevel=3)
        self.flush()
        self._history.archive(self._records)
        self._capture.remove()
        self._layout()
        self._capture.register()

    def _follow_device(self) -> None:
        """The model moved (``model.cuda()`` after the monitor was made): move the buffers along."""
        dev = model_device(self.model)
        if dev == self._device:
            return
        self.flush()
        self._device = dev
        self._consts = self._measure.consts = Constants(dev)
        self._capture.to(self._consts)
        self._ring.reset()
        self._updates.to(dev)

    def _set_active(self) -> None:
        active = bool(self.activations and self._table.sites and self.global_step % self.every == 0)
        self._capture.start_step(False)
        if active:  # (step() re-checked the parameters just before)
            self._follow_device()
            self._capture.start_step(True)

    # the hooks record while this is True (set by step(); benchmarks set it themselves)
    _active = property(lambda self: self._capture.active, lambda self, v: self._capture.start_step(v))
    _prev_step = property(lambda self: self._updates.prev_step,
                          lambda self, v: setattr(self._updates, "prev_step", v))

    def paused(self) -> AbstractContextManager[None]:
        """No activation is recorded inside this block (an evaluation pass in the middle of a step)."""
        return self._capture.pausing()

    def _prepare_update(self) -> None:
        """On the step before a monitored step: the reference the update ratio is measured against."""
        with torch.no_grad():
            self._updates.prepare(self.global_step, self._measure.weight_views()[0], self._device)

    def step(self) -> None:
        """Record the step that just ended (if monitored) and prepare the next one.

        Call after ``optimizer.step()`` and before ``optimizer.zero_grad()``, once per optimizer step.
        """
        if self._closed:
            raise RuntimeError("VarianceMonitor.step() after close()")
        s = self.global_step
        monitored, prepare = s % self.every == 0, self._updates.due(s, self.every)
        if monitored or prepare or (s + 1) % self.every == 0:  # once per step that measures or records
            self._check_params()
        if monitored:
            self._record(s)
            self._capture.warn_skipped(stacklevel=3)
        if prepare and self._table.n_weights:
            self._prepare_update()
        self.global_step = s + 1
        self._set_active()

    def _record(self, s: int) -> None:
        self._follow_device()
        self._capture.finish()
        tab = self._table
        if not self._ring.allocated:
            self._ring.allocate(len(tab), self._device)
        if self._ring.full:
            self._drain(force=1)
        data, present, has_update = self._measure(s, self._updates, self._capture.buf, self.grads)
        valid = tab.valid(self.weights, present if self.grads else False, bool(self.activations), has_update)
        if self._ring.push(s, data, valid):
            self._drain()

    def _drain(self, force: int = 0) -> None:
        """Emit the pending steps whose copy has landed; wait for the first ``force`` of them (all if -1)."""
        for step, data, valid in self._ring.drain(force):
            self._emit_step(step, data, valid)

    def flush(self) -> None:
        """Wait for every pending step and hand it to history, alerts and sinks (one host sync)."""
        if len(self._ring):
            self._drain(force=-1)
        self._call_sinks("flush")

    def _call_sinks(self, method: str, *args: Any) -> None:
        if self._emit:
            for s in self.sinks:
                call_safely(s, method, *args)

    def _emit_step(self, step: int, data: np.ndarray, valid: np.ndarray) -> None:
        self._history.append(step, data, valid)
        arrays = self._records.arrays(data, valid)
        events = self.alerts.check_columns(step, self._records.columns(arrays)) if self.alerts is not None else []
        if self._emit and self.sinks:  # the records themselves only for the sinks (history builds its own)
            _send(self.sinks, step, self._records.records(step, arrays), events)
        if self.alerts is not None:
            self.alerts.dispatch(events)

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every drained record, oldest first (built on access from the compact rows; ``history=`` bounds it)."""
        return self._history.records(self._records)

    @property
    def events(self) -> list[AlertEvent]:
        """Every alert raised so far."""
        return list(self.alerts.events) if self.alerts is not None else []

    def state_dict(self) -> dict[str, Any]:
        """History, step counter, pending update reference and alert windows (flushes pending steps first)."""
        self.flush()
        hist = self._history.state_dict(len(self._table))
        return {"version": 1, "global_step": self.global_step, "every": self.every, "update": self.update,
                "rows": self._table.keys(), "steps": hist["steps"], "data": hist["data"], "valid": hist["valid"],
                **self._updates.state_dict(), "alerts": None if self.alerts is None else self.alerts.state_dict(),
                "old_steps": hist["old_steps"]}  # old_steps: the records of the steps before a re-scan

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue a run: same rows required (same model and options); history and alerts are restored.

        A state saved with a subset of these rows (before the residual-stream rows existed) loads too: the
        rows it lacks read as not measured at its steps.
        """
        if state.get("version") != 1:
            raise ValueError(f"VarianceMonitor.load_state_dict: unknown state version {state.get('version')!r}")
        where = self._table.match_saved(list(state["rows"]))
        self._drain(force=-1)
        self.global_step = int(state["global_step"])
        self._history.load_state_dict(state, len(self._table), where)
        self._updates.load_state_dict(state, self._device)
        if self.alerts is not None and state.get("alerts") is not None:
            self.alerts.load_state_dict(state["alerts"])
        self._set_active()

    def close(self) -> None:
        """Flush pending steps, remove every hook and close the sinks. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._capture.active = False
        try:
            if self._ring.allocated:
                self.flush()
        finally:
            self._capture.remove()
            self._call_sinks("close")
            _release(self.model, self)

    def __enter__(self) -> VarianceMonitor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        n = {k: sum(r.kind == k for r in self.rows) for k in KINDS}
        return (f"VarianceMonitor(every={self.every}, step={self.global_step}, rows: {n['weight']} weights, "
                f"{n['act']} activations, update={self.update!r}, sinks={len(self.sinks)}, "
                f"{'closed' if self._closed else 'open'})")
