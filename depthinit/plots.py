"""Figures of a monitored run: layer × step heatmaps, per-layer profiles, Q/K/V std per layer over steps.

Input: records of :class:`~depthinit.monitor.VarianceMonitor` (``mon.history``), a monitor, or the path of a
:class:`~depthinit.sinks.JSONL` log. matplotlib is optional (``pip install depthinit[plots]``); figures are
drawn with the Agg canvas (no display, no pyplot state) and returned as ``matplotlib.figure.Figure``.

* :func:`heatmap` — one row per layer (model order), one column per monitored step, colour = ``stat``
  (log colour scale when the values span more than a decade).
* :func:`profile` — ``stat`` across the layers at a few steps, one panel per kind.
* :func:`qkv` — the std of the Q, K and V projections of every layer over the steps (one line per layer,
  coloured by depth): the figure of the 12-layer GPT-2 study of arXiv 2509.05018 (shallow layers
  expanding fast, deeper ones slowly).
* :func:`plot_run` — all of the above into a folder; ``depthinit plot run.jsonl -o out/`` on the command line.
* :func:`probe_profile` — the forward/backward variance per layer of a :class:`~depthinit.probe.ProbeReport`
  (``report.plot(path)``).

>>> paths = plot_run("run.jsonl", "plots/")
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

from .errors import MissingDependency
from .roles import is_bias_name

KINDS = ("weight", "grad", "act")
STATS = ("std", "rms", "absmax", "mean", "var", "l2", "min", "max")  # per-record statistics that can be drawn
UPDATE_STATS = ("update_ratio", "norm_change_ratio")


def _mpl():
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingDependency("depthinit.plots needs matplotlib: pip install 'depthinit[plots]' (or matplotlib)") \
            from e
    return matplotlib, Figure


def figure(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (10, 4),
           layout: str | None = "constrained", **subplots: Any):
    """``(Figure, axes)`` on the Agg canvas, without pyplot (no display, no global figure state); ``axes`` is
    always a 2-D array (``squeeze=False`` unless given). A one-line error when matplotlib is missing."""
    _, Figure = _mpl()
    fig = Figure(figsize=figsize, layout=layout)
    subplots.setdefault("squeeze", False)
    return fig, fig.subplots(nrows, ncols, **subplots)


def load_records(source: Any) -> list[dict[str, Any]]:
    """Records from a JSONL path, a :class:`~depthinit.monitor.VarianceMonitor` or a list of dicts."""
    if isinstance(source, (str, os.PathLike)):
        from .sinks import read_jsonl

        if not os.path.isfile(source):
            raise ValueError(f"no such file: {os.fspath(source)!r}")
        return read_jsonl(source)[0]
    if hasattr(source, "history"):
        return source.history
    records = list(source)
    if records and not all(isinstance(r, dict) and "kind" in r and "step" in r for r in records):
        raise ValueError("records must be dicts with at least 'step', 'kind' and 'name' (VarianceMonitor.history)")
    return records


def _keep(r: dict, kind: str, stat: str, bias: bool, heads: bool) -> bool:
    return (r.get("kind") == kind and r.get(stat) is not None and (bias or not is_bias_name(r["name"]))
            and (heads or r.get("head") is None))


def table(records: Iterable[dict], kind: str, stat: str = "std", bias: bool = False,
          heads: bool = False) -> tuple[list[str], list[int], list[list[float]]]:
    """``(names in model order, steps, values[name][step])`` of one kind and statistic (NaN where absent)."""
    names: dict[str, int] = {}
    cells: dict[tuple[str, int], float] = {}
    steps: set[int] = set()
    for r in records:
        if not _keep(r, kind, stat, bias, heads):
            continue
        names.setdefault(r["name"], len(names))
        steps.add(int(r["step"]))
        cells[(r["name"], int(r["step"]))] = float(r[stat])
    st = sorted(steps)
    return list(names), st, [[cells.get((n, s), math.nan) for s in st] for n in names]


def _spans_decades(values: Iterable[float]) -> bool:
    """More than a decade between the smallest and largest positive value (zeros are drawn apart)."""
    pos = [v for v in values if math.isfinite(v) and v > 0]
    return bool(pos) and max(pos) / min(pos) > 10


def _flat(matrix: list[list[float]]) -> list[float]:
    return [v for row in matrix for v in row]


def _step_ticks(ax, steps: Sequence[int], max_ticks: int = 10) -> None:
    k = max(1, math.ceil(len(steps) / max_ticks))
    idx = list(range(0, len(steps), k))
    ax.set_xticks(idx)
    ax.set_xticklabels([str(steps[i]) for i in idx], fontsize=7)


def _name_ticks(ax, names: Sequence[str], axis: str = "y", max_ticks: int = 120) -> None:
    k = max(1, math.ceil(len(names) / max_ticks))
    idx = list(range(0, len(names), k))
    size = 7 if len(idx) <= 30 else 5
    if axis == "y":
        ax.set_yticks(idx)
        ax.set_yticklabels([names[i] for i in idx], fontsize=size)
    else:
        ax.set_xticks(idx)
        ax.set_xticklabels([names[i] for i in idx], fontsize=size, rotation=90)


def heatmap(records: Any, kind: str = "weight", stat: str = "std", *, log: bool | None = None, bias: bool = False,
            heads: bool = False, relative: bool = False, title: str | None = None):
    """Layer × step heatmap of ``stat`` for ``kind`` (``weight``, ``grad``, ``act`` or ``update``).

    Args:
        records: records, a monitor or a JSONL path.
        kind: which rows.
        stat: which statistic (``std``, ``rms``, ``absmax``, ``update_ratio``...).
        log: logarithmic colour scale (default: when the positive values span more than a decade;
            zeros are then drawn in grey).
        bias: include the ``.bias`` rows; heads: include per-head rows.
        relative: divide each row by its value at the first step: how much each layer moved
            (diverging colours, log scale centred on 1).

    Example::

        fig = heatmap(mon.history, "grad", "std"); fig.savefig("grad_std.png")
    """
    matplotlib, Figure = _mpl()
    from matplotlib.colors import LogNorm

    names, steps, m = table(load_records(records), kind, stat, bias, heads)
    if not names:
        raise ValueError(f"no {kind!r} records with statistic {stat!r} to plot")
    if relative:
        def rel(row: list[float]) -> list[float]:
            first = next((v for v in row if math.isfinite(v) and v != 0), math.nan)
            return [v / first if math.isfinite(first) else math.nan for v in row]

        m = [rel(row) for row in m]
    vals = _flat(m)
    pos = [v for v in vals if math.isfinite(v) and v > 0]
    if log is None:
        log = relative or _spans_decades(vals)
    fig = Figure(figsize=(max(6.0, min(16.0, 3 + 0.25 * len(steps))), max(4.0, min(24.0, 1.5 + 0.14 * len(names)))),
                 layout="constrained")
    ax = fig.add_subplot()
    norm, cmap = None, matplotlib.colormaps["RdBu_r" if relative else "viridis"].with_extremes(bad="0.85")
    if log and pos:
        lo, hi = min(pos), max(pos)
        if relative:
            r = max(hi, 1 / lo, 1.0 + 1e-6)
            lo, hi = 1 / r, r
        norm = LogNorm(vmin=lo, vmax=hi if hi > lo else lo * 10)
    masked = [[v if math.isfinite(v) and (norm is None or v > 0) else math.nan for v in row] for row in m]
    im = ax.imshow(masked, aspect="auto", interpolation="nearest", cmap=cmap, norm=norm)
    _name_ticks(ax, names)
    _step_ticks(ax, steps)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("layer (model order)")
    what = f"{kind} {stat} relative to step {steps[0]}" if relative else f"{kind} {stat}"
    notes = ["log colour scale"] if norm is not None else []
    if norm is not None and any(math.isfinite(v) and v <= 0 for v in vals):
        notes.append("grey: zero")
    text = title or f"{what} per layer over training" + (f" ({', '.join(notes)})" if notes else "")
    ax.set_title(textwrap.fill(text, int(7.5 * fig.get_figwidth())), fontsize=10)  # never wider than the figure
    cb = fig.colorbar(im, ax=ax)
    cb.set_label(f"{stat} / {stat} at step {steps[0]}" if relative else stat)
    if norm is not None and norm.vmax / norm.vmin < 100:  # a narrow log range: plain numbers, not 1.0015×10⁰
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

        lo, hi = norm.vmin, norm.vmax
        cb.ax.yaxis.set_major_locator(FixedLocator([lo * (hi / lo) ** (i / 4) for i in range(5)]))
        cb.ax.yaxis.set_minor_locator(NullLocator())
        cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.5g}"))
    return fig


def _pick_steps(steps: Sequence[int], k: int = 4) -> list[int]:
    if len(steps) <= k:
        return list(steps)
    return sorted({steps[round(i * (len(steps) - 1) / (k - 1))] for i in range(k)})


def profile(records: Any, kinds: Sequence[str] = KINDS, stat: str = "std", steps: Sequence[int] | None = None,
            *, bias: bool = False, log: bool | None = None):
    """``stat`` across the layers (model order) at a few steps, one panel per kind.

    Args:
        steps: the steps to draw (default: up to 4, from the first to the last); the nearest monitored
            step is used for each.

    Example::

        fig = profile("run.jsonl", kinds=("act",), steps=[0, 1000])
    """
    matplotlib, Figure = _mpl()
    recs = load_records(records)
    panels = [(k, *table(recs, k, stat, bias)) for k in kinds]
    panels = [p for p in panels if p[1]]
    if not panels:
        raise ValueError(f"no records of kinds {tuple(kinds)} with statistic {stat!r} to plot")
    width = max(7.0, min(20.0, 2 + 0.12 * max(len(p[1]) for p in panels)))
    fig = Figure(figsize=(width, 3.2 * len(panels) + 1.2), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (kind, names, all_steps, m) in zip(axes, panels):
        want = _pick_steps(all_steps) if steps is None else sorted(
            {min(all_steps, key=lambda s, t=t: abs(s - t)) for t in steps})
        cmap = matplotlib.colormaps["plasma"]
        for j, s in enumerate(want):
            col = all_steps.index(s)
            ys = [row[col] for row in m]
            ax.plot(range(len(names)), ys, marker="o", ms=2.5, lw=1.2,
                    color=cmap(0.85 * j / max(1, len(want) - 1)), label=f"step {s}")
        vals = _flat(m)
        if (log if log is not None else _spans_decades(vals)):
            ax.set_yscale("log")
        _name_ticks(ax, names, axis="x")
        ax.set_xlabel("layer (module name, model order)")
        ax.set_ylabel(stat)
        ax.set_title(f"{kind} {stat} across layers")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    return fig


def qkv(records: Any, kind: str = "weight", stat: str = "std", *, log: bool | None = None):
    """The ``stat`` of the Q, K and V projections of every layer over the steps (one line per layer).

    Uses the rows the monitor tags ``qkv`` (split fused projections and q/k/v_proj-style modules);
    bias and per-head rows are left out.

    Example::

        fig = qkv(mon.history); fig.savefig("qkv_std.png")
    """
    matplotlib, Figure = _mpl()
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    recs = [r for r in load_records(records) if r.get("qkv") in ("q", "k", "v") and _keep(r, kind, stat, False, False)]
    if not recs:
        raise ValueError(f"no Q/K/V {kind!r} records with statistic {stat!r} (is split_qkv on, and is there an "
                         "attention layer?)")
    series: dict[str, dict[str, list[tuple[int, float]]]] = {"q": {}, "k": {}, "v": {}}
    layer_of: dict[str, float] = {}
    for r in recs:
        series[r["qkv"]].setdefault(r["name"], []).append((int(r["step"]), float(r[stat])))
        layer_of.setdefault(r["name"], r["layer"] if r.get("layer") is not None else len(layer_of) + 1)
    lo, hi = min(layer_of.values()), max(layer_of.values())
    cmap = matplotlib.colormaps["viridis"]
    norm = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1)
    fig = Figure(figsize=(13, 4.2), layout="constrained")
    axes = fig.subplots(1, 3, sharey=True)
    vals = [v for r in recs for v in [float(r[stat])]]
    use_log = log if log is not None else _spans_decades(vals)
    for ax, part in zip(axes, "qkv"):
        for name, pts in sorted(series[part].items(), key=lambda kv: layer_of[kv[0]]):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.3, color=cmap(norm(layer_of[name])))
        ax.set_title(f"{part.upper()} projection")
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        if use_log:
            ax.set_yscale("log")
    axes[0].set_ylabel(f"{kind} {stat}")
    cb = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=list(axes))
    cb.set_label("layer (1 = shallowest)")
    fig.suptitle(f"Q/K/V {kind} {stat} per layer over training")
    return fig


def statistics(records: Iterable[dict]) -> list[str]:
    """The statistics :func:`plot_run` can draw from ``records``: those of :data:`STATS` that a weight,
    gradient or activation record holds."""
    have = {k for r in records if r.get("kind") in KINDS for k, v in r.items() if v is not None}
    return [s for s in STATS if s in have]


def check_request(records: Sequence[dict], stat: str, steps: Sequence[int] | None, what: Any = "the log") -> None:
    """ValueError (one line, the valid choices named) unless ``records`` can draw ``stat`` at ``steps``."""
    where = os.fspath(what) if isinstance(what, os.PathLike) else what
    if not records:
        raise ValueError(f"{where} holds no monitor records: nothing to plot (was the monitor stepped?)")
    valid = statistics(records)
    if not valid:
        raise ValueError(f"{where} holds no weight, gradient or activation records: nothing to plot")
    if stat not in valid:
        raise ValueError(f"unknown statistic {stat!r} for {where}; valid: {', '.join(valid)}")
    if steps is not None:
        have = sorted({int(r["step"]) for r in records if "step" in r})
        bad = [s for s in steps if not have[0] <= s <= have[-1]]
        if not steps or bad:
            raise ValueError(f"steps {', '.join(map(str, bad)) or '(none)'} are outside the monitored steps "
                             f"{have[0]}..{have[-1]} of {where}")


def plot_run(source: Any, out_dir: str | os.PathLike, stat: str = "std", steps: Sequence[int] | None = None,
             fmt: str = "png", dpi: int = 120) -> list[str]:
    """Every figure of a run into ``out_dir``; returns the paths written.

    ``heatmap_{kind}.png`` for weights, gradients, activations (and ``heatmap_update.png``),
    ``change_weight.png`` (each weight row relative to its first step),
    ``profile.png``, ``qkv_{kind}.png`` for weights and activations when Q/K/V rows exist.

    Example::

        plot_run("run.jsonl", "plots/")
    """
    _mpl()
    recs = load_records(source)
    check_request(recs, stat, steps, source if isinstance(source, (str, os.PathLike)) else "the records")
    os.makedirs(out_dir, exist_ok=True)
    out: list[str] = []

    def save(fig, name: str) -> None:
        path = os.path.join(os.fspath(out_dir), f"{name}.{fmt}")
        fig.savefig(path, dpi=dpi)
        out.append(path)

    kinds = [k for k in KINDS if any(_keep(r, k, stat, False, False) for r in recs)]
    for k in kinds:
        save(heatmap(recs, k, stat), f"heatmap_{k}")
    if "weight" in kinds:
        save(heatmap(recs, "weight", stat, relative=True), "change_weight")
    for ustat in UPDATE_STATS:
        if any(_keep(r, "update", ustat, False, False) for r in recs):
            save(heatmap(recs, "update", ustat), "heatmap_update")
            break
    if kinds:
        save(profile(recs, kinds, stat, steps), "profile")
    for k in ("weight", "act"):
        if any(r.get("qkv") and _keep(r, k, stat, False, False) for r in recs):
            save(qkv(recs, k, stat), f"qkv_{k}")
    return out


# ------------------------------------------------------------------------------------------ probe report

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")  # matplotlib's tab10: one colour per compared initialization


def _positive(v: float | None) -> float:
    return math.nan if v is None or not (v > 0) else v


def _layer_axis(ax, names: Sequence[tuple[int, str]], max_named: int = 24) -> None:
    """Integer layer ticks; up to ``max_named`` layers are labelled with their module names."""
    from matplotlib.ticker import MaxNLocator

    if names and len(names) <= max_named and not all(n.isdigit() for _, n in names):  # Sequential: indices
        ax.set_xticks([i for i, _ in names], [f"{i}  {n}" for i, n in names], rotation=60, ha="right", fontsize=7,
                      rotation_mode="anchor")
        ax.set_xlabel("layer (probed module)")
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ends = f"; layer 1 is module '{names[0][1]}', layer {names[-1][0]} is '{names[-1][1]}'" if names else ""
        ax.set_xlabel(f"layer (probed modules in forward order{ends})")


def probe_profile(report: Any, title: str | None = None):
    """Forward (module output) and backward (output gradient) variance per layer of a
    :class:`~depthinit.probe.ProbeReport`, log scale: one colour per initialization, measured solid, theory
    dashed. Returns the ``Figure`` (:meth:`ProbeReport.plot <depthinit.probe.ProbeReport.plot>` saves it)."""
    fig, axes = figure(1, 2, figsize=(13, 5.2), squeeze=True)
    from matplotlib.lines import Line2D

    any_theory = False
    for i, r in enumerate(report.results):
        c = COLORS[i % len(COLORS)]
        xs = [x.index for x in r.layers]
        for ax, key in ((axes[0], "fwd"), (axes[1], "bwd")):
            ys = [_positive(getattr(x, key)) for x in r.layers]
            ax.plot(xs, ys, "-", color=c, lw=1.8, marker="o", ms=2.5, label=f"{r.label} ({r.verdict})")
            th = [_positive(getattr(x, "theory_" + key)) for x in r.layers]
            if any(t is not None and not math.isnan(t) for t in th):
                any_theory = True
                ax.plot(xs, [math.nan if t is None else t for t in th], "--", color=c, lw=1.3, alpha=0.9)
    axes[0].set_title("forward: variance of each layer's output")
    axes[1].set_title("backward: variance of the gradient w.r.t. each layer's output")
    names = [(x.index, x.name) for x in report.results[0].layers] if report.results else []
    for ax in axes:
        ax.set_yscale("log")
        _layer_axis(ax, names)
        ax.set_ylabel("variance")
        ax.grid(True, which="major", alpha=0.35)
        lo, hi = ax.get_ylim()
        if hi / max(lo, 1e-300) < 100:  # keep at least two decades visible: flat lines look flat
            mid = math.sqrt(lo * hi)
            ax.set_ylim(mid / 10, mid * 10)
    handles, labels = axes[0].get_legend_handles_labels()
    style = [Line2D([], [], color="k", lw=1.8, ls="-"), Line2D([], [], color="k", lw=1.3, ls="--")]
    if any_theory:
        handles, labels = handles + style, labels + ["measured", "theory (mean field)"]
    axes[0].legend(handles, labels, fontsize=8, loc="best")
    fig.suptitle(title or (f"signal propagation at init: {report.model}" if report.model else "signal propagation"))
    return fig
