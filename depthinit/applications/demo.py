"""``depthinit demo``: see before you train, then train with the monitor on — the project's main job.

On an embedded default (scikit-learn's bundled digits, no download), for each initialization — He,
Xavier and depth-aware (K=1), each with normal and uniform weights — the demo

1. builds the 54-layer fully connected ReLU net of arXiv 2509.05018 and initializes it with
   :func:`depthinit.plan`;
2. probes it (:func:`depthinit.probe.probe`): forward/backward variance per layer at initialization,
   measured and predicted, and a verdict (healthy / vanishing / exploding);
3. trains it briefly with a :class:`~depthinit.monitor.VarianceMonitor` logging weights, gradients and
   activations to JSONL;

and writes a report folder (default ``depthinit-report/``): ``report.md`` with the tables, PNG figures
(``probe.png``, ``training.png``, ``monitor.png``, ``gradients.png``), the JSONL logs and
``summary.json``; it prints the summary table (scheme, distribution, verdict, final train/test accuracy,
loss). ``--quick`` runs a narrower net for a few epochs (tests, smoke checks).

Example:
    $ depthinit demo                      # ~1-2 minutes on a 2-core CPU
    $ depthinit demo --quick --out /tmp/r
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

import torch
from torch import nn

from ..kernels.contract import check_seed
from ..plots import COLORS, figure
from ..report import aligned_table, md_table
from ..roles import is_bias_name
from .training import Curves, TrainConfig, train_classifier

DEFAULT_SCHEMES = (
    "he", "he:distribution=uniform",
    "xavier", "xavier:distribution=uniform",
    "depth_aware:K=1", "depth_aware:K=1+distribution=uniform",
)  # fmt: skip
DEFAULT_OUT = "depthinit-report"


@dataclass
class DemoConfig:
    """Everything a demo run depends on (written to ``summary.json`` and ``report.md``)."""

    depth: int = 54
    width: int = 128
    data: str = "digits"
    data_root: str | None = None
    n_train: int | None = None
    n_test: int | None = None
    epochs: int = 24
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 2e-4
    seed: int = 0
    monitor_points: int = 16
    probe_batch: int = 256
    schemes: tuple[str, ...] = DEFAULT_SCHEMES
    threads: int = 1
    quick: bool = False

    @classmethod
    def quick_config(cls, **overrides: Any) -> DemoConfig:
        """The ``--quick`` run: same depth, width 64, 3 epochs at a higher learning rate."""
        return cls(**{"width": 64, "epochs": 3, "lr": 5e-4, "quick": True, "monitor_points": 6, **overrides})


@dataclass
class RunResult:
    """One initialization: probe verdict, training curves and final numbers."""

    label: str
    scheme: str
    distribution: str
    options: dict
    verdict: str
    forward_gain: float
    backward_gain: float
    epochs: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    alerts: dict[str, int] = field(default_factory=dict)
    log: str = ""
    seconds: float = 0.0

    @property
    def final(self) -> tuple[float, float, float]:
        return self.train_loss[-1], self.train_acc[-1], self.test_acc[-1]


# ---------------------------------------------------------------------------------------------- progress


class Progress:
    """Progress on stderr without dependencies: one line rewritten in place on a terminal, otherwise a
    line at most every ``interval`` seconds and at the end of each task."""

    def __init__(self, stream: TextIO | None = None, interval: float = 5.0, enabled: bool = True):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval
        self.enabled = enabled
        self._last = 0.0

    def update(self, text: str, done: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if done else ""))
        elif done or now - self._last >= self.interval:
            self.stream.write(text + "\n")
        else:
            return
        self._last = now
        self.stream.flush()


def _bar(i: int, n: int, width: int = 20) -> str:
    k = round(width * i / max(n, 1))
    return "[" + "#" * k + "." * (width - k) + "]"


# ---------------------------------------------------------------------------------------------- training


def train(model: nn.Module, split: Any, cfg: DemoConfig, res: RunResult, log_path: str,
          progress: Callable[[str, bool], None]) -> None:
    """Train ``model`` on ``split`` with a VarianceMonitor on (JSONL log at ``log_path``); fill ``res``.

    The loop is :func:`~depthinit.applications.training.train_classifier`: a non-finite loss ends the run
    (its remaining epochs read NaN)."""
    from ..monitor import VarianceMonitor
    from ..sinks import JSONL

    steps_per_epoch = math.ceil(len(split.y_train) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    every = max(1, total // max(1, cfg.monitor_points))
    tc = TrainConfig(epochs=cfg.epochs, lr=cfg.lr, batch=cfg.batch_size, optimizer=cfg.optimizer)

    def epoch_done(ep: int, c: Curves) -> None:
        progress(f"{_bar(ep, cfg.epochs)} epoch {ep}/{cfg.epochs} loss {c.train_loss[-1]:.3f} "
                 f"test acc {c.test_acc[-1]:.3f}", False)

    mon = VarianceMonitor(model, every=every, sinks=[JSONL(log_path)])
    try:
        curves = train_classifier(model, split, tc, cfg.seed + 1, on_step=mon.step, on_epoch=epoch_done)
    finally:
        mon.close()
    res.epochs, res.train_loss, res.train_acc = curves.epoch, curves.train_loss, curves.train_acc
    res.test_acc = curves.test_acc
    counts: dict[str, int] = {}
    for ev in mon.events:
        counts[ev.kind] = counts.get(ev.kind, 0) + 1
    res.alerts = counts
    res.log = log_path
    res._history = mon.history  # type: ignore[attr-defined]  # for the figures, not serialized


# ---------------------------------------------------------------------------------------------- figures


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower()


def _style(i: int, res: RunResult):
    return COLORS[i % len(COLORS)], ("--" if res.distribution == "uniform" else "-")


def _best(r: RunResult) -> tuple[float, int]:
    """The best test accuracy of a run and the epoch it was reached (the first, on ties)."""
    accs = [a if math.isfinite(a) else -1.0 for a in r.test_acc]
    i = max(range(len(accs)), key=accs.__getitem__)
    return r.test_acc[i], r.epochs[i]


def plot_training(results: Sequence[RunResult], path: str, title: str) -> str:
    """Training loss (log scale) and test accuracy per epoch, one line per initialization; the legend gives
    each run's final and best test accuracy (a star marks the best epoch)."""
    fig, (axes,) = figure(1, 2, figsize=(13, 5.4))
    for i, r in enumerate(results):
        c, ls = _style(i, r)
        loss = [v if math.isfinite(v) else math.nan for v in r.train_loss]
        best, at = _best(r)
        axes[0].plot(r.epochs, loss, ls, color=c, lw=1.8, marker="o", ms=3, label=r.label)
        axes[1].plot(r.epochs, r.test_acc, ls, color=c, lw=1.8, marker="o", ms=3,
                     label=f"{r.label}: final {r.test_acc[-1]:.3f}, best {best:.3f} (epoch {at})")
        axes[1].plot([at], [best], "*", color=c, ms=11, mec="k", mew=0.6)
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    finite = [v for r in results for v in r.train_loss if math.isfinite(v) and v > 0]
    if finite and max(finite) / min(finite) > 10:
        axes[0].set_yscale("log")
        axes[0].yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes[0].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axes[0].yaxis.set_minor_formatter(NullFormatter())
    axes[0].set_title("training loss (full training set, after each epoch)")
    axes[0].set_ylabel("cross-entropy loss")
    axes[1].set_title("test accuracy after each epoch (star: best epoch)")
    axes[1].set_ylabel("test accuracy")
    axes[1].set_ylim(0, 1)
    for ax in axes:
        ax.set_xlabel("epoch (0 = at initialization)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.35)
    axes[0].legend(fontsize=8, loc="best")
    axes[1].legend(fontsize=7.5, loc="best")
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return path


def _layer_profile(history: list[dict], kind: str, stat: str = "std") -> dict[int, list[float]]:
    """``{step: [stat of layer 1, 2, ...]}`` over the weight (not bias) rows of ``kind``, in model order."""
    out: dict[int, list[float]] = {}
    for r in history:
        if r.get("kind") == kind and not is_bias_name(str(r.get("name", ""))) and stat in r:
            out.setdefault(int(r["step"]), []).append(float(r[stat]))
    return out


def plot_monitor(results: Sequence[RunResult], path: str, title: str) -> str:
    """From the monitor: per-layer activation and gradient std at the first (thin) and last (thick)
    monitored step of every run, log scale."""
    from matplotlib.ticker import MaxNLocator

    fig, (axes,) = figure(1, 2, figsize=(13, 5.2))
    for ax, kind, name in ((axes[0], "act", "activation (layer output) std"), (axes[1], "grad", "weight-gradient std")):
        for i, r in enumerate(results):
            prof = _layer_profile(getattr(r, "_history", []), kind)
            if not prof:
                continue
            c, ls = _style(i, r)
            steps = sorted(prof)
            for s, lw, alpha, lab in ((steps[0], 1.0, 0.55, None), (steps[-1], 2.0, 1.0, r.label)):
                ys = [v if v > 0 and math.isfinite(v) else math.nan for v in prof[s]]
                ax.plot(range(1, len(ys) + 1), ys, ls, color=c, lw=lw, alpha=alpha, label=lab)
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_ylabel("standard deviation (log scale)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{name}: thin = first monitored step, thick = last")
        ax.grid(True, alpha=0.35)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return path


def plot_gradients(results: Sequence[RunResult], path: str, title: str) -> str | None:
    """Weight-gradient std per layer (rows) and optimizer step (columns), one panel per run, each on its own
    log colour scale (its range in the title): a vanishing run reads 1e-15 on its colour bar, a healthy run
    shows how its gradients move over training instead of one flat colour."""
    grids = []
    for r in results:
        prof = _layer_profile(getattr(r, "_history", []), "grad")
        steps = sorted(prof)
        if steps:
            grids.append((r, steps, [[prof[s][i] for s in steps] for i in range(len(prof[steps[0]]))]))
    if not any(math.isfinite(v) and v > 0 for _, _, g in grids for row in g for v in row):
        return None
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import MaxNLocator, NullFormatter

    ncols = min(3, len(grids))
    nrows = math.ceil(len(grids) / ncols)
    fig, axes = figure(nrows, ncols, (4.8 * ncols + 0.6, 3.7 * nrows + 0.9), squeeze=False)
    for ax in axes.flat[len(grids):]:
        ax.set_visible(False)
    for ax, (r, steps, g) in zip(axes.flat, grids):
        masked = [[v if math.isfinite(v) and v > 0 else math.nan for v in row] for row in g]
        vals = [v for row in masked for v in row if v == v]
        lo, hi = (min(vals), max(vals)) if vals else (1e-12, 1.0)
        half = (steps[-1] - steps[0]) / max(len(steps) - 1, 1) / 2 or 0.5
        im = ax.imshow(masked, aspect="auto", interpolation="nearest", cmap="viridis",
                       norm=LogNorm(vmin=lo, vmax=hi if hi > lo else lo * 10),
                       extent=(steps[0] - half, steps[-1] + half, len(g) + 0.5, 0.5))
        ax.set_title(f"{r.label} ({r.verdict})\nstd {lo:.2g} .. {hi:.2g}", fontsize=9.5)
        if len(steps) <= 8:  # one tick per monitored step, else round steps on the step axis
            ax.set_xticks(steps)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        ax.tick_params(labelsize=8)
        ax.set_xlabel("optimizer step", fontsize=9)
        ax.set_ylabel("layer", fontsize=9)
        cb = fig.colorbar(im, ax=ax, fraction=0.06, pad=0.02)
        cb.ax.yaxis.set_minor_formatter(NullFormatter())  # decades only, the same on every panel
        cb.ax.tick_params(labelsize=7)
    fig.suptitle(f"{title}\n(weight-gradient std; each panel has its own log colour scale)")
    fig.savefig(path, dpi=100)
    return path


# ---------------------------------------------------------------------------------------------- report


def _summary_rows(results: Sequence[RunResult]) -> list[list[str]]:
    rows = []
    for r in results:
        loss, tr, te = r.final
        alerts = ", ".join(f"{k} {v}" for k, v in sorted(r.alerts.items())) or "-"
        best, at = _best(r)
        rows.append([r.label, r.distribution, r.verdict, f"{tr:.3f}", f"{te:.3f}", f"{best:.3f} ({at})",
                     f"{loss:.4g}" if math.isfinite(loss) else "nan", alerts, f"{r.seconds:.1f}"])
    return rows


SUMMARY_HEAD = ("scheme", "distribution", "verdict at init", "final train acc", "final test acc",
                "best test acc (epoch)", "final train loss", "alerts", "seconds")


def summary_table(results: Sequence[RunResult]) -> str:
    """The printed summary: an aligned plain-text table."""
    return aligned_table(SUMMARY_HEAD, _summary_rows(results))


def write_report(out: str, cfg: DemoConfig, split: Any, report, results: Sequence[RunResult], figures: dict,
                 command: str, seconds: float) -> str:
    from .models import describe

    probe_rows = []
    for pr in report.results:
        probe_rows.append([pr.label, pr.verdict, f"{pr.forward_gain:.3g}", f"{pr.theory_forward_gain or math.nan:.3g}",
                           f"{pr.backward_gain:.3g}", f"{pr.theory_backward_gain or math.nan:.3g}"])
    logs = "\n".join(f"* `{os.path.basename(r.log)}` — {r.label}" for r in results)
    spread = math.sqrt(5 * cfg.depth / cfg.width)
    head = split.n_classes / cfg.width  # He's backward factor of the narrow output layer: fan_out · (2/fan_in) / 2
    text = f"""# depthinit demo: a {cfg.depth}-layer ReLU MLP on {split.name}

Command: `{command}` ({seconds:.0f} s, torch {torch.__version__}, {_count(torch.get_num_threads(), "thread")}).

Model: `mlp:depth={cfg.depth},width={cfg.width}` ({describe(report_model_stub(cfg, split))}), {split.n_features}
inputs, {split.n_classes} classes. Data: {split.describe()}, standardized with the training set's statistics.
Training: {cfg.optimizer} lr {cfg.lr:g}, batch {cfg.batch_size}, {cfg.epochs} epochs, seed {cfg.seed} for every
initialization; a `VarianceMonitor` logs weights, gradients, activations and update ratios
{cfg.monitor_points} times per run.

## 1. Before training: signal propagation at initialization

The probe feeds {cfg.probe_batch} training samples forward and a standard-normal gradient backward (into the
{split.n_classes} outputs), and measures the variance of every layer's output and of the gradient with respect
to it (one fused statistics call per pass). The columns of the table:

* **fwd gain**: the variance of the last layer's output divided by the first layer's, measured;
* its **theory**: the mean-field prediction of the same ratio from the plan's standard deviations, the product
  over layers 2..{cfg.depth} of `fan_in · Var(W) / 2` (a ReLU layer's factor): 1 for He at every layer (the
  output layer included), about 1/2 for Xavier (so {cfg.depth} layers lose about 2^{cfg.depth - 1}), and the
  depth-aware ramp's `exp(2Kl/(L(L+1)))` (an end-to-end factor e^K);
* **bwd gain**: the gradient variance at the first layer's output divided by the last layer's (where the
  standard-normal gradient enters), measured: below 1 means the gradient shrinks toward the input;
* its **theory**: the product over layers 2..{cfg.depth} of `fan_out · Var(W) / 2`. He (fan_in mode) gives 1 at
  every square hidden layer and {split.n_classes} · (2/{cfg.width}) / 2 = {head:.3g} once, at the
  {split.n_classes}-unit output layer: the gradient of {split.n_classes} outputs is spread over {cfg.width} units.
  That one factor is He's whole backward theory ({head:.3g}): it does not vanish with depth.

The theory is the mean over random draws; one network of finite width fluctuates around it: every ReLU layer
multiplies the variance by a random factor of relative spread about sqrt(5/width) (a sum over the ~width/2
active units), so after {cfg.depth} layers of width {cfg.width} the log of a single draw's variance spreads by
about sqrt(5·{cfg.depth}/{cfg.width}) = {spread:.1f} (a factor {math.exp(spread):.0f} either way), the narrow
{split.n_classes}-unit output layer adds its own (its variance is taken over {split.n_classes} units only), the
inputs are correlated pixels rather than independent normals, and, the spread being log-normal, a draw lands
more often below the mean than above. So one draw's gain can sit a factor {math.exp(2 * spread):.0f} (two
spreads) below its theory without anything being wrong. Verdict: the variance ratio to the first layer
(forward) or to the last layer (backward) leaves [1/{report.threshold:g}, {report.threshold:g}] at some layer →
vanishing / exploding; it separates order-of-magnitude failures (Xavier's 2^-{cfg.depth - 1}) from that
finite-width noise.

{md_table(["initialization", "verdict", "fwd gain", "theory", "bwd gain", "theory"], probe_rows)}

![probe]({os.path.basename(figures["probe"])})

## 2. Training

{md_table(SUMMARY_HEAD, _summary_rows(results))}

Final accuracies and loss are measured on the full training / test sets after the last epoch; the best test
accuracy is the highest after any epoch (the epoch in brackets; 0 = at initialization). Alerts are the
monitor's (vanishing / exploding / non-finite / spike, see `depthinit.alerts`) over the whole run.

![training]({os.path.basename(figures["training"])})

## 3. During training: what the monitor saw

![monitor]({os.path.basename(figures["monitor"])})

Weight-gradient standard deviation per layer over the training steps (each panel on its own log colour
scale; its range is in the panel's title):

{f"![gradients]({os.path.basename(figures['gradients'])})" if "gradients" in figures else "(no gradient records)"}

JSONL logs (one record per tensor and monitored step; `depthinit plot LOG -o DIR` draws them):

{logs}

Full numbers: `summary.json` (config, per-epoch curves) and `probe.json` (per-layer probe).
"""
    path = os.path.join(out, "report.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def report_model_stub(cfg: DemoConfig, split: Any) -> nn.Module:
    from .models import mlp

    with torch.device("meta"):
        return mlp(cfg.depth, cfg.width, in_features=split.n_features, out_features=split.n_classes)


# ---------------------------------------------------------------------------------------------- main


def _run_label(name: str, opts: dict) -> tuple[str, str]:
    dist = str(opts.get("distribution", "normal"))
    rest = {k: v for k, v in opts.items() if k != "distribution"}
    label = name + ("" if not rest else " " + " ".join(f"{k}={v}" for k, v in rest.items())) + f" / {dist}"
    return label, dist


def check_config(cfg: DemoConfig) -> list[tuple[str, dict]]:
    """ValueError naming the option unless ``cfg`` can run; returns the parsed ``(scheme, options)`` list.
    Runs before any work or file (bad names and options of the schemes included)."""
    from .. import schemes as S
    from ..probe import parse_scheme

    check_seed(cfg.seed)
    for k in ("depth", "width", "epochs", "batch_size", "probe_batch", "monitor_points", "threads"):
        if getattr(cfg, k) < 1:
            raise ValueError(f"--{k.replace('_', '-')} must be >= 1, got {getattr(cfg, k)}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ValueError(f"--lr must be a finite number > 0, got {cfg.lr}")
    if cfg.data == "cifar10" and not cfg.data_root:
        raise ValueError("--data cifar10 needs --data-root (a folder of CIFAR-10 python batches; nothing is "
                         "downloaded)")
    specs = [parse_scheme(s) for s in cfg.schemes]
    for name, opts in specs:
        S.check_options(S.get_scheme(name), opts)
    return specs


def run_demo(cfg: DemoConfig, out: str = DEFAULT_OUT, *, progress: Progress | None = None,
             command: str = "depthinit demo", stdout: TextIO | None = None) -> list[RunResult]:
    """Run the demo (see the module docstring); returns one :class:`RunResult` per initialization."""
    specs = check_config(cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg, specs, out, progress or Progress(), command, stdout or sys.stdout)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: DemoConfig, specs: list, out: str, progress: Progress, command: str, stdout: TextIO) -> list[RunResult]:
    from ..plan import plan as make_plan
    from ..probe import ProbeReport, probe
    from . import data as D
    from .models import describe, mlp

    t0 = time.perf_counter()
    split = D.load(cfg.data, seed=cfg.seed, root=cfg.data_root, n_train=cfg.n_train, n_test=cfg.n_test)
    os.makedirs(out, exist_ok=True)
    x_probe = split.x_train[: cfg.probe_batch]
    results: list[RunResult] = []
    probes = []
    for i, (name, opts) in enumerate(specs):
        t1 = time.perf_counter()
        label, dist = _run_label(name, opts)
        head = f"[{i + 1}/{len(specs)}] {label}"
        progress.update(f"{head}: init + probe")
        model = mlp(cfg.depth, cfg.width, in_features=split.n_features, out_features=split.n_classes)
        p = make_plan(model, name, seed=cfg.seed, **opts)
        p.apply()
        pr = probe(model, x_probe, plan=p, label=label, seed=cfg.seed).results[0]
        probes.append(pr)
        res = RunResult(label, p.scheme, dist, dict(opts), pr.verdict, pr.forward_gain, pr.backward_gain)
        log = os.path.join(out, f"monitor-{_slug(label)}.jsonl")
        train(model, split, cfg, res, log, lambda text, done, h=head, v=pr.verdict: progress.update(
            f"{h} ({v}) {text}", done))
        res.seconds = time.perf_counter() - t1
        loss, tr, te = res.final
        progress.update(f"{head} ({pr.verdict}): train acc {tr:.3f}, test acc {te:.3f}, loss {loss:.3g} "
                        f"[{res.seconds:.1f} s]", True)
        results.append(res)

    progress.update("writing figures and report")
    report = ProbeReport(probes, describe(report_model_stub(cfg, split)))
    title = f"{cfg.depth}-layer ReLU MLP (width {cfg.width}) on {split.name}"
    figures = {
        "probe": report.plot(os.path.join(out, "probe.png"), title=f"signal propagation at init: {title}"),
        "training": plot_training(results, os.path.join(out, "training.png"), f"training: {title}"),
        "monitor": plot_monitor(results, os.path.join(out, "monitor.png"), f"monitored during training: {title}"),
    }
    grads = plot_gradients(results, os.path.join(out, "gradients.png"), f"gradient std over training: {title}")
    if grads:
        figures["gradients"] = grads
    with open(os.path.join(out, "probe.json"), "w", encoding="utf-8") as f:
        f.write(report.to_json())
    seconds = time.perf_counter() - t0
    summary = {
        "command": command,
        "config": asdict(cfg),
        "data": repr(split),
        "seconds": seconds,
        "runs": [{k: v for k, v in asdict(r).items()} for r in results],
    }
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, allow_nan=True)
    path = write_report(out, cfg, split, report, results, figures, command, seconds)
    progress.update(f"done in {seconds:.1f} s", True)
    print(summary_table(results), file=stdout)
    print(f"\nreport: {path} (figures: {', '.join(os.path.basename(v) for v in figures.values())}; "
          f"logs: monitor-*.jsonl)", file=stdout)
    return results
