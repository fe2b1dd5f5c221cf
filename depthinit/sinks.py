"""Where a :class:`~depthinit.monitor.VarianceMonitor` sends what it drains: files, TensorBoard, wandb, console.

Every sink gets, at each drain, the records of one monitored step (plain dicts: ``step, kind, name, layer``
and the statistics, see :mod:`depthinit.monitor`) and the :class:`~depthinit.alerts.AlertEvent` raised
on them. A sink that fails (disk full, missing package, a closed server) warns once and is skipped for
that call: training never stops, and the other sinks and the monitor's in-memory history keep every record.

* :class:`JSONL` — one JSON object per line (records; alerts as ``{"alert": kind, ...}``); what
  ``depthinit plot`` reads.
* :class:`CSV` — one row per record, fixed columns (:data:`CSV_COLUMNS`).
* :class:`TensorBoard` — scalars ``{kind}/{stat}/{name}`` (e.g. ``weight/std/h.0.attn.q``) and histograms
  rebuilt from the fused moments (:func:`moment_histogram`): no tensor is copied to the host.
* :class:`WandB` — the same scalars through ``wandb.log`` (``pip install depthinit[wandb]``).
* :class:`Console` — a compact per-kind summary every drain.
* :class:`Scalars` — the scalars of each step handed to a function ``log(metrics, step)``: the bridge to
  a trainer's loggers (Lightning's ``logger.log_metrics``, see :mod:`depthinit.integrations`).

Each sink receives its own copies of the records and events: what one sink changes, no other sees.

>>> mon = VarianceMonitor(model, sinks=[JSONL("run.jsonl"), TensorBoard("runs/x")])
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import warnings
from collections.abc import Iterable, Sequence
from typing import IO, Any

from .alerts import AlertEvent
from .errors import check_installed, require
from .kernels.contract import norm_cdf

CSV_COLUMNS = ("step", "kind", "name", "layer", "qkv", "head", "count", "mean", "var", "std", "rms", "l2", "min",
               "max", "absmax", "nonfinite", "zeros", "update_ratio", "norm_change_ratio", "delta_l2")
DEFAULT_STATS = ("std", "mean", "rms", "l2", "absmax", "update_ratio", "norm_change_ratio")


class SinkWarning(UserWarning):
    """A sink failed; the monitor goes on without it for this call."""


class Sink:
    """Base class: override :meth:`write` (and :meth:`alert`, :meth:`open`, :meth:`close` as needed)."""

    def open(self) -> None:
        """Called once when the monitor starts (import optional packages, open files)."""

    def write(self, step: int, records: list[dict[str, Any]]) -> None:
        """The records of monitored step ``step``."""
        raise NotImplementedError

    def alert(self, event: AlertEvent) -> None:
        """An alert raised on the records just written."""

    def flush(self) -> None:
        """Push buffered output out (called after each drain)."""

    def close(self) -> None:
        """Release files and writers; the sink is not used afterwards."""


def call_safely(sink: Sink, method: str, *args: Any) -> bool:
    """``getattr(sink, method)(*args)``; on error warn once per sink and return False."""
    try:
        getattr(sink, method)(*args)
        return True
    except Exception as e:  # noqa: BLE001 - a sink must never stop training
        if not getattr(sink, "_depthinit_warned", False):
            try:
                sink._depthinit_warned = True  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001
                pass
            warnings.warn(
                f"{type(sink).__name__} sink failed in {method}() and is skipped for this call "
                f"(further failures are not reported): {type(e).__name__}: {e}",
                SinkWarning,
                stacklevel=3,
            )
        return False


class JSONL(Sink):
    """One JSON object per line: each record, and each alert as ``{"alert": kind, "step": ..., ...}``.

    Non-finite numbers are written as ``NaN`` / ``Infinity`` (what Python's ``json`` reads back).

    Args:
        path: file to write; its folder is created.
        append: append to an existing file (a resumed run) instead of truncating it.

    Example::

        mon = VarianceMonitor(model, sinks=[JSONL("runs/x/stats.jsonl")])
    """

    def __init__(self, path: str | os.PathLike, append: bool = False) -> None:
        self.path = os.fspath(path)
        self.append = append
        self._f: IO[str] | None = None

    def open(self) -> None:
        if self._f is None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._f = open(self.path, "a" if self.append else "w", encoding="utf-8")

    def write(self, step: int, records: list[dict[str, Any]]) -> None:
        self.open()
        self._f.write("".join(json.dumps(r) + "\n" for r in records))

    def alert(self, event: AlertEvent) -> None:
        self.open()
        d = event.to_dict()
        self._f.write(json.dumps({"alert": d.pop("kind"), **d}) + "\n")

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def read_jsonl(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(records, alerts)`` of a :class:`JSONL` log (alerts keep their kind under ``"alert"``)."""
    records, alerts = [], []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not a JSON line ({e.msg})") from None
            if not isinstance(d, dict):
                raise ValueError(f"{path}:{i}: expected a JSON object, got {type(d).__name__}")
            (alerts if "alert" in d else records).append(d)
    return records, alerts


class CSV(Sink):
    """One row per record with the fixed columns :data:`CSV_COLUMNS` (empty where a record has no value).

    Alerts go to ``alerts_path`` (default: ``<path stem>.alerts.csv``) when one fires.

    Example::

        mon = VarianceMonitor(model, sinks=[CSV("stats.csv")])
    """

    ALERT_COLUMNS = ("step", "kind", "source", "layer", "statistic", "value", "threshold", "message")

    def __init__(self, path: str | os.PathLike, append: bool = False, alerts_path: str | os.PathLike | None = None):
        self.path = os.fspath(path)
        self.append = append
        stem = self.path[:-4] if self.path.endswith(".csv") else self.path
        self.alerts_path = os.fspath(alerts_path) if alerts_path is not None else stem + ".alerts.csv"
        self._f: IO[str] | None = None
        self._w: csv.DictWriter | None = None
        self._af: IO[str] | None = None
        self._aw: csv.DictWriter | None = None

    @staticmethod
    def _open(path: str, append: bool, columns: Sequence[str]) -> tuple[IO[str], csv.DictWriter]:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        new = not (append and os.path.exists(path) and os.path.getsize(path) > 0)
        f = open(path, "a" if append else "w", encoding="utf-8", newline="")
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        if new:
            w.writeheader()
        return f, w

    def open(self) -> None:
        if self._f is None:
            self._f, self._w = self._open(self.path, self.append, CSV_COLUMNS)

    def write(self, step: int, records: list[dict[str, Any]]) -> None:
        self.open()
        self._w.writerows(records)

    def alert(self, event: AlertEvent) -> None:
        if self._af is None:
            self._af, self._aw = self._open(self.alerts_path, self.append, self.ALERT_COLUMNS)
        self._aw.writerow(event.to_dict())

    def flush(self) -> None:
        for f in (self._f, self._af):
            if f is not None:
                f.flush()

    def close(self) -> None:
        for f in (self._f, self._af):
            if f is not None:
                f.close()
        self._f = self._af = None


def _optional(package: str, sink: str, extra: str):
    """Import an optional package, or raise MissingDependency (an ImportError) that says how to install it."""
    return require(package, f"the {sink} sink", extra)


def _installed(package: str, sink: str, extra: str) -> None:
    """At construction: the sink's package is installed (found without importing it), else MissingDependency
    with the install command, so a missing package is a configuration error before training starts."""
    check_installed({package: package}, f"the {sink} sink", extra)


def scalar_tags(record: dict[str, Any], stats: Iterable[str]) -> list[tuple[str, float]]:
    """``[("weight/std/h.0.attn.q", 0.02), ...]``: the scalars of one record."""
    kind, name = record["kind"], record["name"]
    return [(f"{kind}/{s}/{name}", float(record[s])) for s in stats if record.get(s) is not None]


def moment_histogram(count: float, mean: float, std: float, lo: float, hi: float,
                     bins: int = 32) -> tuple[list[float], list[float]]:
    """``(bucket_right_edges, bucket_counts)`` of a normal ``N(mean, std²)`` binned on ``[lo, hi]``.

    A histogram rebuilt from the fused moments (no element leaves the device): the normal's mass below
    ``lo`` and above ``hi`` is folded into the end buckets (every element lies in ``[lo, hi]``), and the
    counts are scaled to sum to ``count`` exactly. Only the shape is approximate; count, min, max, sum
    and sum of squares written beside it are exact.
    """
    if not (count > 0 and all(math.isfinite(v) for v in (mean, std, lo, hi))):
        return [], []
    if hi <= lo or std <= 0:
        return [float(hi)], [float(count)]
    width = (hi - lo) / bins
    edges = [lo + width * i for i in range(bins + 1)]
    edges[-1] = hi
    cdf = [norm_cdf((e - mean) / std) for e in edges]
    cdf[0], cdf[-1] = 0.0, 1.0
    mass = [max(b - a, 0.0) for a, b in zip(cdf, cdf[1:])]
    total = sum(mass)
    if total <= 0:
        return [float(hi)], [float(count)]
    return [float(e) for e in edges[1:]], [count * m / total for m in mass]


class TensorBoard(Sink):
    """Scalars per layer and statistic, and moment-based histograms, through ``SummaryWriter``.

    Tags are ``{kind}/{stat}/{name}`` (``weight/std/h.0.attn.q``, ``grad/l2/h.3.mlp.c_fc``,
    ``update/update_ratio/...``); histograms ``{kind}/hist/{name}`` are written with
    ``SummaryWriter.add_histogram_raw`` from :func:`moment_histogram` (count, min, max, sum and sum of
    squares exact; bucket shape a normal approximation). Alerts are written as text under ``alerts``.

    Args:
        logdir: TensorBoard log folder. Without ``writer``, the constructor checks that ``tensorboard`` is
            installed (MissingDependency with the install command otherwise).
        stats: statistics written as scalars (those a record lacks are skipped).
        histograms: write histograms for weight/grad/act rows.
        bins: histogram buckets.
        writer: an existing ``SummaryWriter`` to use instead (not closed by :meth:`close`).

    Example::

        mon = VarianceMonitor(model, sinks=[TensorBoard("runs/x")])   # tensorboard --logdir runs
    """

    def __init__(self, logdir: str | os.PathLike | None = None, stats: Sequence[str] = DEFAULT_STATS,
                 histograms: bool = True, bins: int = 32, writer: Any = None) -> None:
        if logdir is None and writer is None:
            raise ValueError("TensorBoard sink needs a logdir or a writer")
        if writer is None:
            _installed("tensorboard", "TensorBoard", "tb")
        self.logdir = None if logdir is None else os.fspath(logdir)
        self.stats = tuple(stats)
        self.histograms = histograms
        self.bins = int(bins)
        self._own = writer is None
        self._w = writer

    def open(self) -> None:
        if self._w is None:
            _optional("tensorboard", "TensorBoard", "tb")
            from torch.utils.tensorboard import SummaryWriter

            self._w = SummaryWriter(self.logdir)

    def write(self, step: int, records: list[dict[str, Any]]) -> None:
        self.open()
        w = self._w
        for r in records:
            for tag, v in scalar_tags(r, self.stats):
                w.add_scalar(tag, v, step)
            if self.histograms and r["kind"] != "update" and r.get("count"):
                limits, counts = moment_histogram(r["count"], r["mean"], r["std"], r["min"], r["max"], self.bins)
                if limits:
                    w.add_histogram_raw(
                        f"{r['kind']}/hist/{r['name']}", min=r["min"], max=r["max"], num=r["count"],
                        sum=r["mean"] * r["count"], sum_squares=r["rms"] ** 2 * r["count"],
                        bucket_limits=limits, bucket_counts=counts, global_step=step)

    def alert(self, event: AlertEvent) -> None:
        self.open()
        self._w.add_text("alerts", event.message, event.step)

    def flush(self) -> None:
        if self._w is not None:
            self._w.flush()

    def close(self) -> None:
        if self._w is not None:
            self._w.flush()
            if self._own:
                self._w.close()
        self._w = None


class WandB(Sink):
    """The same scalars as :class:`TensorBoard` through ``wandb.log`` (optional: ``pip install depthinit[wandb]``).

    Without ``wandb`` installed the constructor raises :class:`~depthinit.errors.MissingDependency` with the
    install command (a configuration error, found before training starts); ``wandb`` itself is imported
    when the monitor starts. Uses the active run (``wandb.run``) or starts one with ``init_kwargs``.

    Args:
        stats: statistics logged as scalars.
        histograms: log ``wandb.Histogram`` objects rebuilt from the moments.
        run: a run object to log to instead of ``wandb.run``.
        **init_kwargs: passed to ``wandb.init`` when there is no active run.

    Example::

        mon = VarianceMonitor(model, sinks=[WandB(project="deep")])
    """

    def __init__(self, stats: Sequence[str] = DEFAULT_STATS, histograms: bool = False, run: Any = None,
                 **init_kwargs: Any) -> None:
        _installed("wandb", "WandB", "wandb")
        self.stats = tuple(stats)
        self.histograms = histograms
        self.init_kwargs = init_kwargs
        self._run = run
        self._wandb = None

    def open(self) -> None:
        if self._wandb is None:
            self._wandb = _optional("wandb", "WandB", "wandb")
        if self._run is None:
            self._run = self._wandb.run if self._wandb.run is not None else self._wandb.init(**self.init_kwargs)

    def write(self, step: int, records: list[dict[str, Any]]) -> None:
        self.open()
        data: dict[str, Any] = {}
        for r in records:
            data.update(scalar_tags(r, self.stats))
            if self.histograms and r["kind"] != "update" and r.get("count"):
                limits, counts = moment_histogram(r["count"], r["mean"], r["std"], r["min"], r["max"])
                if len(limits) > 1:
                    edges = [r["min"], *limits]
                    data[f"{r['kind']}/hist/{r['name']}"] = self._wandb.Histogram(np_histogram=(counts, edges))
        self._run.log(data, step=step)

    def alert(self, event: AlertEvent) -> None:
        self.open()
        self._run.log({f"alerts/{event.kind}/{event.source}/{event.layer}": event.value}, step=event.step)

    def close(self) -> None:
        self._run = None


class Scalars(Sink):
    """``log({tag: value}, step + step_offset)`` with the scalars of every monitored step (tags as
    :func:`scalar_tags`: ``{kind}/{stat}/{name}``, under ``prefix``) and ``{prefix}alerts/{kind}/{source}`` = 1
    for each alert.

    Args:
        log: the function, e.g. a Lightning logger's ``log_metrics`` or ``lambda m, s: run.log(m, step=s)``.
        stats: statistics logged (a subset keeps a trainer's logger light: one scalar per row and statistic).
        step_offset: added to the monitor's step (0-based index of the optimizer step) to give the step the
            logger expects, e.g. 1 for a trainer's ``global_step`` counted after the update.
        prefix: prepended to every tag (e.g. ``"depthinit/"``).

    Example::

        mon = VarianceMonitor(model, sinks=[Scalars(lambda m, s: print(s, len(m)))])
    """

    def __init__(self, log: Any, stats: Sequence[str] = ("std", "update_ratio", "norm_change_ratio"),
                 step_offset: int = 0, prefix: str = "") -> None:
        if not callable(log):
            raise TypeError(f"Scalars sink: log must be callable (metrics, step), got {type(log).__name__}")
        self.log, self.stats, self.step_offset, self.prefix = log, tuple(stats), int(step_offset), prefix

    def write(self, step: int, records: list[dict[str, Any]]) -> None:
        data = {self.prefix + tag: v for r in records for tag, v in scalar_tags(r, self.stats)}
        if data:
            self.log(data, step + self.step_offset)

    def alert(self, event: AlertEvent) -> None:
        self.log({f"{self.prefix}alerts/{event.kind}/{event.source}": 1.0}, event.step + self.step_offset)


class Console(Sink):
    """A compact table every drain: per kind, the number of rows, the std range (and where), non-finite
    counts, the total gradient norm and the median update ratio; then the alerts.

    Args:
        stream: where to print (default ``sys.stdout``).
        rows: also print one line per row.

    Example::

        mon = VarianceMonitor(model, sinks=[Console()])
    """

    def __init__(self, stream: IO[str] | None = None, rows: bool = False) -> None:
        self.stream = stream
        self.rows = rows

    def _out(self) -> IO[str]:
        return self.stream if self.stream is not None else sys.stdout

    def write(self, step: int, records: list[dict[str, Any]]) -> None:
        lines = [f"[depthinit] step {step}", f"  {'kind':<7}{'rows':>5}  {'std min':>10} {'std max':>10}  "
                 f"{'nonfinite':>9}  {'extra':<30}"]
        for kind in ("weight", "grad", "act", "update"):
            rs = [r for r in records if r["kind"] == kind]
            if not rs:
                continue
            extra = ""
            if kind == "update":
                key = "update_ratio" if "update_ratio" in rs[0] else "norm_change_ratio"
                vals = sorted(r[key] for r in rs if r.get(key) is not None and math.isfinite(r[key]))
                extra = f"median {key} {vals[len(vals) // 2]:.3g}" if vals else ""
                lines.append(f"  {kind:<7}{len(rs):>5}  {'':>10} {'':>10}  {'':>9}  {extra:<30}")
                continue
            stds = [(r["std"], r["name"]) for r in rs if r.get("std") is not None and math.isfinite(r["std"])]
            nf = sum(int(r.get("nonfinite") or 0) for r in rs)
            if kind == "grad":
                extra = f"total l2 {math.sqrt(sum((r.get('l2') or 0.0) ** 2 for r in rs)):.3g}"
            lo = min(stds) if stds else (float("nan"), "-")
            hi = max(stds) if stds else (float("nan"), "-")
            lines.append(f"  {kind:<7}{len(rs):>5}  {lo[0]:>10.3g} {hi[0]:>10.3g}  {nf:>9}  {extra:<30}"
                         f" (min at {lo[1]}, max at {hi[1]})")
            if self.rows:
                for r in rs:
                    lines.append(f"    {r['name']:<40} std {r['std']:.4g}  mean {r['mean']:.4g}  "
                                 f"absmax {r['absmax']:.4g}")
        print("\n".join(lines), file=self._out())

    def alert(self, event: AlertEvent) -> None:
        print(f"[depthinit] ALERT {event.kind}: {event.message}", file=self._out())

    def flush(self) -> None:
        try:
            self._out().flush()
        except (AttributeError, ValueError):
            pass
