"""History: the compact rows of the drained steps, their records on demand, and their saved state.

A step is kept as ``(step, data [R, N_FIELDS] fp64, valid [R] bool)`` (72 bytes a row), at most ``history``
steps (None: all). When the model's parameters change, the rows are rebuilt: the steps kept so far become
records at once (:meth:`History.archive`) and stay in :attr:`History.records` next to the new ones.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from depthinit.kernels.contract import N_FIELDS, NEUTRAL_ROW

Formatter = Callable[[int, np.ndarray, np.ndarray], list[dict]]


class History:
    """The last ``max_steps`` drained steps (None: all) and the records of those before a re-scan."""

    def __init__(self, max_steps: int | None = 1000):
        if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
            raise ValueError(f"VarianceMonitor: history must be None or an int >= 1, got {max_steps!r}")
        self.max_steps = max_steps
        self._steps: deque = deque(maxlen=max_steps)  # (step, data, valid)
        self._old: deque = deque(maxlen=max_steps)  # (step, records) of the steps before a re-scan
        self._records: list[dict] = []  # max_steps None: the records built so far, of _steps[:_built]
        self._built = 0

    def __len__(self) -> int:
        return len(self._steps)

    def append(self, step: int, data: np.ndarray, valid: np.ndarray) -> None:
        self._steps.append((step, data, valid))

    def records(self, fmt: Formatter) -> list[dict[str, Any]]:
        """Every kept record, oldest first (built with ``fmt`` from the compact rows)."""
        old = [r for _, recs in self.old_steps() for r in recs]
        if self.max_steps is not None:
            return old + [r for s, d, v in self._steps for r in fmt(s, d, v)]
        for s, d, v in list(self._steps)[self._built:]:
            self._records.extend(fmt(s, d, v))
        self._built = len(self._steps)
        return old + self._records

    def old_steps(self) -> list[tuple[int, list[dict]]]:
        """``(step, records)`` of the steps drained before a re-scan that still fit in ``max_steps``."""
        old = list(self._old)
        if self.max_steps is not None:
            old = old[max(0, len(old) - max(0, self.max_steps - len(self._steps))):]
        return old

    def archive(self, fmt: Formatter) -> None:
        """The rows are about to change: turn the kept steps into records (with the old ``fmt``)."""
        for s, d, v in self._steps:
            self._old.append((s, fmt(s, d, v)))
        self._clear_steps()

    def _clear_steps(self) -> None:
        self._steps.clear()
        self._records, self._built = [], 0

    def state_dict(self, n_rows: int) -> dict[str, Any]:
        """``steps`` ``[S]`` int64, ``data`` ``[S, R, N_FIELDS]`` fp64, ``valid`` ``[S, R]`` bool, ``old_steps``."""
        hist = list(self._steps)
        data = np.stack([h[1] for h in hist]) if hist else np.zeros((0, n_rows, N_FIELDS), dtype=np.float64)
        valid = np.stack([h[2] for h in hist]) if hist else np.zeros((0, n_rows), dtype=bool)
        return {
            "steps": torch.tensor([h[0] for h in hist], dtype=torch.int64),
            "data": torch.from_numpy(data),
            "valid": torch.from_numpy(valid),
            "old_steps": [[s, [dict(r) for r in recs]] for s, recs in self.old_steps()],
        }

    def load_state_dict(self, state: Mapping[str, Any], n_rows: int, where: Sequence[int] | None = None) -> None:
        """Restore :meth:`state_dict`; ``where``: the row of each saved row when the state has fewer rows (the
        rows it lacks read as not measured)."""
        self._clear_steps()
        for s, d, v in zip(state["steps"].tolist(), state["data"].numpy(), state["valid"].numpy()):
            if where is not None:
                d_all, v_all = np.tile(np.array(NEUTRAL_ROW), (n_rows, 1)), np.zeros(n_rows, dtype=bool)
                d_all[where], v_all[where] = d, v
                d, v = d_all, v_all
            self._steps.append((int(s), d.copy(), v.copy()))
        self._old.clear()
        self._old.extend((int(s), [dict(r) for r in recs]) for s, recs in state.get("old_steps", []))
