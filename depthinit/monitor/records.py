"""Records: the drained rows of a step as plain dicts, one per measured row (the format of :mod:`depthinit.monitor`).

A stats row gives ``count, mean, var, std, rms, l2, min, max, absmax, nonfinite, zeros`` (``var`` the population
variance ``m2 / count``, ``rms = sqrt(sumsq / count)``, ``l2 = sqrt(sumsq)``); an update row gives the fields of
:func:`depthinit.monitor.updates.update_fields`. Every record starts with ``step`` and the row's ``kind``,
``name``, ``layer`` (plus ``qkv`` / ``head`` / ``stream`` where the row has them).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from depthinit.alerts import RowInfo, StepColumns
from depthinit.kernels.contract import ABSMAX, COUNT, M2, MAX, MEAN, MIN, NONFINITE, SUMSQ, ZEROS

from .layout import Row, RowTable
from .updates import UPDATE_FIELDS, update_fields

STAT_KEYS = ("mean", "var", "std", "rms", "l2", "min", "max", "absmax")


def row_base(row: Row) -> dict[str, Any]:
    """The constant part of a row's records."""
    base: dict[str, Any] = {"kind": row.kind, "name": row.name, "layer": row.layer}
    if row.qkv is not None:
        base["qkv"] = row.qkv
    if row.head is not None:
        base["head"] = row.head
    if row.stream:
        base["stream"] = True
    return base


class StepArrays(NamedTuple):
    """One drained step's figures, computed once for the records and the alerts."""

    stats: np.ndarray  # [R, len(STAT_KEYS)] float
    ints: np.ndarray  # [R, 3] int64: count, nonfinite, zeros
    upd: np.ndarray | None  # [n_update_rows, len(UPDATE_FIELDS[mode])], None when no update row is valid
    keep: np.ndarray  # [R] bool: the rows that make a record


class RecordFormatter:
    """Records of one :class:`RowTable` (with ``update`` mode ``"exact"``, ``"norm"`` or None)."""

    def __init__(self, table: RowTable, update: str | None):
        self.table, self.update = table, update
        self._bases: list[dict] | None = None
        self._info: RowInfo | None = None

    def arrays(self, data: np.ndarray, valid: np.ndarray) -> StepArrays:
        """The figures of ``data`` (``[R, N_FIELDS]``), column-wise; activation rows that no forward reached
        (count and non-finite count 0) make no record."""
        acts, u = self.table.acts, self.table.updates
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            cnt = data[:, COUNT]
            var = data[:, M2] / cnt
            cols = np.stack([data[:, MEAN], var, np.sqrt(var), np.sqrt(data[:, SUMSQ] / cnt), np.sqrt(data[:, SUMSQ]),
                             data[:, MIN], data[:, MAX], data[:, ABSMAX]], 1)
            ints = np.nan_to_num(data[:, [COUNT, NONFINITE, ZEROS]]).astype(np.int64)
        upd = update_fields(self.update, data[u], data[self.table.weights]) if valid[u].any() else None
        keep = valid.copy()
        keep[acts] &= (ints[acts, 0] > 0) | (ints[acts, 1] > 0)  # a forward reached the row
        if upd is None:
            keep[u] = False
        return StepArrays(cols, ints, upd, keep)

    def __call__(self, step: int, data: np.ndarray, valid: np.ndarray) -> list[dict[str, Any]]:
        """One dict per row that makes a record (:meth:`arrays`)."""
        return self.records(step, self.arrays(data, valid))

    def records(self, step: int, a: StepArrays) -> list[dict[str, Any]]:
        """The records of a step's :meth:`arrays`."""
        if self._bases is None:
            self._bases = [row_base(row) for row in self.table.rows]
        u = self.table.updates
        idx = np.flatnonzero(a.keep[: u.start]).tolist()
        cols, ints, bases = a.stats.tolist(), a.ints.tolist(), self._bases
        out = []
        for i in idx:  # the keys of STAT_KEYS written out: a third faster than zip (hundreds of rows a step)
            c, nf, z = ints[i]
            mean, var, std, rms, l2, mn, mx, absmax = cols[i]
            out.append({"step": step, **bases[i], "count": c, "mean": mean, "var": var, "std": std, "rms": rms,
                        "l2": l2, "min": mn, "max": mx, "absmax": absmax, "nonfinite": nf, "zeros": z})
        if a.upd is not None:
            names, upd = UPDATE_FIELDS[self.update], a.upd.tolist()
            for i in np.flatnonzero(a.keep[u]).tolist():
                out.append({"step": step, **bases[u.start + i], **dict(zip(names, upd[i]))})
        return out

    def columns(self, a: StepArrays) -> StepColumns:
        """The records of a step's :meth:`arrays` column by column (for :meth:`Alerts.check_columns`), in the
        order of :meth:`records`, without building them."""
        if self._info is None:
            rows = self.table.rows
            self._info = RowInfo.of([r.kind for r in rows], [r.name for r in rows], [r.layer for r in rows],
                                    [r.head is not None for r in rows], [r.stream for r in rows])  # fmt: skip
        u = self.table.updates
        idx = np.flatnonzero(a.keep)
        stat = idx < u.start
        values = {k: a.stats[idx, j] for j, k in enumerate(STAT_KEYS)}
        values |= {k: a.ints[idx, j].astype(float) for j, k in enumerate(("count", "nonfinite", "zeros"))}
        has = dict.fromkeys(values, stat)
        if a.upd is not None and self.update is not None:
            rows = idx[~stat] - u.start
            for j, k in enumerate(UPDATE_FIELDS[self.update]):
                values[k] = np.full(len(idx), np.nan)
                values[k][~stat] = a.upd[rows, j]
                has[k] = ~stat
        return StepColumns(self._info, idx, values, has)
