"""``depthinit repro std-sweep``: the initial-std sweep and Kaiming-vs-Xavier study of arXiv 2510.09423.

The paper sweeps the initial weight std logarithmically from 1e-4 to 1 on compact ReLU MLPs (MNIST, UCI
Wine), maps vanishing and exploding regimes, reports a broad stability band 1e-2 .. 1e-1, and finds that
Kaiming (fan-in) initialization converges faster and more stably than Xavier under ReLU.

Here: compact ReLU MLPs (``--depth`` Linear layers of ``--widths``) on scikit-learn's digits (in place of
MNIST) and wine; every weight drawn from N(0, std²) (``di.plan(model, "normal", std=...)``, biases zero) for
each std of the sweep and each seed. Per run: the gradient norm of every weight matrix at init, the loss
before and after training, the test accuracy. Regime of a run (rule :data:`REGIME_RULE`):

* ``exploding`` — the loss became non-finite, or training did not bring it to half the chance-level loss
  ln(C) and the loss at init was above 1.1·ln(C) (the output was large at init);
* ``stable`` — the final training loss is at most 0.5·ln(C);
* ``vanishing`` — otherwise (the output carried no signal at init and training did not recover in time).

The stable band is the contiguous range of stds where a majority of seeds are stable. Then He (Kaiming,
fan-in, gain √2) against Xavier on the same nets over more seeds: training-loss curves, epochs to a target
test accuracy, the mean training loss over the epochs (area under the curve: lower = faster), and the
spread across seeds.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from ...plots import figure
from ...report import json_safe, md_table
from ..training import TrainConfig, grad_norms, init_model
from . import common as C

STUDY = "std-sweep"
PAPER = "arXiv 2510.09423 (Weight Initialization and Variance Dynamics)"
DATASETS = ("digits", "wine")
DEFAULTS = {"digits": {"epochs": 20, "batch": 64, "target": 0.95}, "wine": {"epochs": 60, "batch": 32, "target": 0.95}}
PAPER_BAND = (1e-2, 1e-1)
STABLE_LOSS_FRACTION = 0.5
EXPLODE_INIT_FRACTION = 1.1
REGIME_RULE = ("**exploding**: the loss became non-finite, or the final training loss is above "
               f"{STABLE_LOSS_FRACTION}·ln(C) and the loss at init was above {EXPLODE_INIT_FRACTION}·ln(C); "
               f"**stable**: final training loss ≤ {STABLE_LOSS_FRACTION}·ln(C); **vanishing**: otherwise. The stable "
               "band is the contiguous range of stds where a majority of seeds are stable")
REGIME_COLORS = {"vanishing": "tab:blue", "stable": "tab:green", "exploding": "tab:red"}


def std_grid(lo: float, hi: float, per_decade: int) -> list[float]:
    """Log-spaced stds from ``lo`` to ``hi`` inclusive, ``per_decade`` points per factor of ten."""
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < --std-min < --std-max, got {lo}, {hi}")
    n = max(1, round(math.log10(hi / lo) * per_decade))
    return [float(f"{lo * (hi / lo) ** (i / n):.4g}") for i in range(n + 1)]


def regime(initial_loss: float | None, final_loss: float | None, n_classes: int) -> str:
    chance = math.log(n_classes)
    if initial_loss is None or final_loss is None or not math.isfinite(final_loss):
        return "exploding"
    if final_loss <= STABLE_LOSS_FRACTION * chance:
        return "stable"
    return "exploding" if initial_loss > EXPLODE_INIT_FRACTION * chance else "vanishing"


def stable_band(points: list[dict]) -> tuple[float, float] | None:
    """The widest contiguous run of stds whose majority regime is ``stable`` (None if there is none)."""
    best: tuple[float, float] | None = None
    start = None
    pts = sorted(points, key=lambda p: p["std"])
    for i, p in enumerate(pts + [None]):
        ok = p is not None and p["regime"] == "stable"
        if ok and start is None:
            start = i
        if not ok and start is not None:
            lo, hi = pts[start]["std"], pts[i - 1]["std"]
            if best is None or hi / lo > best[1] / best[0]:
                best = (lo, hi)
            start = None
    return best


def _resolve(args: argparse.Namespace) -> None:
    C.quick_defaults(args, widths=("64", "64,256"), points_per_decade=(1, 4), seeds=(1, 3), compare_seeds=(2, 10))
    if not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")


def _epochs(args: argparse.Namespace, ds: str) -> int:
    if args.epochs:
        return args.epochs
    return {"digits": 3, "wine": 8}[ds] if args.quick else DEFAULTS[ds]["epochs"]


def _model(ds_split, depth: int, width: int):
    from ..models import mlp

    return mlp(depth, width, in_features=ds_split.n_features, out_features=ds_split.n_classes)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .. import data

    t0 = time.perf_counter()
    _resolve(args)
    C.set_threads(args.threads)
    datasets = C.parse_list(args.datasets, str, "--datasets", DATASETS)
    widths = C.parse_list(args.widths, int, "--widths")
    stds = std_grid(args.std_min, args.std_max, args.points_per_decade)
    command = C.command_line(STUDY, parser, args)
    splits = {ds: data.load(ds, seed=0) for ds in datasets}
    n_sweep = len(datasets) * len(widths) * len(stds) * args.seeds
    progress = C.Progress(n_sweep + len(datasets) * 2 * args.compare_seeds, args.quiet)

    sweep: list[dict[str, Any]] = []
    for ds, split in splits.items():
        cfg = TrainConfig(epochs=_epochs(args, ds), lr=args.lr, batch=DEFAULTS[ds]["batch"])
        for width in widths:
            for std in stds:
                for seed in range(args.seeds):
                    model = _model(split, args.depth, width)
                    init_model(model, "normal", seed, std=std)
                    norms = grad_norms(model, split.x_train[:256], split.y_train[:256])
                    curves = C.train(model, split, cfg, seed)
                    o = C.outcome(curves, split.n_classes, DEFAULTS[ds]["target"])
                    final = curves.train_loss[-1]
                    rec = {"dataset": ds, "width": width, "std": std, "seed": seed, "grad_norms": norms,
                           "grad_norm_total": math.sqrt(sum(g * g for g in norms)),
                           "initial_loss": curves.train_loss[0], "final_train_loss": final,
                           "final_test_acc": curves.test_acc[-1], "status": o.status,
                           "regime": regime(curves.train_loss[0], final, split.n_classes)}
                    sweep.append(json_safe(rec))
                    progress(f"{ds:6s} w={width:<4d} std={std:<8.3g} seed {seed}: {rec['regime']}, "
                             f"loss {C.fmt(rec['final_train_loss'])}")
    points = sweep_points(sweep, datasets, widths, stds, splits)
    bands = {f"{ds}/w{w}": stable_band([p for p in points if p["dataset"] == ds and p["width"] == w])
             for ds in datasets for w in widths}

    compare: list[dict[str, Any]] = []
    for ds, split in splits.items():
        cfg = TrainConfig(epochs=_epochs(args, ds), lr=args.lr, batch=DEFAULTS[ds]["batch"])
        for scheme in ("he", "xavier"):
            for seed in range(args.compare_seeds):
                model = _model(split, args.depth, widths[0])
                init_model(model, scheme, seed)
                curves = C.train(model, split, cfg, seed)
                o = C.outcome(curves, split.n_classes, DEFAULTS[ds]["target"])
                tl = curves.train_loss
                rec = {"dataset": ds, "scheme": scheme, "seed": seed, "curves": curves.to_dict(),
                       "outcome": o.to_dict(), "loss_auc": sum(tl[1:]) / max(len(tl) - 1, 1),
                       "loss_increases": sum(b > a for a, b in zip(tl[1:], tl[2:]))}
                compare.append(json_safe(rec))
                progress(f"{ds:6s} {scheme:6s} seed {seed}: {o.status}, epochs to target {o.epochs_to_target}")
    comp_summary = compare_summary(compare, datasets)
    claims = judge(points, bands, comp_summary, datasets, widths, args)
    files = figures(sweep, points, bands, compare, datasets, widths, args)
    data_ = {"study": STUDY, "paper": PAPER, "command": command, "regime_rule": REGIME_RULE,
             "config": {"datasets": datasets, "depth": args.depth, "widths": widths, "stds": stds, "seeds": args.seeds,
                        "compare_seeds": args.compare_seeds, "lr": args.lr, "momentum": 0.9, "optimizer": "sgd",
                        "epochs": {ds: _epochs(args, ds) for ds in datasets},
                        "batch": {ds: DEFAULTS[ds]["batch"] for ds in datasets},
                        "target_test_acc": {ds: DEFAULTS[ds]["target"] for ds in datasets}, "quick": args.quick},
             "sweep": sweep, "points": points,
             "stable_bands": {k: (None if v is None else list(v)) for k, v in bands.items()},
             "paper_band": list(PAPER_BAND), "compare": compare, "compare_summary": comp_summary,
             "claims": [c.to_dict() for c in claims], "figures": files, "environment": C.environment(),
             "wall_s": round(time.perf_counter() - t0, 1)}
    C.write_outputs(args.out, data_, report(data_, claims))
    C.finish(args.out, command, files, t0)
    return 0


def sweep_points(sweep: list[dict], datasets, widths, stds, splits) -> list[dict]:
    """One row per (dataset, width, std): majority regime and medians over seeds."""
    out = []
    for ds in datasets:
        for w in widths:
            for s in stds:
                rs = [r for r in sweep if r["dataset"] == ds and r["width"] == w and r["std"] == s]
                counts = {k: sum(r["regime"] == k for r in rs) for k in REGIME_COLORS}
                maj = max(counts, key=lambda k: (counts[k], k == "stable"))
                if counts[maj] * 2 <= len(rs):
                    maj = "mixed"
                out.append({"dataset": ds, "width": w, "std": s, "regime": maj, "regime_counts": counts,
                            "he_std": math.sqrt(2.0 / w), "chance_loss": math.log(splits[ds].n_classes),
                            "grad_norm_total": C.median(r["grad_norm_total"] for r in rs),
                            "grad_norm_first": C.median(r["grad_norms"][0] for r in rs),
                            "grad_norm_last": C.median(r["grad_norms"][-1] for r in rs),
                            "initial_loss": C.median(r["initial_loss"] for r in rs),
                            "final_train_loss": C.median(r["final_train_loss"] for r in rs),
                            "final_test_acc": C.median(r["final_test_acc"] for r in rs)})
    return out


def compare_summary(compare: list[dict], datasets) -> list[dict]:
    out = []
    for ds in datasets:
        for scheme in ("he", "xavier"):
            rs = [r for r in compare if r["dataset"] == ds and r["scheme"] == scheme]
            hits = [r["outcome"]["epochs_to_target"] for r in rs]
            auc_m, auc_s = C.mean_std(r["loss_auc"] for r in rs)
            fl_m, fl_s = C.mean_std(r["outcome"]["final_train_loss"] for r in rs)
            acc_m, acc_s = C.mean_std(r["outcome"]["final_test_acc"] for r in rs)
            out.append({"dataset": ds, "scheme": scheme, "n": len(rs),
                        "reached_target": sum(h is not None for h in hits),
                        "epochs_to_target": hits, "median_epochs_to_target": C.median(hits),
                        "mean_epochs_to_target": C.mean_std(hits)[0],
                        "loss_auc_mean": auc_m, "loss_auc_std": auc_s, "final_train_loss_mean": fl_m,
                        "final_train_loss_std": fl_s, "final_test_acc_mean": acc_m, "final_test_acc_std": acc_s,
                        "loss_increases_mean": C.mean_std(r["loss_increases"] for r in rs)[0],
                        "diverged": sum(r["outcome"]["status"] == "diverged" for r in rs)})
    return out


def _band_text(b: tuple[float, float] | None) -> str:
    return "none" if b is None else f"{b[0]:.3g} .. {b[1]:.3g}"


def _he_units(b: tuple[float, float] | None, width: int) -> str:
    """The band in units of the He std √(2/width) of the hidden layers."""
    he = math.sqrt(2.0 / width)
    return "none" if b is None else f"{b[0] / he:.2g}× .. {b[1] / he:.2g}×"


def judge(points, bands, comp, datasets, widths, args) -> list[C.Claim]:
    claims = []
    # 1. the stable band
    w0 = widths[0]
    texts, verdicts = [], []
    for ds in datasets:
        b = bands[f"{ds}/w{w0}"]
        texts.append(f"{ds} (width {w0}): {_band_text(b)}")
        if b is None:
            verdicts.append("disagrees")
        elif b[0] <= PAPER_BAND[0] and b[1] >= PAPER_BAND[1]:
            verdicts.append("agrees")
        elif b[1] >= PAPER_BAND[0] and b[0] <= PAPER_BAND[1]:
            verdicts.append("partly")
        else:
            verdicts.append("disagrees")
    verdict = verdicts[0] if len(set(verdicts)) == 1 else "partly"
    he = math.sqrt(2.0 / w0)
    extra = ""
    if len(widths) > 1:
        extra = "; other widths: " + ", ".join(f"{ds} w{w}: {_band_text(bands[f'{ds}/w{w}'])}"
                                               for ds in datasets for w in widths[1:])
    units = "; ".join(f"{k.replace('/w', ' width ')}: {_he_units(v, int(k.split('/w')[1]))}"
                      for k, v in bands.items())
    inside = [ds for ds in datasets if (b := bands[f"{ds}/w{w0}"]) is not None and b[0] <= he <= b[1]]
    where = (f"lies inside the band ({', '.join(inside)})" if inside else "is not inside any measured band")
    claims.append(C.Claim(PAPER, "a broad stability band of initial std between 1e-2 and 1e-1 for compact ReLU MLPs",
                          verdict, f"stable band {'; '.join(texts)}{extra}. The He std √(2/width) = {he:.3g} {where}. "
                          f"In units of the He std the bands are {units}: the band follows the fan-in, "
                          "and where it sits in absolute std depends on the layer widths (and on the depth), so "
                          "a band quoted in absolute std carries over only to nets of the paper's sizes (rule: agrees "
                          "if our band contains [1e-2, 1e-1], partly if it overlaps it)."))
    # 2. vanishing and exploding regimes exist at the ends of the sweep
    ends = []
    for ds in datasets:
        pts = sorted((p for p in points if p["dataset"] == ds and p["width"] == w0), key=lambda p: p["std"])
        ends.append((ds, pts[0]["regime"], pts[-1]["regime"], pts[0]["std"], pts[-1]["std"]))
    ok = all(lo == "vanishing" and hi == "exploding" for _, lo, hi, _, _ in ends)
    claims.append(C.Claim(PAPER, "the sweep maps a vanishing regime (small std) and an exploding regime (large std)",
                          "agrees" if ok else "partly",
                          "; ".join(f"{ds}: std {a:.3g} → {lo}, std {b:.3g} → {hi}" for ds, lo, hi, a, b in ends)))
    # 3. Kaiming vs Xavier
    parts, wins = [], []
    for ds in datasets:
        he_, xa = (next(c for c in comp if c["dataset"] == ds and c["scheme"] == s) for s in ("he", "xavier"))
        faster = (he_["loss_auc_mean"] or math.inf) < (xa["loss_auc_mean"] or math.inf)
        steadier = (he_["loss_auc_std"] or 0) <= (xa["loss_auc_std"] or 0)
        earlier = (he_["mean_epochs_to_target"] or math.inf) <= (xa["mean_epochs_to_target"] or math.inf)
        wins.append((faster, steadier, earlier))
        parts.append(f"{ds}: mean training loss over the epochs He "
                     f"{C.fmt_pm(he_['loss_auc_mean'], he_['loss_auc_std'])} "
                     f"vs Xavier {C.fmt_pm(xa['loss_auc_mean'], xa['loss_auc_std'])}; mean epochs to test acc "
                     f"{DEFAULTS[ds]['target']} He {C.fmt(he_['mean_epochs_to_target'], '.1f')} "
                     f"({he_['reached_target']}/{he_['n']}) vs Xavier {C.fmt(xa['mean_epochs_to_target'], '.1f')} "
                     f"({xa['reached_target']}/{xa['n']})")
    all_fast = all(w[0] for w in wins)
    all_steady = all(w[1] for w in wins)
    verdict = "agrees" if all_fast and all_steady else ("partly" if any(w[0] for w in wins) else "disagrees")
    claims.append(C.Claim(PAPER, "Kaiming (fan-in) converges faster and more stably than Xavier under ReLU", verdict,
                          "; ".join(parts) + f" (rule: faster = lower mean training loss over the epochs, more stably "
                          f"= smaller seed-to-seed spread of it; {args.compare_seeds} seeds, width {w0})"))
    return claims


def _shade(ax, pts: list[dict]) -> None:
    pts = sorted(pts, key=lambda p: p["std"])
    for i, p in enumerate(pts):
        lo = math.sqrt(p["std"] * pts[i - 1]["std"]) if i else p["std"] / 1.3
        hi = math.sqrt(p["std"] * pts[i + 1]["std"]) if i + 1 < len(pts) else p["std"] * 1.3
        ax.axvspan(lo, hi, color=REGIME_COLORS.get(p["regime"], "0.8"), alpha=0.10, lw=0)


def figures(sweep, points, bands, compare, datasets, widths, args) -> list[str]:
    files = []
    fig, axes = figure(len(datasets), 3, figsize=(16, 4.4 * len(datasets)))
    styles = ["-o", "--s", ":^", "-.v"]
    for i, ds in enumerate(datasets):
        _shade(axes[i][0], [p for p in points if p["dataset"] == ds and p["width"] == widths[0]])
        _shade(axes[i][1], [p for p in points if p["dataset"] == ds and p["width"] == widths[0]])
        _shade(axes[i][2], [p for p in points if p["dataset"] == ds and p["width"] == widths[0]])
        for k, w in enumerate(widths):
            pts = sorted((p for p in points if p["dataset"] == ds and p["width"] == w), key=lambda p: p["std"])
            x = [p["std"] for p in pts]
            st = styles[k % len(styles)]
            axes[i][0].plot(x, [p["grad_norm_first"] or float("nan") for p in pts], st, color="tab:purple", ms=4,
                            label=f"first layer, width {w}")
            axes[i][0].plot(x, [p["grad_norm_last"] or float("nan") for p in pts], st, color="tab:brown", ms=4,
                            label=f"last layer, width {w}")
            axes[i][1].plot(x, [p["final_train_loss"] if p["final_train_loss"] is not None else float("nan")
                                for p in pts], st, color="k", ms=4, label=f"after training, width {w}")
            axes[i][1].plot(x, [p["initial_loss"] or float("nan") for p in pts], st, color="0.6", ms=3,
                            label=f"at init, width {w}")
            axes[i][2].plot(x, [p["final_test_acc"] if p["final_test_acc"] is not None else float("nan")
                                for p in pts], st, color="k", ms=4, label=f"width {w}")
            for ax in axes[i]:
                ax.axvline(math.sqrt(2.0 / w), color="tab:green", lw=1.0, ls=st[:-1] or "-", alpha=0.9,
                           label=f"He std √(2/{w})")
        chance = next(p["chance_loss"] for p in points if p["dataset"] == ds)
        axes[i][1].axhline(chance, color="tab:blue", lw=0.8, ls=":", label="ln(C): chance")
        axes[i][1].axhline(STABLE_LOSS_FRACTION * chance, color="tab:green", lw=0.8, ls=":",
                           label=f"{STABLE_LOSS_FRACTION}·ln(C): stable below")
        for ax in axes[i]:
            ax.set_xscale("log")
            ax.axvspan(*PAPER_BAND, ymin=0, ymax=0.03, color="k", alpha=0.6, label="paper's stable band")
            ax.set_xlabel("initial weight std (log scale)")
            ax.grid(alpha=0.3, lw=0.5)
        axes[i][0].set_yscale("log")
        axes[i][0].set_ylabel("‖∇W‖ at init (log)")
        axes[i][0].set_title(f"{ds}: gradient norm at init")
        axes[i][1].set_yscale("log")
        axes[i][1].set_ylabel("training cross-entropy (log)")
        axes[i][1].set_title(f"{ds}: loss at init and after training")
        axes[i][2].set_ylim(0, 1.02)
        axes[i][2].set_ylabel("test accuracy after training")
        axes[i][2].set_title(f"{ds}: test accuracy (band colour: regime, width {widths[0]})")
        for ax in axes[i]:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"Initial-std sweep, {args.depth}-layer ReLU MLP, N(0, std²) weights; median over {args.seeds} "
                 "seed(s); background: blue vanishing, green stable, red exploding")
    files.append(C.save_figure(fig, args.out, "sweep.png"))

    fig, axes = figure(1, len(datasets), figsize=(7 * len(datasets), 4.4))
    for j, ds in enumerate(datasets):
        ax = axes[0][j]
        for scheme, color in (("he", "tab:blue"), ("xavier", "tab:orange")):
            rs = [r for r in compare if r["dataset"] == ds and r["scheme"] == scheme]
            name = "Kaiming/He (fan-in)" if scheme == "he" else "Xavier"
            C.plot_mean_band(ax, rs, "train_loss", color, f"{name}: mean of {len(rs)} seeds", f"{name}: min..max",
                             lw=1.8, alpha=0.18)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        C.epoch_axis(ax)
        ax.set_ylabel("training cross-entropy (log)")
        ax.set_title(f"{ds}: Kaiming vs Xavier, {args.depth}-layer ReLU MLP, width {widths[0]}")
        ax.grid(alpha=0.3, lw=0.5)
        ax.legend(fontsize=8)
    files.append(C.save_figure(fig, args.out, "kaiming_vs_xavier.png"))
    return files


def report(d: dict[str, Any], claims: list[C.Claim]) -> str:
    cfg = d["config"]
    lines = [
        f"The std sweep of {PAPER}, on compact ReLU MLPs ({cfg['depth']} Linear layers, widths "
        f"{', '.join(map(str, cfg['widths']))}) on scikit-learn's digits (for MNIST) and wine: every weight "
        f"N(0, std²), biases zero, {len(cfg['stds'])} stds from {cfg['stds'][0]:g} to {cfg['stds'][-1]:g}, "
        f"{cfg['seeds']} seed(s) each; SGD lr {cfg['lr']:g} momentum 0.9, epochs "
        + ", ".join(f"{k} {v}" for k, v in cfg["epochs"].items())
        + ", batch " + ", ".join(f"{k} {v}" for k, v in cfg["batch"].items()) + ".",
        "",
        f"Regimes: {d['regime_rule']}.",
        "",
        "![sweep](sweep.png)",
        "",
        "## Stable band",
        "",
        md_table(["data / width", "stable band (std)", "He std √(2/width)", "band / He std", "paper"],
                   [[k, _band_text(v), f"{math.sqrt(2.0 / int(k.split('/w')[1])):.3g}",
                     _he_units(v, int(k.split("/w")[1])), "1e-2 .. 1e-1"] for k, v in d["stable_bands"].items()]),
        "",
        "## Sweep (median over seeds)",
        "",
        md_table(["data", "width", "std", "regime (v/s/e seeds)", "‖∇W_1‖ at init", "loss at init",
                    "final train loss", "final test acc"],
                   [[p["dataset"], p["width"], f"{p['std']:.3g}",
                     f"{p['regime']} ({p['regime_counts']['vanishing']}/{p['regime_counts']['stable']}/"
                     f"{p['regime_counts']['exploding']})",
                     C.fmt(p["grad_norm_first"], ".2e"), C.fmt(p["initial_loss"], ".3g"),
                     C.fmt(p["final_train_loss"], ".3g"), C.fmt(p["final_test_acc"])] for p in d["points"]]),
        "",
        "## Kaiming (fan-in) vs Xavier under ReLU",
        "",
        "![kaiming vs xavier](kaiming_vs_xavier.png)",
        "",
        md_table(["data", "init", "seeds", "mean train loss over epochs", "final train loss", "final test acc",
                    "reached target", "mean epochs to target", "epochs with a loss increase"],
                   [[c["dataset"], "Kaiming/He" if c["scheme"] == "he" else "Xavier", c["n"],
                     C.fmt_pm(c["loss_auc_mean"], c["loss_auc_std"], ".4f"),
                     C.fmt_pm(c["final_train_loss_mean"], c["final_train_loss_std"], ".4f"),
                     C.fmt_pm(c["final_test_acc_mean"], c["final_test_acc_std"]),
                     f"{c['reached_target']}/{c['n']}", C.fmt(c["mean_epochs_to_target"], ".1f"),
                     C.fmt(c["loss_increases_mean"], ".1f")] for c in d["compare_summary"]]),
    ]
    return C.study_report("Reproduction: initial-std sweep and Kaiming vs Xavier on compact ReLU MLPs", d, claims,
                          lines)


def register(commands: dict) -> None:
    commands[STUDY] = ("the std sweep (1e-4..1) and Kaiming-vs-Xavier study of arXiv 2510.09423 (digits, wine)",
                       run)
