"""Alerts on the per-layer statistics a :class:`~depthinit.monitor.VarianceMonitor` drains.

Four detectors, each producing :class:`AlertEvent` records (sent to the monitor's sinks and to an optional
callback, e.g. to stop training or save a checkpoint):

* **non-finite**: a row (``kind`` weight/grad/act/update, one layer) holds NaN/Inf elements
  (``nonfinite > 0``) or a statistic that is itself non-finite; fired the first step it is seen.
* **vanishing / exploding, per layer**: the per-layer ``std`` leaves a configurable band
  ``std_band[kind] = (low, high)`` (``None`` disables a side).
* **vanishing / exploding, across depth**: how the variance changes along the direction the signal
  travels: activations from layer 1 to layer L (forward), gradients from layer L to layer 1 (backward,
  toward the input). The ratio ``exp(mean_rows(log var) at the end - mean_rows(log var) at the start)``
  (geometric mean over the rows of each layer, biases and per-head rows left out) above ``depth_ratio`` is
  exploding, below ``1 / depth_ratio`` vanishing: a gradient that shrinks toward the input is vanishing.
  On a residual network (records with ``"stream": True``, see
  :class:`~depthinit.monitor.VarianceMonitor`'s ``residual_stream``) only the residual-stream rows count:
  the block outputs and the gradient with respect to them; per-layer rows otherwise (plain stacks).
* **spikes**: a statistic above ``mean + k·σ`` of its own last ``window`` values (``σ`` floored at
  ``rel_floor·|mean|`` so that a flat history does not turn noise into spikes); watched by default: the
  gradient ``l2`` of every layer and of the whole model (row ``<total>``), and the activation ``std``.

An alert condition fires once when it starts and again only after it has cleared. The sliding windows
and the set of active conditions are part of :meth:`Alerts.state_dict`, so a resumed run continues them.

>>> alerts = Alerts(std_band={"act": (1e-4, 1e3)}, callback=lambda ev: print(ev.message))
>>> mon = VarianceMonitor(model, alerts=alerts)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .roles import is_bias_name

TOTAL = "<total>"

DEFAULT_STD_BAND: dict[str, tuple[float | None, float | None]] = {
    "act": (1e-6, 1e4),
    "grad": (None, 1e4),
    "weight": (None, 1e4),
}
DEFAULT_SPIKE_STATS: tuple[tuple[str, str], ...] = (("grad", "l2"), ("act", "std"))


@dataclass
class AlertEvent:
    """One alert.

    Args:
        step: optimizer step of the statistics that triggered it.
        kind: ``"nonfinite"``, ``"vanishing"``, ``"exploding"`` or ``"spike"``.
        layer: row name (``"h.3.attn.q"``), ``"<total>"`` or ``"depth"`` for the depth-ratio check.
        statistic: the statistic tested (``"nonfinite"``, ``"std"``, ``"var_ratio"``, ``"l2"``...).
        value: its value.
        threshold: the bound it crossed.
        message: one readable line.
        source: what the row measures: ``"weight"``, ``"grad"``, ``"act"`` or ``"update"``.
    """

    step: int
    kind: str
    layer: str
    statistic: str
    value: float
    threshold: float
    message: str
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RowInfo:
    """What the detectors read of each row besides its values: constant while the rows are (a monitor builds
    it once per layout)."""

    kind: np.ndarray  # str objects [n]
    name: list[str]
    layer: np.ndarray  # float [n], NaN where a row has no layer
    head: np.ndarray  # bool [n]: a per-head row
    stream: np.ndarray  # bool [n]: a residual-stream row
    bias: np.ndarray  # bool [n]: a bias, by its name

    @classmethod
    def of(cls, kinds: Sequence[str], names: Sequence[str], layers: Sequence[int | None],
           heads: Sequence[bool], streams: Sequence[bool]) -> RowInfo:  # fmt: skip
        return cls(np.array(kinds, dtype=object), list(names),
                   np.array([math.nan if x is None else float(x) for x in layers], dtype=float),
                   np.array(heads, dtype=bool), np.array(streams, dtype=bool),
                   np.array([is_bias_name(n) for n in names], dtype=bool))  # fmt: skip


@dataclass
class StepColumns:
    """The records of one step column by column: rows ``idx`` of ``info``; per field, its values (NaN where a
    record lacks it) and where it is present."""

    info: RowInfo
    idx: np.ndarray  # int [n]
    values: dict[str, np.ndarray]
    has: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.idx)

    def name(self, i: int) -> str:
        return self.info.name[int(self.idx[i])]

    def get(self, field: str, default: float) -> np.ndarray:
        """``field`` of every record, ``default`` where a record lacks it."""
        v = self.values.get(field)
        if v is None:
            return np.full(len(self.idx), default)
        return v if self.has[field].all() else np.where(self.has[field], v, default)

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]], fields: Iterable[str]) -> StepColumns:
        """The columns ``fields`` of ``records`` (dicts of the monitor's format; None counts as absent)."""
        info = RowInfo.of([r["kind"] for r in records], [r["name"] for r in records],
                          [r.get("layer") for r in records], [r.get("head") is not None for r in records],
                          [bool(r.get("stream")) for r in records])  # fmt: skip
        values, has = {}, {}
        for f in fields:
            raw = [r.get(f) for r in records]
            has[f] = np.array([x is not None for x in raw], dtype=bool)
            values[f] = np.array([math.nan if x is None else float(x) for x in raw], dtype=float)
        return cls(info, np.arange(len(records)), values, has)


@dataclass
class _SpikePlan:
    """The watched values of one set of rows: value ``stats[sid[j]]`` of row ``pos[j]`` goes to window
    ``keys[j]``; ``total_of[j]`` the whole-model l2 it adds to (-1: none), whose windows are ``total_keys``."""

    info: RowInfo
    idx: np.ndarray
    stats: list[str]
    pos: np.ndarray
    sid: np.ndarray
    keys: np.ndarray
    total_of: np.ndarray
    total_keys: list[int]


class Alerts:
    """Detectors for non-finite values, vanishing/exploding layers and spikes (see the module docstring).

    Args:
        std_band: ``{kind: (low, high)}`` bounds of the per-layer ``std``; merged over the defaults
            ``act (1e-6, 1e4)``, ``grad (-, 1e4)``, ``weight (-, 1e4)``. ``{kind: None}`` disables a kind.
        depth_ratio: threshold of the last-to-first layer variance ratio (and of its inverse); ``None``
            disables the check.
        depth_kinds: kinds the depth ratio is checked on.
        spike_k: ``k`` of ``mean + k·σ``.
        spike_window: number of past values the mean and σ are taken over.
        spike_min_history: values needed before a spike can fire.
        spike_stats: ``(kind, statistic)`` pairs watched for spikes.
        rel_floor: σ is at least ``rel_floor·|mean|``.
        nonfinite: check non-finite values.
        callback: called with each :class:`AlertEvent` (it may raise to stop training).

    Example::

        alerts = Alerts(depth_ratio=1e3, callback=lambda ev: ev.kind == "nonfinite" and save_checkpoint())
    """

    def __init__(
        self,
        std_band: Mapping[str, tuple[float | None, float | None] | None] | None = None,
        depth_ratio: float | None = 1e4,
        depth_kinds: Iterable[str] = ("act", "grad"),
        spike_k: float = 6.0,
        spike_window: int = 50,
        spike_min_history: int = 10,
        spike_stats: Iterable[tuple[str, str]] = DEFAULT_SPIKE_STATS,
        rel_floor: float = 0.05,
        nonfinite: bool = True,
        callback: Callable[[AlertEvent], Any] | None = None,
    ) -> None:
        band: dict[str, tuple[float | None, float | None]] = dict(DEFAULT_STD_BAND)
        for k, v in (std_band or {}).items():
            if v is None:
                band.pop(k, None)
                continue
            if len(v) != 2:
                raise ValueError(f"std_band[{k!r}] must be a (low, high) pair, got {v!r}")
            lo, hi = v
            if lo is not None and hi is not None and not lo < hi:
                raise ValueError(f"std_band[{k!r}]: low {lo} must be below high {hi}")
            band[k] = (lo, hi)
        if depth_ratio is not None and not depth_ratio > 1:
            raise ValueError(f"depth_ratio must be > 1 (a variance ratio and its inverse), got {depth_ratio}")
        if spike_window < 2 or spike_min_history < 2 or spike_min_history > spike_window:
            raise ValueError(
                f"need 2 <= spike_min_history <= spike_window, got {spike_min_history} and {spike_window}"
            )
        if not spike_k > 0:
            raise ValueError(f"spike_k must be > 0, got {spike_k}")
        self.std_band = band
        self.depth_ratio = depth_ratio
        self.depth_kinds = tuple(depth_kinds)
        self.spike_k = float(spike_k)
        self.spike_window = int(spike_window)
        self.spike_min_history = int(spike_min_history)
        self.spike_stats = tuple((str(k), str(s)) for k, s in spike_stats)
        self.rel_floor = float(rel_floor)
        self.nonfinite = nonfinite
        self.callback = callback
        self.events: list[AlertEvent] = []
        self._keys: dict[tuple[str, str, str], int] = {}  # (kind, name, stat) -> row of the window table
        self._key_list: list[tuple[str, str, str]] = []  # the keys in the order of their rows
        self._plan: _SpikePlan | None = None  # the watched values of the last step's rows
        self._buf = np.full((0, self.spike_window), np.nan)  # ring of the last values of each key
        self._n = np.zeros(0, dtype=np.int64)  # values seen per key
        self._active: set[tuple[str, str, str, str]] = set()

    # -- checking ------------------------------------------------------------------------------------------

    def check(self, step: int, records: list[dict[str, Any]]) -> list[AlertEvent]:
        """Events raised by the records of one monitored step (the callback is not called here)."""
        return self.check_columns(step, StepColumns.from_records(records, self._fields()))

    def check_columns(self, step: int, cols: StepColumns) -> list[AlertEvent]:
        """:meth:`check` on a step's records given column by column (what a monitor has without building the
        dicts). The tests run on NumPy columns, so a step of a few thousand rows costs well under a
        millisecond; events are built for the rows that fire only."""
        seen: set[tuple[str, str, str, str]] = set()
        events: list[AlertEvent] = []

        def fire(key: tuple[str, str, str, str], ev: AlertEvent) -> None:
            seen.add(key)
            if key not in self._active:
                events.append(ev)

        if len(cols):
            kinds = cols.info.kind[cols.idx]
            count = cols.get("count", 1.0)
            if self.nonfinite:
                self._check_nonfinite(step, cols, kinds, count, fire)
            self._check_band(step, cols, kinds, count, fire)
            if self.depth_ratio is not None:
                for kind in self.depth_kinds:
                    self._check_depth(step, kind, cols, kinds, fire)
            self._check_spikes(step, cols, fire)
        self._active = seen  # conditions that still hold; the others may fire again
        self.events.extend(events)
        return events

    # (an update ratio is NaN for an all-zero weight, 0/0: no alarm; a non-finite weight raises its own)
    _FINITE_STATS = ("std", "l2", "absmax")

    def _fields(self) -> tuple[str, ...]:
        """The record fields the detectors read."""
        spikes = tuple(stat for _, stat in self.spike_stats)
        return tuple(dict.fromkeys(("count", "nonfinite", "std", "var", *self._FINITE_STATS, *spikes)))

    def _check_nonfinite(self, step: int, cols: StepColumns, kinds: np.ndarray, count: np.ndarray, fire) -> None:
        bad = cols.get("nonfinite", 0.0)
        # one sum per record: non-finite iff one of the statistics is (absent ones count as 0)
        total = sum(cols.get(k, 0.0) for k in self._FINITE_STATS)
        for i in np.flatnonzero((bad > 0) | (~np.isfinite(total) & (count != 0))).tolist():
            kind, name = str(kinds[i]), cols.name(i)
            if bad[i] > 0:
                fire((kind, name, "nonfinite", "nonfinite"), AlertEvent(
                    step, "nonfinite", name, "nonfinite", float(bad[i]), 0.0,
                    f"step {step}: {kind} {name} has {int(bad[i])} non-finite elements (first seen at this step)",
                    kind))
                continue
            stat = next(k for k in self._FINITE_STATS if k in cols.has and cols.has[k][i]
                        and not math.isfinite(cols.values[k][i]))
            v = float(cols.values[stat][i])
            fire((kind, name, "nonfinite", stat), AlertEvent(
                step, "nonfinite", name, stat, v, 0.0,
                f"step {step}: {kind} {name} {stat} is {v} (first seen at this step)", kind))

    def _check_band(self, step: int, cols: StepColumns, kinds: np.ndarray, count: np.ndarray, fire) -> None:
        std = cols.get("std", math.nan)
        ok = np.isfinite(std) & (count > 0)
        for kind, (lo, hi) in self.std_band.items():
            rows = ok & (kinds == kind)
            low = rows & (std < lo) if lo is not None else np.zeros_like(rows)
            high = rows & (std > hi) if hi is not None else np.zeros_like(rows)
            for i in np.flatnonzero(low | high).tolist():
                name, v = cols.name(i), float(std[i])
                if low[i]:
                    fire((kind, name, "vanishing", "std"), AlertEvent(
                        step, "vanishing", name, "std", v, lo,
                        f"step {step}: {kind} {name} std {v:.3g} below {lo:.3g} (vanishing)", kind))
                else:
                    fire((kind, name, "exploding", "std"), AlertEvent(
                        step, "exploding", name, "std", v, hi,
                        f"step {step}: {kind} {name} std {v:.3g} above {hi:.3g} (exploding)", kind))

    def _check_depth(self, step: int, kind: str, cols: StepColumns, kinds: np.ndarray, fire) -> None:
        info, idx = cols.info, cols.idx
        layer = info.layer[idx]
        rows = (kinds == kind) & ~np.isnan(layer) & ~info.head[idx] & ~info.bias[idx]
        stream = rows & info.stream[idx]
        rows = stream if stream.any() else rows  # a residual network: the residual stream, not the branches' layers
        var = cols.get("var", math.nan)[rows]
        keep = np.isfinite(var) & (var > 0)
        if not keep.any():
            return
        layers = layer[rows][keep].astype(np.int64)
        logv = np.log(var[keep])
        first, last = int(layers.min()), int(layers.max())
        if first == last:
            return
        start, end = (last, first) if kind == "grad" else (first, last)  # gradients travel toward the input
        ratio = math.exp(float(logv[layers == end].mean() - logv[layers == start].mean()))
        t = self.depth_ratio
        what = f"{kind} variance" + (" (residual stream)" if stream.any() else "")
        way = f"from layer {start} to layer {end}" + (" (toward the input)" if kind == "grad" else "")
        if ratio > t:
            fire((kind, "depth", "exploding", "var_ratio"), AlertEvent(
                step, "exploding", "depth", "var_ratio", ratio, t,
                f"step {step}: {what} grows {ratio:.3g}x {way}: exploding (threshold {t:.3g}x)", kind))
        elif ratio < 1 / t:
            fire((kind, "depth", "vanishing", "var_ratio"), AlertEvent(
                step, "vanishing", "depth", "var_ratio", ratio, 1 / t,
                f"step {step}: {what} shrinks to {ratio:.3g}x {way}: vanishing (threshold {1 / t:.3g}x)", kind))

    def _key_index(self, key: tuple[str, str, str]) -> int:
        i = self._keys.get(key)
        if i is None:
            i = self._keys[key] = len(self._keys)
            self._key_list.append(key)
            if i == self._buf.shape[0]:  # grow the window table
                grow = max(16, i)
                self._buf = np.concatenate([self._buf, np.full((grow, self.spike_window), np.nan)])
                self._n = np.concatenate([self._n, np.zeros(grow, dtype=np.int64)])
        return i

    def _spike_plan(self, cols: StepColumns) -> _SpikePlan:
        """The watched values of rows like ``cols``' (kept while the rows are the same)."""
        plan = self._plan
        if plan is not None and plan.info is cols.info and np.array_equal(plan.idx, cols.idx):
            return plan
        watched: dict[str, list[str]] = {}
        for kind, stat in self.spike_stats:
            watched.setdefault(kind, []).append(stat)
        stats = list(dict.fromkeys(stat for _, stat in self.spike_stats))
        info = cols.info
        pos, sid, keys, total_of = [], [], [], []
        totals: dict[tuple[str, str], int] = {}
        for i, r in enumerate(cols.idx.tolist()):  # row by row, as the records come
            kind = str(info.kind[r])
            if info.head[r] or kind not in watched:
                continue
            for stat in watched[kind]:
                pos.append(i)
                sid.append(stats.index(stat))
                keys.append(self._key_index((kind, info.name[r], stat)))
                total_of.append(totals.setdefault((kind, stat), len(totals)) if stat == "l2" else -1)
        total_keys = [self._key_index((kind, TOTAL, stat)) for kind, stat in totals]
        self._plan = _SpikePlan(info, cols.idx.copy(), stats, np.array(pos, dtype=np.int64),
                                np.array(sid, dtype=np.int64), np.array(keys, dtype=np.int64),
                                np.array(total_of, dtype=np.int64), total_keys)
        return self._plan

    def _check_spikes(self, step: int, cols: StepColumns, fire) -> None:
        """Each watched value against the mean + k·σ of its own last values (vectorized over the rows)."""
        if not self.spike_stats:
            return
        plan = self._spike_plan(cols)
        if not plan.pos.size:
            return
        values = np.stack([cols.get(s, math.nan) for s in plan.stats])[plan.sid, plan.pos]
        ok = np.isfinite(values)
        idx, v = [plan.keys[ok]], [values[ok]]
        for t, key in enumerate(plan.total_keys):  # the whole model's l2 of a kind: sqrt of the sum of squares
            sel = ok & (plan.total_of == t)
            if sel.any():
                sq = 0.0
                for x in values[sel].tolist():  # in row order
                    sq += x * x
                idx.append(np.array([key]))
                v.append(np.array([math.sqrt(sq)]))
        idx, v = np.concatenate(idx), np.concatenate(v)
        if not idx.size:
            return
        win = self._buf[idx]
        n = np.minimum(self._n[idx], self.spike_window)
        ready = n >= self.spike_min_history
        if ready.any():
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.nansum(win, 1) / n
                sd = np.sqrt(np.nansum((win - mean[:, None]) ** 2, 1) / (n - 1))
            sd = np.maximum(sd, self.rel_floor * np.abs(mean))
            thr = mean + self.spike_k * sd
            for j in np.flatnonzero(ready & (sd > 0) & (v > thr)).tolist():
                kind, name, stat = self._key_list[int(idx[j])]
                val = float(v[j])
                fire((kind, name, "spike", stat), AlertEvent(
                    step, "spike", name, stat, val, float(thr[j]),
                    f"step {step}: {kind} {name} {stat} {val:.3g} above {thr[j]:.3g} "
                    f"(mean {mean[j]:.3g} + {self.spike_k:g} sigma over the last {n[j]} values)", kind))
        self._buf[idx, self._n[idx] % self.spike_window] = v
        self._n[idx] += 1

    def dispatch(self, events: list[AlertEvent]) -> None:
        """Call the callback with each event."""
        if self.callback is not None:
            for ev in events:
                self.callback(ev)

    # -- state -----------------------------------------------------------------------------------------------

    def _window(self, i: int) -> list[float]:
        """The last values of key ``i``, oldest first."""
        n, w = int(self._n[i]), self.spike_window
        row = self._buf[i]
        return row[:n].tolist() if n <= w else np.roll(row, -(n % w)).tolist()

    def state_dict(self) -> dict[str, Any]:
        """Windows, active conditions and past events: plain Python data (picklable, JSON-able)."""
        return {
            "windows": [[list(k), self._window(i)] for k, i in self._keys.items() if self._n[i]],
            "active": sorted(list(k) for k in self._active),
            "events": [e.to_dict() for e in self.events],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._keys, self._buf, self._n = {}, np.full((0, self.spike_window), np.nan), np.zeros(0, dtype=np.int64)
        self._key_list, self._plan = [], None
        for k, w in state.get("windows", []):
            w = [float(x) for x in w][-self.spike_window:]
            i = self._key_index(tuple(k))
            self._buf[i, : len(w)] = w
            self._n[i] = len(w)
        self._active = {tuple(k) for k in state.get("active", [])}
        self.events = [AlertEvent(**e) for e in state.get("events", [])]
