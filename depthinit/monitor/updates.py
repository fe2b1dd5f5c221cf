"""Update tracking: how much each monitored weight moved between two consecutive optimizer steps.

On the step before a monitored step :meth:`UpdateTracker.prepare` keeps the reference; on the monitored step
the update rows are measured against it:

* ``update="exact"``: a copy of the weights (in their own dtype); the update row is the statistics row of
  ``Δw = w_t − w_{t−1}`` (measured in the same launch as the weights), and the record fields are
  ``delta_l2 = ‖Δw‖`` and ``update_ratio = ‖Δw‖ / ‖w_t‖``;
* ``update="norm"``: the squared norms ``‖w_{t−1}‖²`` (the sums of squares of one statistics launch over the
  weights); the update row holds the element count, ``‖w_t‖²`` (the sums of squares of the step's own weight
  statistics, measured anyway: the same kernel and summation order, so unchanged weights give exactly 0) and
  ``‖w_{t−1}‖²`` in the named columns below, and the record field is
  ``norm_change_ratio = |‖w_t‖ − ‖w_{t−1}‖| / ‖w_t‖`` (a lower bound of the update ratio).

Why not from the weight statistics of two monitored steps: ``‖Δw‖`` is not a function of ``‖w_t‖`` and
``‖w_{t-1}‖``; a bf16 snapshot would not do either (its rounding, ~2**-9 ‖w‖, is as large as a typical update,
~1e-3 ‖w‖).

Update rows live in the monitor's fp64 ``[R, N_FIELDS]`` block (the device ring, the saved state) with the
columns named here; :func:`update_fields` reads them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from depthinit import stats as _stats
from depthinit.kernels.contract import COUNT, M2, N_FIELDS, SUMSQ

UPDATE_MODES = ("norm", "exact", None)
# update="exact": the row is the statistics of Δw; its sum of squares is ‖Δw‖²
DELTA_SQ = SUMSQ
# update="norm": the element count, ‖w_t‖² (from the step's weight rows) and ‖w_{t-1}‖² (the same statistics on the
# step before), both fp64 sums; other columns 0
NUMEL, NORM_SQ, PREV_NORM_SQ = COUNT, M2, SUMSQ
UPDATE_FIELDS = {"exact": ("delta_l2", "update_ratio"), "norm": ("norm_change_ratio",)}


def update_fields(mode: str, update_rows: np.ndarray, weight_rows: np.ndarray) -> np.ndarray:
    """``[n, len(UPDATE_FIELDS[mode])]`` record fields of update rows (NaN where not finite).

    ``weight_rows``: the weight rows of the same step (``‖w_t‖`` of ``update="exact"``).
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if mode == "exact":
            delta = np.sqrt(update_rows[:, DELTA_SQ])
            out = np.stack([delta, delta / np.sqrt(weight_rows[:, SUMSQ])], 1)
        else:
            cur = np.sqrt(np.maximum(update_rows[:, NORM_SQ], 0.0))
            out = (np.abs(cur - np.sqrt(update_rows[:, PREV_NORM_SQ])) / cur)[:, None]
    return np.where(np.isfinite(out), out, np.nan)


def squared_norms(views: list[Tensor], device: torch.device) -> Tensor:
    """``[n]`` fp64 squared L2 norms: the sums of squares of one statistics launch over ``views`` (what the
    weight rows of a monitored step hold, so that the two norms of an update row are summed the same way)."""
    if not views:
        return torch.zeros(0, dtype=torch.float64, device=device)
    return _stats.tensor_stats(views)[:, SUMSQ].to(device)


class UpdateTracker:
    """The reference of the update rows (``mode`` ``"exact"``, ``"norm"`` or None) between two steps."""

    def __init__(self, mode: str | None):
        if mode not in UPDATE_MODES:
            raise ValueError(f"VarianceMonitor: update must be one of {UPDATE_MODES}, got {mode!r}")
        self.mode = mode
        self.reset()

    def reset(self) -> None:
        self.prev_sq: Tensor | None = None  # update="norm": ‖w_{t-1}‖² of each weight row
        self.snap: list[Tensor] | None = None  # update="exact": the weights of step t-1
        self.prev_step = -1

    def due(self, step: int, every: int) -> bool:
        """Is ``step`` the one before a monitored step (the reference is taken after it)?"""
        return self.mode is not None and (step + 1) % every == 0

    @torch.no_grad()
    def prepare(self, step: int, views: list[Tensor], device: torch.device) -> None:
        """Keep the reference of the weight ``views`` after optimizer step ``step``."""
        if self.mode == "exact":
            self.snap = [v.clone() for v in views]
        else:
            self.prev_sq = squared_norms(views, device)
        self.prev_step = step

    def ready(self, step: int) -> bool:
        """A reference from the step just before ``step`` is there: the update rows can be measured."""
        return self.prev_step == step - 1 and (self.snap is not None or self.prev_sq is not None)

    def deltas(self, views: list[Tensor]) -> list[Tensor]:
        """``update="exact"``: ``w_t − w_{t−1}`` of each view, in place of the copy (to measure with the weights)."""
        if self.mode != "exact" or self.snap is None:
            return []
        for v, snap in zip(views, self.snap):
            torch.sub(v, snap, out=snap)
        return self.snap

    def norm_rows(self, views: list[Tensor], numel: Tensor, current_sq: Tensor | None = None) -> Tensor | None:
        """``update="norm"``: ``[n, N_FIELDS]`` update rows (:data:`NUMEL`, :data:`NORM_SQ`, :data:`PREV_NORM_SQ`)
        on ``numel``'s device; ``numel``: the fp64 element count of each view. ``current_sq``: ``‖w_t‖²`` of each
        view when already measured (the sums of squares of the step's weight rows: no second pass over the
        weights); else one statistics pass."""
        if self.mode != "norm" or self.prev_sq is None:
            return None
        u = torch.zeros((len(views), N_FIELDS), dtype=torch.float64, device=numel.device)
        cur = squared_norms(views, numel.device) if current_sq is None else current_sq.to(numel.device)
        u[:, NUMEL], u[:, NORM_SQ], u[:, PREV_NORM_SQ] = numel, cur, self.prev_sq
        return u

    def clear(self) -> None:
        """Drop the reference (used up by a monitored step)."""
        self.snap, self.prev_sq = None, None

    def to(self, device: torch.device) -> None:
        self.prev_sq = None if self.prev_sq is None else self.prev_sq.to(device)
        self.snap = None if self.snap is None else [t.to(device) for t in self.snap]

    def state_dict(self) -> dict[str, Any]:
        return {
            "prev_sq": None if self.prev_sq is None else self.prev_sq.cpu(),
            # update="exact" between the step before a monitored step and that step: the weights of step t-1
            # copies: the next monitored step turns the snapshot into w_t - w_{t-1} in place
            "snapshot": None if self.snap is None else [t.detach().to("cpu", copy=True) for t in self.snap],
            "prev_step": self.prev_step,
        }

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device) -> None:
        prev = state.get("prev_sq")
        self.prev_sq = None if prev is None else prev.to(device)
        snap = state.get("snapshot")
        self.snap = None if snap is None else [t.to(device, copy=True) for t in snap]  # never the caller's
        self.prev_step = int(state.get("prev_step", -1))
