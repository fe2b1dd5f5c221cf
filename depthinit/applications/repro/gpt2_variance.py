"""``depthinit repro gpt2-variance``: per-layer Q/K/V weight variance of a GPT-2-style model in training.

arXiv 2510.09423 trains a 12-layer GPT-2-style model from scratch and tracks the variance of every layer's
Q, K and V projection weights: they "equilibrate into narrow, depth-dependent bands: shallow layers expand
rapidly while deeper layers change more gradually".

Here: :func:`depthinit.applications.models.gpt2` (12 layers by default, small width so it trains on a CPU in minutes),
initialized with the ``gpt2`` scheme (N(0, 0.02²), residual projections 0.02/√(2L)), trained byte-level
(vocabulary 256) with AdamW on a corpus that ships with Python itself: the standard library's ``.py``
sources (:func:`stdlib_corpus`: files under ``os.path.dirname(os.__file__)`` in sorted path order,
``site-packages`` and ``__pycache__`` left out, cut at a fixed byte budget). A
:class:`~depthinit.monitor.VarianceMonitor` with ``split_qkv=True`` records the std of each layer's Q, K and
V weights every ``--every`` steps.

Learning rate and weight decay: under AdamW a weight's std relaxes toward its equilibrium with the time
constant ``1 / (2 · lr · weight_decay)`` steps (updates of size ~lr per element against a decay of
``lr · weight_decay`` per step). With GPT-2's usual 1e-3 and 0.1 that is 5,000 steps, beyond a CPU budget; the
defaults here (2e-3, 1.0) give 250 steps, so the 1,500 default steps span six time constants and an
equilibration, if there is one, is visible. ``--lr 1e-3 --weight-decay 0.1`` runs the usual setting.

Measured per layer and part: the band reached (min..max of the std over the last 20% of the steps), the
relative change of the std early on (at 10% of the steps), and the step at which half of the total change
was reached. Learning rate: linear warm-up then constant (default), so that a flattening of the curves is
not just the learning rate decaying (``--lr-schedule cosine`` is available).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F

from ...kernels.contract import check_seed
from ...plots import figure
from ...report import md_table
from ...roles import is_bias_name
from . import common as C

STUDY = "gpt2-variance"
PAPER = "arXiv 2510.09423 (Weight Initialization and Variance Dynamics)"
PARTS = ("q", "k", "v")
SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__"}
TAIL = 0.2  # the band is measured over the last 20% of the monitored steps
EARLY = 0.1  # "early" expansion: relative change at 10% of the steps
SETTLED = 0.1  # settled: the trend of the last 20% of the steps is at most 10% of the total change


def stdlib_corpus(budget: int, root: str | None = None) -> tuple[bytes, dict[str, Any]]:
    """The standard library's ``.py`` sources, concatenated in sorted path order, cut at ``budget`` bytes.

    Returns ``(data, info)``; ``info`` has the root, the number of files read, the byte count, the SHA-256
    of the data and the Python version (the corpus is a function of the Python version and the budget).

    Example:
        >>> data, info = stdlib_corpus(100_000); len(data)
        100000
    """
    if budget < 1:
        raise ValueError(f"corpus budget must be >= 1 byte, got {budget}")
    root = root or os.path.dirname(os.__file__)
    chunks, size, n_files = [], 0, 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            try:
                with open(os.path.join(dirpath, name), "rb") as f:
                    b = f.read()
            except OSError:
                continue
            chunks.append(b)
            size += len(b)
            n_files += 1
            if size >= budget:
                break
        if size >= budget:
            break
    data = b"".join(chunks)[:budget]
    if len(data) < budget:
        raise ValueError(f"the standard library under {root!r} holds only {len(data):,} bytes of .py source; "
                         f"lower --corpus-bytes")
    info = {"root": root, "files": n_files, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "python": sys.version.split()[0]}
    return data, info


def _resolve(args: argparse.Namespace) -> None:
    C.quick_defaults(args, n_embd=(32, 64), block=(32, 64), steps=(40, 1500), every=(4, 10),
                     corpus_bytes=(200_000, 2_000_000))
    check_seed(args.seed)
    if args.n_embd % args.n_head:
        raise ValueError(f"--n-embd {args.n_embd} must be divisible by --n-head {args.n_head}")
    if not args.lr > 0 or args.weight_decay < 0 or not 0 <= args.warmup < 1:
        raise ValueError("need --lr > 0, --weight-decay >= 0 and 0 <= --warmup < 1")


def time_constant(args: argparse.Namespace) -> float | None:
    """AdamW's relaxation time of the weight norm, ``1 / (2 · lr · weight_decay)`` steps (None without decay)."""
    return 1.0 / (2 * args.lr * args.weight_decay) if args.weight_decay > 0 else None


