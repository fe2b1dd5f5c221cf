"""Activation capture: forward hooks on the monitored modules, reduced into a device buffer of the step's rows.

Each hook takes the module's output (:func:`depthinit.outputs.first_floating`), cuts it into the site's pieces
(the last dimension), and queues the views; the queued views are reduced in one fused statistics launch when
the model's forward ends (``act_reduce="forward"``) or at once (``"module"``), and merged with Chan's formula
into the step's rows (every forward of the step counts; a row's first figures in a step are copied, not merged).
On a residual block a tensor hook also measures the gradient with respect to its output. Under
``torch.compile`` the hooks trace plain torch ops into the graph.
The hooks return at once unless :attr:`ActivationCapture.active`, and when :attr:`paused`.

The modules' hooks are on only while they can record: an eager forward on an unmonitored step goes without them
(a module with a hook takes the slow path of ``nn.Module.__call__``: ~0.3 ms a step on a 6-layer GPT-2). Two
hooks on the model itself stay: the one ending the forward and :meth:`ActivationCapture._forward_start`, which takes
the modules' hooks off at the first eager forward of an unmonitored stretch, unless the model or one of its modules
is compiled. Dynamo traces a module's hooks into its graph and never looks at them again
(``skip_nnmodule_hook_guards``): under ``torch.compile`` they stay on for good, and a graph traced while they
were off is traced again when they come back (a guard on :attr:`ActivationCapture.attached`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from depthinit.kernels.contract import N_FIELDS, NEUTRAL_ROW

from .. import stats as _stats
from ..distributed import is_dtensor
from ..outputs import first_floating
from .layout import Site
from .measure import Constants, measurable, traced_rows

ACT_REDUCE = ("forward", "module")


def any_compiled(model: nn.Module) -> bool:
    """Is ``model`` or one of its modules compiled (``Module.compile()``, a ``torch.compile`` wrapper inside)?"""
    return any(m.__dict__.get("_compiled_call_impl") is not None or "_orig_mod" in m._modules
               for m in model.modules())


class ActivationCapture:
    """The activation rows of the current step (``buf``, ``[n_rows, N_FIELDS]`` fp64) and the hooks filling it."""

    def __init__(self, model: nn.Module, act_reduce: str = "forward", train_only: bool = True, enabled: bool = True):
        if act_reduce not in ACT_REDUCE:
            raise ValueError(f"VarianceMonitor: act_reduce must be 'forward' or 'module', got {act_reduce!r}")
        self.model, self.act_reduce, self.train_only, self.enabled = model, act_reduce, train_only, enabled
        self.active = False  # record this step's forwards
        self.paused = False  # inside VarianceMonitor.paused()
        self.stream_grads_skipped = False  # a residual-stream gradient was not hooked (torch.compile)
        self._warned = False
        self._hooks: list[Any] = []  # on the model itself, from register() to remove()
        self._site_hooks: list[Any] = []  # on the sites' modules, while attached
        self.attached = False  # the sites' modules are hooked (a plain bool: dynamo guards on it)
        self.detach_pending = False  # take the sites' hooks off at the next eager forward
        self.compiled = False  # a hook ran under torch.compile, or a module is compiled: the hooks stay
        self.sites: list[Site] = []
        self._pending: list[tuple[int, Tensor]] = []  # (act row, output view) until the forward ends
        self._traced = False  # a compiled graph merged rows itself: every merge goes through Chan's formula

    def set_sites(self, sites: list[Site], n_rows: int, consts: Constants) -> None:
        """New rows (at creation and at a re-scan): fresh buffers on ``consts.device``; hooks not registered."""
        self.sites, self.n_rows, self.consts = sites, n_rows, consts
        self._site_modules: list[nn.Module] | None = None
        self.neutral = torch.tensor([NEUTRAL_ROW] * n_rows, dtype=torch.float64, device=consts.device).reshape(
            n_rows, N_FIELDS)
        self.buf = self.neutral.clone()
        self._fresh = np.ones(n_rows, dtype=bool)  # rows of ``buf`` that no figure reached in this step yet
        self._pending = []

    def to(self, consts: Constants) -> None:
        """The model moved: the buffers follow (``consts`` on the new device)."""
        self.consts = consts
        self.buf, self.neutral = self.buf.to(consts.device), self.neutral.to(consts.device)

    def register(self) -> None:
        """Hook the model and the sites' modules (nothing when not ``enabled``)."""
        if not (self.enabled and self.sites):
            return
        self._hooks.append(self.model.register_forward_pre_hook(self._forward_start))
        if self.act_reduce == "forward":  # after the whole forward: one fused launch for every output
            self._hooks.append(self.model.register_forward_hook(self._forward_done))
        self.attach()

    def attach(self) -> None:
        """Hook the sites' modules (first among their forward hooks: they see the module's own output)."""
        self.detach_pending = False
        if self.attached or not self._hooks:
            return
        if self._site_modules is None:  # resolved once per set of sites (a re-scan brings new ones)
            mods = dict(self.model.named_modules())
            self._site_modules = [mods[site.mname] for site in self.sites]
        self._site_hooks = [m.register_forward_hook(self._make_hook(i), prepend=True)
                            for i, m in enumerate(self._site_modules)]
        self.attached = True

    def detach(self) -> None:
        for h in self._site_hooks:
            h.remove()
        self._site_hooks, self.attached = [], False

    def remove(self) -> None:
        self.detach()
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def start_step(self, active: bool) -> None:
        """A new step: drop what is queued; when ``active``, its rows start empty and the sites are hooked;
        when not, their hooks come off at the next eager forward (unless compiled)."""
        self.active = active
        self._pending = []
        if active:
            self.buf.copy_(self.neutral)
            self._fresh[:] = True
        if active or self.compiled:
            self.attach()
        else:
            self.detach_pending = self.attached

    def _forward_start(self, module: nn.Module, args: Any) -> None:
        """The model's forward pre-hook: notice torch.compile, or take the idle sites' hooks off."""
        if torch.compiler.is_compiling():
            if not self.attached:  # traced without the sites' hooks: the guard on this retraces it with them
                self.detach_pending = False
            self.compiled = True
            return
        if self.detach_pending:
            self.detach_pending = False
            if any_compiled(self.model):
                self.compiled = True
            else:
                self.detach()

    @contextmanager
    def pausing(self) -> Iterator[None]:
        """Nothing is recorded inside this block."""
        prev, self.paused = self.paused, True
        try:
            yield
        finally:
            self.paused = prev

    def warn_skipped(self, stacklevel: int = 2) -> None:
        """Warn once that residual-stream gradients were not recorded (under ``torch.compile``)."""
        if self.stream_grads_skipped and not self._warned:
            self._warned = True
            warnings.warn("VarianceMonitor: gradients with respect to the residual stream are not recorded "
                          "under torch.compile (a tensor hook inside the compiled graph); block outputs, "
                          "weights and parameter gradients are. residual_stream=False silences this",
                          stacklevel=stacklevel + 1)

    def finish(self) -> None:
        """Reduce what is still queued (outputs of submodules called outside the model's forward)."""
        if self._pending:
            self.reduce()

    def _make_hook(self, i: int) -> Callable:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if self.active and not self.paused and (module.training or not self.train_only):
                self.observe(i, output)

        return hook

    def _forward_done(self, module: nn.Module, args: Any, output: Any) -> None:
        if self._pending:
            self.reduce()

    def observe(self, i: int, output: Any) -> None:
        """Queue (or, traced, merge) the statistics of site ``i``'s ``output``."""
        t = first_floating(output)
        if t is None:
            return
        site = self.sites[i]
        compiling = torch.compiler.is_compiling()
        if site.grad_row is not None and t.requires_grad:
            if compiling:  # a tensor hook on an intermediate would break the graph
                self.stream_grads_skipped = True
            else:
                t.register_hook(self._grad_hook(site.grad_row))
        x = measurable(t.detach())
        if type(x) is not Tensor and is_dtensor(x):
            x = x.to_local()  # activations are rank-local (data parallel)
        views = [x] if site.splits is None else [x if r is None else x.narrow(-1, r[0], r[1] - r[0])
                                                 for r in site.splits]
        if compiling:  # traced into the graph: plain torch ops that inductor fuses
            self._traced = True
            with torch.no_grad():
                a, b = site.row0, site.row0 + len(views)
                rows = traced_rows(views).to(self.buf.device)
                self.buf[a:b] = _stats.merge_stacked(torch.stack([self.buf[a:b], rows]))
            return
        self._pending.extend(zip(range(site.row0, site.row0 + len(views)), views))
        if self.act_reduce == "module":
            self.reduce()

    def _grad_hook(self, row: int) -> Callable[[Tensor], None]:
        def hook(g: Tensor) -> None:
            if self.active:
                self._pending.append((row, measurable(g.detach())))
                if self.act_reduce == "module":
                    self.reduce()

        return hook

    def reduce(self) -> None:
        """Statistics of the queued outputs in one launch, merged (Chan) into their rows of the step."""
        idx, views = zip(*self._pending)
        self._pending = []
        dev = self.consts.device
        with torch.no_grad():
            by_dev: dict[torch.device, list[int]] = {}
            for j, v in enumerate(views):
                by_dev.setdefault(v.device, []).append(j)
            if len(by_dev) == 1:
                new = _stats.tensor_stats(list(views)).to(dev)
            else:  # outputs on several devices (model parallel): one launch per device
                new = torch.empty((len(views), N_FIELDS), dtype=torch.float64, device=dev)
                for js in by_dev.values():
                    new[js] = _stats.tensor_stats([views[j] for j in js]).to(dev)
            self._merge_rows(idx, new)

    def _merge_rows(self, idx: tuple[int, ...], new: Tensor) -> None:
        """Merge ``new`` (one row per entry of ``idx``) into the step's rows. Rows that nothing reached yet in
        this step, each named once, take ``new`` as it is (exact, and no merge); the others go through Chan's
        formula. The bookkeeping is on the host: nothing waits for the device."""
        rows = list(idx)
        fresh = self._fresh[rows]
        self._fresh[rows] = False
        if not self._traced and fresh.all() and len(set(rows)) == len(rows):
            self.buf.index_copy_(0, self.consts.get(("rows", idx), lambda: list(idx), torch.long), new)
            return
        owner = self.consts.get(("owner", idx), lambda: list(range(self.n_rows)) + list(idx), torch.long)
        self.buf.copy_(_stats.merge_partials(torch.cat([self.buf, new]), owner, self.n_rows))
