"""``depthinit repro deep-mlp``: the depth-aware initialization study of arXiv 2509.05018.

The paper trains a 54-layer fully connected ReLU network on CIFAR-10 with He, Xavier and its depth-aware
initialization (variance depending on the layer's depth through K: constant, increasing K > 0, decreasing
K < 0), each with normal and uniform weights, and reports that depth-aware init trains better, and that
"He with uniform weights stalls".

Here: the same 54-layer ReLU net (width configurable), every init × distribution × seed, trained with the
same optimizer and learning rate; train/test loss and accuracy per epoch, epochs to a target test accuracy,
and the run's outcome (trained / collapsed / stalled / diverged, :func:`~depthinit.applications.repro.common.outcome`).
The depth-aware family is depthinit's (``schedule=ramp``: ``m_l = exp(K·2l/(L(L+1)))``, total variance
gain e^K), since the paper's formula is not public. With ``base=he`` the constant case draws exactly He's
weights: the study checks that (weight digests) and trains it once.

Default data: scikit-learn's digits (bundled). ``--data cifar10 --data-dir PATH`` uses a local CIFAR-10.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from ...plots import figure
from ...report import json_safe, md_table
from ..training import TrainConfig, grad_norms, init_model
from . import common as C

STUDY = "deep-mlp"
PAPER = "arXiv 2509.05018 (Depth-Aware Initialization)"
FAMILIES = ("he", "xavier", "depth_constant", "depth_increasing", "depth_decreasing")
COLORS = {"he": "tab:blue", "xavier": "tab:orange", "depth_constant": "tab:gray", "depth_increasing": "tab:green",
          "depth_decreasing": "tab:red"}
DEFAULT_TARGET = {"digits": 0.8, "wine": 0.9, "cifar10": 0.3}


@dataclass(frozen=True)
class InitCase:
    """One initialization of the study: a label, its family, and the ``di.plan`` scheme and options."""

    label: str
    family: str
    scheme: str
    options: tuple[tuple[str, Any], ...]

    @property
    def opts(self) -> dict[str, Any]:
        return dict(self.options)


def init_cases(K_values: list[float], schedule: str) -> list[InitCase]:
    """He, Xavier, depth-aware constant, and depth-aware ±K for every K in ``K_values`` (magnitudes)."""
    relu = (("nonlinearity", "relu"),)
    cases = [InitCase("He", "he", "he", relu), InitCase("Xavier", "xavier", "xavier", ()),
             InitCase("depth-aware constant", "depth_constant", "depth_aware",
                      (("schedule", "constant"), ("K", 0.0), *relu))]
    for k in K_values:
        for sign, fam in ((1, "depth_increasing"), (-1, "depth_decreasing")):
            K = sign * abs(k)
            opts = (("schedule", schedule), ("K", K), *relu)
            cases.append(InitCase(f"depth-aware K={K:+g}", fam, "depth_aware", opts))
    return cases


def _resolve(args: argparse.Namespace) -> None:
    q = args.quick
    C.quick_defaults(args, width=(32, 128), seeds=(1, 3), epochs=(2, 40))
    args.target = args.target if args.target is not None else DEFAULT_TARGET[args.data]
    if args.data == "cifar10" and args.n_train is None:
        args.n_train, args.n_test = (1000, 500) if q else (10000, 2000)
    if not 0 < args.target <= 1:
        raise ValueError(f"--target must be in (0, 1], got {args.target}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")


def load_split(args: argparse.Namespace):
    from .. import data

    try:
        split = data.load(args.data, seed=0, root=args.data_dir, n_train=args.n_train, n_test=args.n_test)
    except FileNotFoundError as e:
        raise ValueError(str(e).replace("\n", " ")) from None
    if args.data != "cifar10" and (args.n_train or args.n_test):
        split.x_train, split.y_train = split.x_train[: args.n_train], split.y_train[: args.n_train]
        split.x_test, split.y_test = split.x_test[: args.n_test], split.y_test[: args.n_test]
    return split


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..models import mlp

    t0 = time.perf_counter()
    _resolve(args)
    C.set_threads(args.threads)
    Ks = C.parse_list(args.K, float, "--K")
    if any(k == 0 for k in Ks):
        raise ValueError("--K takes nonzero magnitudes (the constant case is always run)")
    dists = C.parse_list(args.distributions, str, "--distributions", ("normal", "uniform"))
    command = C.command_line(STUDY, parser, args)
    split = load_split(args)
    args.features = split.n_features
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch=args.batch, optimizer=args.optimizer)
    cases = init_cases(Ks, args.schedule)
    progress = C.Progress(len(cases) * len(dists) * args.seeds, args.quiet)

    runs: list[dict[str, Any]] = []
    trained: dict[str, dict] = {}  # weights digest -> run, so identical initial weights train once
    for dist in dists:
        for case in cases:
            for seed in range(args.seeds):
                model = mlp(args.depth, args.width, in_features=split.n_features, out_features=split.n_classes)
                torch.manual_seed(seed)  # nothing random should remain, but keep any default init reproducible
                digest = init_model(model, case.scheme, seed, distribution=dist, **case.opts)
                rec = {"label": case.label, "family": case.family, "scheme": case.scheme, "options": case.opts,
                       "distribution": dist, "seed": seed, "weights_digest": digest}
                if digest in trained:
                    same = trained[digest]
                    rec.update({k: copy.deepcopy(same[k]) for k in ("init", "curves", "outcome", "time_s")})
                    rec["same_weights_as"] = same["label"]
                else:
                    xb, yb = split.x_train[:256], split.y_train[:256]
                    norms = grad_norms(model, xb, yb)
                    with torch.no_grad():
                        gain = float(model[:-1](xb).pow(2).mean() / xb.pow(2).mean())
                    t = time.perf_counter()
                    curves = C.train(model, split, cfg, seed)
                    rec["init"] = {"grad_norm_first": norms[0], "grad_norm_last": norms[-1],
                                   "forward_gain": gain, "initial_train_loss": curves.train_loss[0]}
                    rec["curves"] = curves.to_dict()
                    rec["outcome"] = C.outcome(curves, split.n_classes, args.target).to_dict()
                    rec["time_s"] = round(time.perf_counter() - t, 2)
                    trained[digest] = rec
                runs.append(json_safe(rec))
                o = rec["outcome"]
                progress(f"{dist:7s} {case.label:24s} seed {seed}: {o['status']}, "
                         f"test acc {C.fmt(o['final_test_acc'])}")

    summary = summarize(runs, cases, dists)
    claims = judge(summary, runs, dists, args)
    files = figures(runs, summary, cases, dists, args)
    env = C.environment()
    data = {"study": STUDY, "paper": PAPER, "command": command, "config": _config(args, split),
            "stall_rule": C.STALL_RULE,
            "runs": runs, "summary": summary, "claims": [c.to_dict() for c in claims], "figures": files,
            "environment": env, "wall_s": round(time.perf_counter() - t0, 1)}
    C.write_outputs(args.out, data, report(data, claims))
    C.finish(args.out, command, files, t0)
    return 0


def _config(args: argparse.Namespace, split) -> dict[str, Any]:
    return {"data": args.data, "n_train": len(split.y_train), "n_test": len(split.y_test),
            "features": split.n_features, "classes": split.n_classes, "depth": args.depth, "width": args.width,
            "K": args.K, "schedule": args.schedule, "distributions": args.distributions, "seeds": args.seeds,
            "epochs": args.epochs, "lr": args.lr, "optimizer": args.optimizer, "momentum": 0.9 if args.optimizer ==
            "sgd" else None, "batch": args.batch, "target_test_acc": args.target, "quick": args.quick}


def summarize(runs: list[dict], cases: list[InitCase], dists: list[str]) -> list[dict[str, Any]]:
    out = []
    for dist in dists:
        for case in cases:
            rs = [r for r in runs if r["label"] == case.label and r["distribution"] == dist]
            o = [r["outcome"] for r in rs]
            acc_m, acc_s = C.mean_std(x["final_test_acc"] for x in o)
            best_m, best_s = C.mean_std(x["best_test_acc"] for x in o)
            hits = [x["epochs_to_target"] for x in o]
            out.append({
                "label": case.label, "family": case.family, "distribution": dist, "n": len(rs),
                **{s: sum(x["status"] == s for x in o) for s in C.STATUSES},
                "final_test_acc_mean": acc_m, "final_test_acc_std": acc_s,
                "best_test_acc_mean": best_m, "best_test_acc_std": best_s,
                "reached_target": sum(h is not None for h in hits),
                "median_epochs_to_target": C.median(h for h in hits if h is not None),
                "epochs_to_target": hits,
                "initial_train_loss": C.mean_std(r["init"]["initial_train_loss"] for r in rs)[0],
                "forward_gain": C.median(r["init"]["forward_gain"] for r in rs),
                "grad_norm_first": C.median(r["init"]["grad_norm_first"] for r in rs),
                "same_weights_as": rs[0].get("same_weights_as") if rs else None,
            })
    return out


def _row(summary: list[dict], family: str, dist: str) -> list[dict]:
    return [s for s in summary if s["family"] == family and s["distribution"] == dist]


def _score(s: dict) -> tuple[float, float]:
    """Higher is better: (mean best test accuracy, -median epochs to target)."""
    return (s["best_test_acc_mean"] or 0.0, -(s["median_epochs_to_target"] or 1e9))


def _failing(s: dict) -> int:
    return s["stalled"] + s["diverged"] + s["collapsed"]


def gain_ratios(runs: list[dict], family: str, base: str) -> list[float]:
    """Forward-gain ratio of ``family`` to ``base`` for every (distribution, seed) pair."""
    ref = {(r["distribution"], r["seed"]): r["init"]["forward_gain"] for r in runs if r["family"] == base}
    return [r["init"]["forward_gain"] / ref[k] for r in runs if r["family"] == family
            and (k := (r["distribution"], r["seed"])) in ref and ref[k]]


def judge(summary: list[dict], runs: list[dict], dists: list[str], args: argparse.Namespace) -> list[C.Claim]:
    """The paper's claims against what was measured (verdicts by explicit, stated rules)."""
    claims = []
    # 1. "He with uniform weights stalls"
    if "uniform" in dists:
        he_u = _row(summary, "he", "uniform")[0]
        n, bad = he_u["n"], he_u["stalled"]
        verdict = "agrees" if bad * 2 > n else ("partly" if bad else "disagrees")
        extra = ""
        if "normal" in dists:
            he_n = _row(summary, "he", "normal")[0]
            extra = (f"; He normal: {he_n['stalled']}/{he_n['n']} stalled, mean best test acc "
                     f"{C.fmt(he_n['best_test_acc_mean'])}")
        claims.append(C.Claim(PAPER, "He initialization with uniform weights stalls", verdict,
                              f"He uniform: {bad}/{n} runs stalled ({he_u['collapsed']} collapsed, {he_u['diverged']} "
                              f"diverged), mean best test acc {C.fmt(he_u['best_test_acc_mean'])}{extra}. He uniform "
                              "and He normal have the same variance 2/fan_in (uniform bound √(6/fan_in)), so "
                              "variance-preserving theory predicts no difference between them."))
    # 2. depth-aware (K != 0) beats He and Xavier, per distribution
    for dist in dists:
        da = [s for s in summary
              if s["distribution"] == dist and s["family"] in ("depth_increasing", "depth_decreasing")]
        if not da:
            continue
        best = max(da, key=_score)
        base = [_row(summary, f, dist)[0] for f in ("he", "xavier")]
        best_base = max(base, key=_score)
        m1, s1 = best["best_test_acc_mean"] or 0.0, best["best_test_acc_std"] or 0.0
        m0, s0 = best_base["best_test_acc_mean"] or 0.0, best_base["best_test_acc_std"] or 0.0
        margin = max(s1, s0, 0.01)  # a difference within one seed-to-seed standard deviation is a tie
        if m1 - m0 > margin and best["trained"] > 0:
            verdict = "agrees"
        elif m0 - m1 > margin:
            verdict = "disagrees"
        else:
            verdict = "inconclusive"
        claims.append(C.Claim(
            PAPER, f"depth-aware initialization outperforms He and Xavier on the {args.depth}-layer FC net ({dist})",
            verdict,
            f"best depth-aware case {best['label']}: best test acc {C.fmt_pm(m1, s1)}, {best['reached_target']}/"
            f"{best['n']} seeds reached {args.target:g} (median epoch {C.fmt(best['median_epochs_to_target'], 'g')}); "
            f"best baseline {best_base['label']}: {C.fmt_pm(m0, s0)}, {best_base['reached_target']}/{best_base['n']} "
            f"(median epoch {C.fmt(best_base['median_epochs_to_target'], 'g')}); difference {m1 - m0:+.3f} "
            f"(rule: a gap in mean best test accuracy larger than one seed standard deviation, at least 0.01, "
            f"decides, and the depth-aware case must have trained)"))
    # 3. depth-aware works with both distributions
    da_all = [s for s in summary if s["family"] in ("depth_increasing", "depth_decreasing")]
    if da_all:
        ok = [s for s in da_all if s["trained"] * 2 > s["n"]]
        verdict = "agrees" if len(ok) == len(da_all) else ("partly" if ok else "disagrees")
        claims.append(C.Claim(PAPER, "depth-aware initialization trains with both normal and uniform weights", verdict,
                              ", ".join(f"{s['label']} {s['distribution']}: {s['trained']}/{s['n']} trained"
                                        for s in da_all)))
    # 4. textbook: Xavier fails on 50+-layer ReLU nets
    xs = [s for s in summary if s["family"] == "xavier"]
    if xs:
        bad = sum(_failing(s) for s in xs)
        n = sum(s["n"] for s in xs)
        xg = C.median(s["forward_gain"] for s in xs)
        hg = C.median(s["forward_gain"] for s in summary if s["family"] == "he")
        ratio = C.median(gain_ratios(runs, "xavier", "he"))
        verdict = "agrees" if bad == n else ("partly" if bad else "disagrees")
        claims.append(C.Claim("textbook (seed 002)", "Xavier under ReLU decays the signal by 2× per layer: for 50+ "
                              "layers training fails", verdict,
                              f"Xavier: {bad}/{n} runs stalled, collapsed or diverged. Forward second-moment gain "
                              f"(last hidden layer / input) at init: Xavier {C.fmt(xg, '.2e')}, He {C.fmt(hg, '.2e')}; "
                              f"Xavier/He (same seed) = {C.fmt(ratio, '.3e')}, predicted {xavier_over_he(args):.3e} "
                              f"(≈ 2^-{args.depth - 2}: ReLU halves the second moment at every layer and Xavier does "
                              "not compensate)"))
    return claims


