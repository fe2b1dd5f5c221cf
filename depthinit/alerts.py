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
from collections.abc import Callable, Iterable, Mapping
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
        self._buf = np.full((0, self.spike_window), np.nan)  # ring of the last values of each key
        self._n = np.zeros(0, dtype=np.int64)  # values seen per key
        self._active: set[tuple[str, str, str, str]] = set()

    # -- checking ------------------------------------------------------------------------------------------

    def check(self, step: int, records: list[dict[str, Any]]) -> list[AlertEvent]:
        """Events raised by the records of one monitored step (the callback is not called here).

        The tests run column-wise over the records (NumPy), so a step of a few thousand rows costs about
        a millisecond; events are built for the rows that fire only.
        """
        seen: set[tuple[str, str, str, str]] = set()
        events: list[AlertEvent] = []

        def fire(key: tuple[str, str, str, str], ev: AlertEvent) -> None:
            seen.add(key)
            if key not in self._active:
                events.append(ev)

        if records:
            kinds = np.array([r["kind"] for r in records], dtype=object)
            count = np.array([r.get("count", 1) for r in records], dtype=float)
            if self.nonfinite:
                self._check_nonfinite(step, records, count, fire)
            self._check_band(step, records, kinds, count, fire)
            if self.depth_ratio is not None:
                for kind in self.depth_kinds:
                    self._check_depth(step, kind, records, kinds, fire)
            self._check_spikes(step, records, fire)
        self._active = seen  # conditions that still hold; the others may fire again
        self.events.extend(events)
        return events

    # (an update ratio is NaN for an all-zero weight, 0/0: no alarm; a non-finite weight raises its own)
    _FINITE_STATS = ("std", "l2", "absmax")

    def _check_nonfinite(self, step: int, records: list[dict], count: np.ndarray, fire) -> None:
        bad = np.array([r.get("nonfinite") or 0 for r in records], dtype=float)
        # one sum per record: non-finite iff one of the statistics is (absent ones count as 0)
        total = np.zeros(len(records))
        for k in self._FINITE_STATS:
            total += np.array([r.get(k, 0.0) for r in records], dtype=float)
        for i in np.flatnonzero((bad > 0) | (~np.isfinite(total) & (count != 0))).tolist():
            r = records[i]
            kind, name = r["kind"], r["name"]
            if bad[i] > 0:
                fire((kind, name, "nonfinite", "nonfinite"), AlertEvent(
                    step, "nonfinite", name, "nonfinite", float(bad[i]), 0.0,
                    f"step {step}: {kind} {name} has {int(bad[i])} non-finite elements (first seen at this step)",
                    kind))
                continue
            stat = next(k for k in self._FINITE_STATS if k in r and not math.isfinite(r[k]))
            fire((kind, name, "nonfinite", stat), AlertEvent(
                step, "nonfinite", name, stat, r[stat], 0.0,
                f"step {step}: {kind} {name} {stat} is {r[stat]} (first seen at this step)", kind))

    def _check_band(self, step: int, records: list[dict], kinds: np.ndarray, count: np.ndarray, fire) -> None:
        std = np.array([r.get("std", math.nan) for r in records], dtype=float)
        ok = np.isfinite(std) & (count > 0)
        for kind, (lo, hi) in self.std_band.items():
            rows = ok & (kinds == kind)
            low = rows & (std < lo) if lo is not None else np.zeros_like(rows)
            high = rows & (std > hi) if hi is not None else np.zeros_like(rows)
            for i in np.flatnonzero(low | high).tolist():
                name, v = records[i]["name"], float(std[i])
                if low[i]:
                    fire((kind, name, "vanishing", "std"), AlertEvent(
                        step, "vanishing", name, "std", v, lo,
                        f"step {step}: {kind} {name} std {v:.3g} below {lo:.3g} (vanishing)", kind))
                else:
                    fire((kind, name, "exploding", "std"), AlertEvent(
                        step, "exploding", name, "std", v, hi,
                        f"step {step}: {kind} {name} std {v:.3g} above {hi:.3g} (exploding)", kind))

    def _check_depth(self, step: int, kind: str, records: list[dict], kinds: np.ndarray, fire) -> None:
        idx = [i for i in np.flatnonzero(kinds == kind).tolist()
               if records[i].get("layer") is not None and records[i].get("head") is None
               and not is_bias_name(records[i]["name"])]
        stream = [i for i in idx if records[i].get("stream")]
        idx = stream or idx  # a residual network: the residual stream, not the branches' own layers
        var = np.array([records[i].get("var", math.nan) for i in idx], dtype=float)
        keep = np.isfinite(var) & (var > 0)
        if not keep.any():
            return
        layers = np.array([int(records[i]["layer"]) for i in idx])[keep]
        logv = np.log(var[keep])
        first, last = int(layers.min()), int(layers.max())
        if first == last:
            return
        start, end = (last, first) if kind == "grad" else (first, last)  # gradients travel toward the input
        ratio = math.exp(float(logv[layers == end].mean() - logv[layers == start].mean()))
        t = self.depth_ratio
        what = f"{kind} variance" + (" (residual stream)" if stream else "")
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
            if i == self._buf.shape[0]:  # grow the window table
                grow = max(16, i)
                self._buf = np.concatenate([self._buf, np.full((grow, self.spike_window), np.nan)])
                self._n = np.concatenate([self._n, np.zeros(grow, dtype=np.int64)])
        return i

    def _check_spikes(self, step: int, records: list[dict], fire) -> None:
        """Each watched value against the mean + k·σ of its own last values (vectorized over the rows)."""
        if not self.spike_stats:
            return
        watched: dict[str, list[str]] = {}
        for kind, stat in self.spike_stats:
            watched.setdefault(kind, []).append(stat)
        keys: list[tuple[str, str, str]] = []
        vals: list[float] = []
        totals: dict[tuple[str, str], float] = {}
        for r in records:
            stats = watched.get(r["kind"])
            if stats is None or r.get("head") is not None:
                continue
            for stat in stats:
                v = r.get(stat)
                if v is None or not math.isfinite(v):
                    continue
                keys.append((r["kind"], r["name"], stat))
                vals.append(float(v))
                if stat == "l2":
                    totals[(r["kind"], stat)] = totals.get((r["kind"], stat), 0.0) + float(v) ** 2
        for (kind, stat), sq in totals.items():
            keys.append((kind, TOTAL, stat))
            vals.append(math.sqrt(sq))
        if not keys:
            return
        idx = np.array([self._key_index(k) for k in keys])
        v = np.array(vals)
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
                kind, name, stat = keys[j]
                fire((kind, name, "spike", stat), AlertEvent(
                    step, "spike", name, stat, vals[j], float(thr[j]),
                    f"step {step}: {kind} {name} {stat} {vals[j]:.3g} above {thr[j]:.3g} "
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
            "windows": [[list(k), self._window(i)] for k, i in self._keys.items()],
            "active": sorted(list(k) for k in self._active),
            "events": [e.to_dict() for e in self.events],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._keys, self._buf, self._n = {}, np.full((0, self.spike_window), np.nan), np.zeros(0, dtype=np.int64)
        for k, w in state.get("windows", []):
            w = [float(x) for x in w][-self.spike_window:]
            i = self._key_index(tuple(k))
            self._buf[i, : len(w)] = w
            self._n[i] = len(w)
        self._active = {tuple(k) for k in state.get("active", [])}
        self.events = [AlertEvent(**e) for e in state.get("events", [])]