def lr_at(step: int, args: argparse.Namespace) -> float:
    warm = max(1, int(args.warmup * args.steps))
    if step < warm:
        return args.lr * (step + 1) / warm
    if args.lr_schedule == "constant":
        return args.lr
    t = (step - warm) / max(1, args.steps - warm)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def _batch(data: torch.Tensor, block: int, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    ix = torch.randint(len(data) - block - 1, (batch,), generator=gen)
    x = torch.stack([data[i : i + block + 1] for i in ix.tolist()])
    return x[:, :-1], x[:, 1:]


@torch.no_grad()
def _eval(model, data: torch.Tensor, block: int, n: int = 8) -> float:
    model.eval()
    gen = torch.Generator().manual_seed(1234)
    losses = []
    for _ in range(n):
        x, y = _batch(data, block, 16, gen)
        losses.append(F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item())
    model.train()
    return sum(losses) / len(losses)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ... import plan
    from ...monitor import VarianceMonitor
    from ..models import gpt2

    t0 = time.perf_counter()
    _resolve(args)
    C.set_threads(args.threads)
    command = C.command_line(STUDY, parser, args)
    raw, corpus = stdlib_corpus(args.corpus_bytes)
    data = torch.frombuffer(bytearray(raw), dtype=torch.uint8).long()
    n_val = max(len(data) // 10, args.block + 2)
    train, val = data[:-n_val], data[-n_val:]

    model = gpt2(args.n_layer, args.n_embd, args.n_head, vocab=256, block=args.block)
    p = plan(model, args.init, seed=args.seed)
    p.apply()
    init_std = {r.name: r.std for r in p.rows}
    args.init_std = next((v for k, v in init_std.items() if k.endswith("h.0.attn.c_attn.weight")), math.nan)
    decay = [q for n, q in model.named_parameters() if q.dim() >= 2]
    no_decay = [q for n, q in model.named_parameters() if q.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95), foreach=True)
    mon = VarianceMonitor(model, every=args.every, weights=True, grads=False, activations=False, update=None,
                          include=r"attn\.c_attn$", split_qkv=True, alerts=False)
    gen = torch.Generator().manual_seed(args.seed)
    loss_curve, val_curve = [], []
    eval_every = max(args.steps // 20, 1)
    progress = C.Progress(20, args.quiet)
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args)
        x, y = _batch(train, args.block, args.batch, gen)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        mon.step()
        loss_curve.append(loss.item())
        if (step + 1) % eval_every == 0 or step + 1 == args.steps:
            val_curve.append((step + 1, _eval(model, val, args.block)))
            if len(val_curve) <= 20:
                progress(f"step {step + 1}/{args.steps}: train loss {loss.item():.3f}, val {val_curve[-1][1]:.3f}")
    mon.close()
    records = [r for r in mon.history if r.get("qkv") in PARTS and r.get("head") is None
               and not is_bias_name(r["name"]) and r["kind"] == "weight"]
    if not records:
        raise RuntimeError("the monitor recorded no Q/K/V weight rows (split_qkv)")
    series = qkv_series(records)
    layers = analyze(series, args)
    claims = judge(layers, args)
    files = figures(records, series, layers, loss_curve, val_curve, args)
    d = {"study": STUDY, "paper": PAPER, "command": command,
         "config": {"n_layer": args.n_layer, "n_embd": args.n_embd, "n_head": args.n_head, "block": args.block,
                    "batch": args.batch, "steps": args.steps, "every": args.every, "lr": args.lr,
                    "weight_decay": args.weight_decay, "warmup": args.warmup, "lr_schedule": args.lr_schedule,
                    "optimizer": "adamw(0.9, 0.95), grad clip 1.0", "init": args.init, "init_qkv_std": args.init_std,
                    "adamw_time_constant_steps": time_constant(args),
                    "seed": args.seed, "quick": args.quick, "params": sum(q.numel() for q in model.parameters())},
         "corpus": corpus, "train_loss": loss_curve, "val_loss": [list(v) for v in val_curve],
         "qkv_std": [{"layer": lay, "part": part, "steps": [t for t, _ in s], "std": [v for _, v in s]}
                     for (lay, part), s in sorted(series.items())],
         "layers": layers, "claims": [c.to_dict() for c in claims], "figures": files,
         "environment": C.environment(), "wall_s": round(time.perf_counter() - t0, 1)}
    C.write_outputs(args.out, d, report(d, claims))
    C.finish(args.out, command, files, t0)
    return 0


def qkv_series(records: list[dict]) -> dict[tuple[int, str], list[tuple[int, float]]]:
    """``{(layer, part): [(step, std), ...]}`` sorted by step."""
    out: dict[tuple[int, str], list[tuple[int, float]]] = {}
    for r in records:
        out.setdefault((int(r["layer"]), r["qkv"]), []).append((int(r["step"]), float(r["std"])))
    for v in out.values():
        v.sort()
    return out


def _at(s: list[tuple[int, float]], frac: float) -> float:
    """The std at the monitored step closest to ``frac`` of the run."""
    last = s[-1][0]
    return min(s, key=lambda p: abs(p[0] - frac * last))[1]


def analyze(series: dict[tuple[int, str], list[tuple[int, float]]], args: argparse.Namespace) -> list[dict]:
    """Per (layer, part): initial and final std, the band of the last 20%, early change, half-change step."""
    rows = []
    for (layer, part), s in sorted(series.items()):
        s0, sT = s[0][1], s[-1][1]
        tail = [v for t, v in s if t >= (1 - TAIL) * s[-1][0]]
        total = sT - s0
        half = next((t for t, v in s if total and (v - s0) / total >= 0.5), None)
        rows.append({"layer": layer, "part": part, "std_init": s0, "std_final": sT,
                     "band_lo": min(tail), "band_hi": max(tail),
                     "band_rel_width": (max(tail) - min(tail)) / (sum(tail) / len(tail)),
                     "tail_fraction": tail_trend(s) / abs(total) if total else None,
                     "growth": sT / s0 if s0 else None,
                     "early_rel_change": (_at(s, EARLY) - s0) / s0 if s0 else None,
                     "half_change_step": half})
    return rows


def tail_trend(s: list[tuple[int, float]]) -> float:
    """The change of the std over the last ``TAIL`` of the steps by its least-squares trend line: slope ×
    span (the noise of the single records averages out, unlike a min..max range)."""
    pts = [(t, v) for t, v in s if t >= (1 - TAIL) * s[-1][0]]
    if len(pts) < 2:
        return 0.0
    mt = sum(t for t, _ in pts) / len(pts)
    mv = sum(v for _, v in pts) / len(pts)
    stt = sum((t - mt) ** 2 for t, _ in pts)
    slope = sum((t - mt) * (v - mv) for t, v in pts) / stt if stt else 0.0
    return abs(slope) * (pts[-1][0] - pts[0][0])


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties); None for fewer than 3 points or a constant input."""
    if len(x) < 3:
        return None

    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    syy = math.sqrt(sum((b - my) ** 2 for b in ry))
    return sxy / (sxx * syy) if sxx and syy else None


def judge(layers: list[dict], args: argparse.Namespace) -> list[C.Claim]:
    claims = []
    rhos, texts, fastest_first = {}, [], 0
    for part in PARTS:
        rows = [r for r in layers if r["part"] == part]
        rho = spearman([r["layer"] for r in rows], [r["early_rel_change"] for r in rows])
        rhos[part] = rho
        hi = max(rows, key=lambda r: r["early_rel_change"])
        lo = min(rows, key=lambda r: r["early_rel_change"])
        fastest_first += hi["layer"] == rows[0]["layer"]
        texts.append(f"{part.upper()}: change of the std at {EARLY:.0%} of training largest in layer {hi['layer']} "
                     f"({hi['early_rel_change']:+.1%}), smallest in layer {lo['layer']} "
                     f"({lo['early_rel_change']:+.1%}), layer 1 {rows[0]['early_rel_change']:+.1%}, layer "
                     f"{rows[-1]['layer']} {rows[-1]['early_rel_change']:+.1%}, Spearman ρ(layer, change) = "
                     f"{C.fmt(rho, '+.2f')}")
    neg = [p for p, r in rhos.items() if r is not None and r <= -0.5]
    pos = [p for p, r in rhos.items() if r is not None and r >= 0.5]
    if len(neg) == 3:
        verdict = "agrees"
    elif len(pos) >= 2:
        verdict = "disagrees"
    elif fastest_first >= 2:
        verdict = "partly"
    else:
        verdict = "inconclusive"
    claims.append(C.Claim(PAPER, "shallow layers' Q/K/V weight variance expands rapidly, deeper layers change more "
                          "gradually", verdict, "; ".join(texts) + " (rule: agrees if ρ ≤ −0.5 for Q, K and V; "
                          "disagrees if ρ ≥ +0.5 for two of them; partly if layer 1 expands most for two of the three; "
                          "inconclusive otherwise)"))
    settled = [r for r in layers if r["tail_fraction"] is not None and r["tail_fraction"] <= SETTLED]
    finals = [r["std_final"] for r in layers]
    spread = max(finals) / min(finals)
    rho_final = spearman([r["layer"] for r in layers], finals)
    n = len(layers)
    verdict = ("agrees" if len(settled) * 4 >= 3 * n and spread > 1.1 else
               "partly" if settled and spread > 1.1 else "disagrees")
    claims.append(C.Claim(PAPER, "per-layer Q/K/V variance equilibrates into narrow, depth-dependent bands", verdict,
                          f"{len(settled)}/{n} layer-parts settled (the trend line of their std over the last "
                          f"{TAIL:.0%} of the steps moves it by at most {SETTLED:.0%} of its total change since init; "
                          "median "
                          f"{C.fmt(C.median(r['tail_fraction'] for r in layers), '.0%')}; a steady drift would give "
                          f"{TAIL:.0%}); the final stds span a factor {spread:.2f} across layers and parts (from "
                          f"{min(finals):.4f} to {max(finals):.4f}; init std {args.init_std:g}), Spearman ρ(layer, "
                          f"final std) = {C.fmt(rho_final, '+.2f')}; learning rate {args.lr_schedule} after warm-up "
                          f"(rule: agrees if at least 3/4 of the layer-parts settled and the final stds differ by more "
                          f"than 10%)"))
    return claims


def figures(records, series, layers, loss_curve, val_curve, args) -> list[str]:
    from ... import plots

    files = []
    fig = plots.qkv(records, "weight", "std")
    fig.suptitle(f"Q/K/V weight std per layer over training — {args.n_layer}-layer GPT-2-style model "
                 f"(width {args.n_embd}), byte-level on the Python stdlib")
    files.append(C.save_figure(fig, args.out, "qkv_std.png"))

    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig, axes = figure(2, 3, figsize=(16, 8.6))
    cmap = matplotlib.colormaps["viridis"]
    L = max(k[0] for k in series)
    norm = Normalize(1, max(L, 2))
    for j, part in enumerate(PARTS):
        ax = axes[0][j]
        for (layer, p), s in sorted(series.items()):
            if p != part:
                continue
            s0 = s[0][1]
            ax.plot([t for t, _ in s], [v / s0 for _, v in s], color=cmap(norm(layer)), lw=1.2)
        ax.axvline(EARLY * args.steps, color="k", lw=0.7, ls=":", label=f"{EARLY:.0%} of training")
        ax.axvspan((1 - TAIL) * args.steps, args.steps, color="0.85", alpha=0.5, lw=0, label=f"last {TAIL:.0%}: band")
        ax.set_title(f"{part.upper()}: std relative to its initial value")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("std(t) / std(0)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    cb = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=[axes[0][2]])
    cb.set_label("layer (1 = shallowest)")
    ax = axes[1][0]
    for part, m in zip(PARTS, "o^s"):
        rows = [r for r in layers if r["part"] == part]
        xs = [r["layer"] + {"q": -0.15, "k": 0.0, "v": 0.15}[part] for r in rows]
        mid = [(r["band_lo"] + r["band_hi"]) / 2 for r in rows]
        err = [[m_ - r["band_lo"] for m_, r in zip(mid, rows)], [r["band_hi"] - m_ for m_, r in zip(mid, rows)]]
        ax.errorbar(xs, mid, yerr=err, fmt=m, ms=4, capsize=3, label=part.upper())
    ax.axhline(args.init_std, color="k", lw=0.8, ls="--", label=f"init std {args.init_std:g}")
    ax.set_title(f"band reached: min..max of the std over the last {TAIL:.0%}")
    ax.set_xlabel("layer")
    ax.set_ylabel("weight std")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1][1]
    for part, m in zip(PARTS, "o^s"):
        rows = [r for r in layers if r["part"] == part]
        ax.plot([r["layer"] for r in rows], [100 * r["early_rel_change"] for r in rows], m + "-", ms=4,
                label=f"{part.upper()}: change at {EARLY:.0%} of training")
    ax.set_title("early expansion per layer")
    ax.set_xlabel("layer")
    ax.set_ylabel("relative change of the std (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1][2]
    w = max(1, len(loss_curve) // 50)
    smooth = [sum(loss_curve[i : i + w]) / len(loss_curve[i : i + w]) for i in range(0, len(loss_curve), w)]
    ax.plot([i + w / 2 for i in range(0, len(loss_curve), w)], smooth, color="tab:blue",
            label=f"train (mean of {w} steps)")
    ax.plot([s for s, _ in val_curve], [v for _, v in val_curve], "o-", color="tab:orange", ms=3, label="validation")
    ax.axhline(math.log(256), color="k", lw=0.7, ls=":", label="ln 256 (uniform bytes)")
    ax.set_title("byte-level cross-entropy")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats per byte)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    for ax in (axes[1][0], axes[1][1]):
        C.epoch_axis(ax)
    fig.suptitle(f"Depth-dependent equilibration of Q/K/V weight std — {args.n_layer} layers, width {args.n_embd}, "
                 f"{args.steps} AdamW steps (lr {args.lr:g}, {args.lr_schedule}, wd {args.weight_decay:g})")
    files.append(C.save_figure(fig, args.out, "equilibration.png"))
    return files


def report(d: dict[str, Any], claims: list[C.Claim]) -> str:
    cfg, corpus = d["config"], d["corpus"]
    by = {(r["layer"], r["part"]): r for r in d["layers"]}
    L = max(r["layer"] for r in d["layers"])
    rows = []
    for layer in range(1, L + 1):
        row = [layer]
        for part in PARTS:
            r = by.get((layer, part))
            row.append("—" if r is None else f"{r['band_lo']:.4f}–{r['band_hi']:.4f}")
        for part in PARTS:
            r = by.get((layer, part))
            row.append("—" if r is None else f"{r['early_rel_change']:+.1%}")
        for part in PARTS:
            r = by.get((layer, part))
            row.append("—" if r is None else C.fmt(r["half_change_step"], "g"))
        rows.append(row)
    lines = [
        f"The 12-layer GPT-2 variance study of {PAPER}: a {cfg['n_layer']}-layer GPT-2-style model "
        f"(width {cfg['n_embd']}, {cfg['n_head']} heads, context {cfg['block']} bytes, {cfg['params']:,} parameters), "
        f"init `{cfg['init']}` (Q/K/V std {C.fmt(cfg['init_qkv_std'], 'g')}), trained from scratch byte-level for "
        f"{cfg['steps']} steps of {cfg['batch']} sequences: {cfg['optimizer']}, lr {cfg['lr']:g} "
        f"({cfg['warmup']:.0%} warm-up, then {cfg['lr_schedule']}), weight decay {cfg['weight_decay']:g}.",
        "",
        "AdamW relaxes a weight's std toward its equilibrium with the time constant 1/(2·lr·weight decay) = "
        f"{C.fmt(cfg['adamw_time_constant_steps'], '.0f')} steps here, i.e. the run spans "
        f"{C.fmt(cfg['steps'] / cfg['adamw_time_constant_steps'] if cfg['adamw_time_constant_steps'] else None, '.1f')}"
        " time constants (GPT-2's usual lr 1e-3 with weight decay 0.1 would need 5,000 steps for one).",
        "",
        f"Corpus: the first {corpus['bytes']:,} bytes of the Python {corpus['python']} standard library's .py sources "
        f"({corpus['files']} files under `{corpus['root']}` in sorted path order, site-packages left out; SHA-256 "
        f"`{corpus['sha256'][:16]}…`), last 10% held out for validation. Final train loss "
        f"{sum(d['train_loss'][-20:]) / len(d['train_loss'][-20:]):.3f}, validation {d['val_loss'][-1][1]:.3f} "
        "nats/byte "
        f"(uniform: {math.log(256):.3f}).",
        "",
        "Q, K and V are the thirds of each block's fused `c_attn` weight, measured by "
        f"`VarianceMonitor(split_qkv=True)` every {cfg['every']} steps.",
        "",
        "![qkv std](qkv_std.png)",
        "",
        "![equilibration](equilibration.png)",
        "",
        f"## Bands reached (std over the last {TAIL:.0%} of the steps), early change and half-change step",
        "",
        md_table(["layer", "Q band", "K band", "V band", f"Q change at {EARLY:.0%}", f"K change at {EARLY:.0%}",
                  f"V change at {EARLY:.0%}", "Q half-change step", "K half-change step", "V half-change step"],
                 rows),
    ]
    return C.study_report("Reproduction: Q/K/V weight variance of a 12-layer GPT-2-style model in training", d,
                          claims, lines)


def register(commands: dict) -> None:
    commands[STUDY] = ("the 12-layer GPT-2 Q/K/V variance study of arXiv 2510.09423 (stdlib bytes, CPU)", run)