def xavier_over_he(args: argparse.Namespace) -> float:
    """Predicted ratio of Xavier's to He's forward second-moment gain through layers 1..L-1: the product of
    ``Var_xavier / Var_he = fan_in / (fan_in + fan_out)`` (zero-bias ReLU nets are positively homogeneous, and both
    schemes scale the same underlying random draws, so the ratio is exact, not only in expectation)."""
    dims = [args.features] + [args.width] * (args.depth - 1)
    return math.prod(a / (a + b) for a, b in zip(dims[:-1], dims[1:]))


def figures(runs: list[dict], summary: list[dict], cases: list[InitCase], dists: list[str],
            args: argparse.Namespace) -> list[str]:
    files = []
    fig, axes = figure(len(dists), 3, figsize=(15, 4.2 * len(dists)))
    keys = (("train_loss", "training loss (cross-entropy)"), ("train_acc", "training accuracy"),
            ("test_acc", "test accuracy"))
    for i, dist in enumerate(dists):
        losses: list[float | None] = []
        for case in cases:
            rs = [r for r in runs if r["label"] == case.label and r["distribution"] == dist]
            if not rs or rs[0].get("same_weights_as"):
                continue  # identical weights to a case already drawn (depth-aware constant = He)
            twins = [c.label for c in cases if any(r.get("same_weights_as") == case.label and r["label"] == c.label
                                                   for r in runs)]
            label = case.label + "".join(f" (= {t})" for t in twins)
            for j, (key, _) in enumerate(keys):
                ys = C.plot_mean_band(axes[i][j], rs, key, _color(case, cases), label)
                if key == "train_loss":
                    losses += [v for y in ys for v in y]
        loss0 = C.median(r["curves"]["train_loss"][0] for r in runs if r["distribution"] == dist)
        axes[i][0].axhline(C.STALL_LOSS_FRACTION * (loss0 or 1.0), color="k", lw=0.8, ls=":",
                           label=f"{C.STALL_LOSS_FRACTION:.0%} of the initial loss (stall line)")
        axes[i][2].axhline(args.target, color="k", lw=0.8, ls="--", label=f"target {args.target:g}")
        C.auto_log(axes[i][0], losses)
        for j, (key, name) in enumerate(keys):
            ax = axes[i][j]
            ax.set_title(f"{name} — {dist} weights")
            ax.set_xlabel("epoch")
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
            C.epoch_axis(ax)
            if key != "train_loss":
                ax.set_ylim(0, 1.02)
        axes[i][0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{args.depth}-layer ReLU MLP (width {args.width}) on {args.data}: mean over {args.seeds} seed(s), "
                 f"band = min..max over seeds; {args.optimizer} lr {args.lr:g}")
    files.append(C.save_figure(fig, args.out, "curves.png"))

    fig, axes = figure(1, 2, figsize=(14, 4.8))
    labels = [c.label for c in cases]
    width = 0.8 / len(dists)
    for k, dist in enumerate(dists):
        xs = [i + (k - (len(dists) - 1) / 2) * width for i in range(len(cases))]
        rows = [_row_label(summary, lab, dist) for lab in labels]
        bars = axes[0][0].bar(xs, [r["best_test_acc_mean"] or 0 for r in rows], width,
                              yerr=[r["best_test_acc_std"] or 0 for r in rows], label=f"{dist} weights", alpha=0.85,
                              capsize=3)
        color = bars.patches[0].get_facecolor()
        for x, lab in zip(xs, labels):
            pts = [r["outcome"]["best_test_acc"] or 0 for r in runs if r["label"] == lab and r["distribution"] == dist]
            axes[0][0].plot([x] * len(pts), pts, "k.", ms=4)
        for x, r in zip(xs, rows):
            reached = [e for e in r["epochs_to_target"] if e is not None]
            med = C.median(reached)
            axes[0][1].bar(x, med or 0, width, color=color, alpha=0.85, label=f"{dist} weights" if x == xs[0] else None)
            axes[0][1].plot([x] * len(reached), reached, "k.", ms=4)
            axes[0][1].text(x, (med or 0) + 0.3, f"{len(reached)}/{r['n']}", ha="center", va="bottom", fontsize=7)
    for ax in axes[0]:
        ax.set_xticks(range(len(cases)), labels, rotation=20, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper center", ncol=len(dists))
    axes[0][0].set_ylabel("best test accuracy over the epochs")
    axes[0][0].set_ylim(0, 1.15)
    axes[0][0].set_title("best test accuracy: mean ± std over seeds (dots: seeds)")
    axes[0][1].set_ylabel(f"epochs to test accuracy {args.target:g}")
    axes[0][1].set_ylim(0, args.epochs * 1.35 + 1)
    axes[0][1].set_title(f"epochs to target: median of the seeds that reached it (label: reached/seeds, "
                         f"{args.epochs} epochs)", fontsize=10)
    files.append(C.save_figure(fig, args.out, "summary.png"))
    return files


def _row_label(summary: list[dict], label: str, dist: str) -> dict:
    return next(s for s in summary if s["label"] == label and s["distribution"] == dist)


def _color(case: InitCase, cases: list[InitCase]):
    same = [c for c in cases if c.family == case.family]
    if len(same) == 1:
        return COLORS[case.family]
    import matplotlib

    cmap = matplotlib.colormaps["Greens" if case.family == "depth_increasing" else "Reds"]
    return cmap(0.45 + 0.5 * same.index(case) / (len(same) - 1))


def report(data: dict[str, Any], claims: list[C.Claim]) -> str:
    cfg = data["config"]
    rows = []
    for s in data["summary"]:
        rows.append([s["label"], s["distribution"], f"{s['trained']}/{s['collapsed']}/{s['stalled']}/{s['diverged']}",
                     C.fmt_pm(s["best_test_acc_mean"], s["best_test_acc_std"]),
                     C.fmt_pm(s["final_test_acc_mean"], s["final_test_acc_std"]),
                     f"{s['reached_target']}/{s['n']}", C.fmt(s["median_epochs_to_target"], "g"),
                     C.fmt(s["initial_train_loss"]), C.fmt(s["forward_gain"], ".2e"),
                     C.fmt(s["grad_norm_first"], ".2e")])
    lines = [
        f"The study of {PAPER}: a {cfg['depth']}-layer fully connected ReLU network (width {cfg['width']}) on "
        f"{cfg['data']} ({cfg['n_train']} train / {cfg['n_test']} test samples, {cfg['classes']} classes), "
        f"{cfg['optimizer']} (lr {cfg['lr']:g}{', momentum 0.9' if cfg['optimizer'] == 'sgd' else ''}, batch "
        f"{cfg['batch']}), {cfg['epochs']} epochs, {cfg['seeds']} seed(s) per case; target test accuracy "
        f"{cfg['target_test_acc']:g}.",
        "",
        f"Depth-aware init: depthinit's family `Var(W_l) = (2/fan_in) · m_l`, schedule `{cfg['schedule']}` for the "
        "±K cases (ramp: `m_l = exp(K·2l/(L(L+1)))`, end-to-end variance gain e^K). The paper's exact formula "
        "and training hyperparameters are not available, so this is a reproduction of its *claims*, not of "
        "its numbers. The constant case (`schedule=constant`) draws exactly He's weights (same weight digest): it is "
        "trained once and reported under both names.",
        "",
        f"Outcomes: {data['stall_rule']}.",
        "",
        "![curves](curves.png)",
        "",
        "![summary](summary.png)",
        "",
        "## Results",
        "",
    ]
    lines.append(md_table(["init", "weights", "trained/collapsed/stalled/diverged", "best test acc",
                           "final test acc", "reached target", "median epoch reached (of those)", "initial loss",
                           "forward gain at init", "‖∇W_1‖ at init"], rows))
    lines += ["", "Forward gain: second moment of the last hidden layer's output over the input's, at init, on 256 "
              "training samples. Mean-field theory gives 1 for He (finite width lowers the typical value: the log "
              "of the gain drifts down by O(1/width) per layer); the ratios to He are exact because the schemes "
              "scale the same random draws: Xavier/He = ∏ fan_in/fan_avg ≈ 2^-(L-2), ramp ±K: e^(±K·(L-1)/(L+1)). "
              "‖∇W_1‖: gradient norm of the first layer's weights on the same samples."]
    return C.study_report(f"Reproduction: depth-aware initialization on a {cfg['depth']}-layer MLP", data, claims,
                          lines)


def register(commands: dict) -> None:
    commands[STUDY] = ("the 54-layer MLP study of arXiv 2509.05018 (He, Xavier, depth-aware K; normal/uniform)", run)
