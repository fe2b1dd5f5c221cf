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

The package's units, each with one job: :mod:`.layout` (the rows), :mod:`.capture` (activation hooks),
:mod:`.updates` (the update reference and fields), :mod:`.measure` (one step's statistics), :mod:`.ring`
(the device ring and its drain), :mod:`.records` (rows to dicts), :mod:`.history` (kept steps and their
state) and :mod:`.core` (the :class:`VarianceMonitor` wiring them).

>>> mon = VarianceMonitor(model, every=50, sinks=[depthinit.sinks.JSONL("run.jsonl")])
>>> for batch in data: loss(model(batch)).backward(); opt.step(); mon.step(); opt.zero_grad()
"""

from __future__ import annotations

from depthinit.kernels.contract import ABSMAX, COUNT, M2, MAX, MEAN, MIN, N_FIELDS, NONFINITE, SUMSQ, ZEROS
from depthinit.kernels.contract import STAT_FIELDS as FIELDS

from .core import VarianceMonitor
from .layout import DEFAULT_QKV, KINDS, Row, short_name
from .updates import UPDATE_FIELDS, UPDATE_MODES

__all__ = [
    "VarianceMonitor", "Row", "short_name", "KINDS", "UPDATE_MODES", "UPDATE_FIELDS", "DEFAULT_QKV",
    "FIELDS", "N_FIELDS", "COUNT", "MEAN", "M2", "SUMSQ", "MIN", "MAX", "ABSMAX", "NONFINITE", "ZEROS",
]  # fmt: skip
