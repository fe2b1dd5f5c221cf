"""Overhead of depthinit's VarianceMonitor during CPU training, against no monitoring, the real
``wandb.watch`` (offline) and a hand-written wandb.watch-like baseline.

GPT-2-style models (``depthinit.applications.models.gpt2``, initialized with ``depthinit.init_(model, "gpt2")``; by
default 6 and 12 layers) train on fixed random tokens four ways, in ONE process, interleaved in blocks of
steps (the order rotates every round, so that machine noise hits every variant alike; the variants take
turns on the same model and optimizer, each monitor attached only during its own blocks):

* ``none``      — no monitoring;
* ``depthinit`` — ``VarianceMonitor(model, every=N)``: weights, gradients, activations, the residual
  stream and the update ratio every N steps, fused statistics, no host sync inside the step;
* ``wandb``     — the real ``wandb.watch(model, log="all", log_freq=N)`` on an offline run
  (``WANDB_MODE=offline``, files under a temporary folder; nothing leaves the machine), its queued
  histograms committed once per monitored step (as a training loop's ``wandb.log`` would);
* ``watch``     — the same work written here (what ``wandb.watch`` computes, without the wandb service):
  a forward hook per module logging each parameter, a tensor hook per parameter logging its gradient, each
  as ``min/max/mean/std`` with ``.item()`` plus a 64-bin ``histc`` copied to the host; plus the same
  per-output statistics for activations (so that it covers what the monitor covers).

Reported per model: the mean step time of each variant, and the overhead of each monitor relative to
``none`` as the **median over rounds** of the round's overhead against the same round's unmonitored
block, with its **min-max** over the rounds and a bootstrap 90 % interval of the median (target for depthinit:
<= 1 % median, below ``wandb.watch``: met when the whole interval is, undecided when it straddles 1 %; on a
shared machine the rounds spread by +-15 %, so the median alone cannot tell 1 % from 3 %). On CPU also two
finer estimates of depthinit's overhead: **paired steps** (:func:`paired_cycles`: two identical models
trained step by step in turn, the monitor on one of them, then on the other; the median overhead of a
monitoring cycle against the other model's steps of the same seconds, with its bootstrap interval and
verdict: **the benchmark's verdict on CPU**, its interval a few tenths of a point wide where the rounds' is
several points), and the cost of one monitoring cycle timed by parts (:func:`monitored_cycle_cost`: each part
alone, so it leaves out what the monitor costs the rest of the step; it has read 0.5-0.6 points below the
paired estimate).
Usage (every benchmark run under the CPU lock on a shared machine)::

    flock /tmp/depthinit-cpu.lock .venv/bin/python bench/bench_monitor_overhead.py      # 6 and 12 layers
    flock /tmp/depthinit-cpu.lock .venv/bin/python bench/bench_monitor_overhead.py --layers 12 --rounds 12

Step times are process CPU time by default (``--clock cpu``, with one torch thread: what the step
costs, insensitive to other processes taking the cores); ``--clock wall`` measures wall time. By default
glibc keeps freed memory (``--malloc keep``): with its own settings a step of the 6-layer model page-faults
400-3,800 times as it allocates its activations again, some 2-15 ms a step on this VM, the same for every variant
(the monitored model faulted no more than the other): noise, not overhead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # the helpers beside this script
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
from _results import save_json  # noqa: E402  (it also makes the checkout's package importable)


class WatchLike:
    """The work of ``wandb.watch(log="all")`` (+ activations), every ``every`` steps, with host syncs."""

    def __init__(self, model: nn.Module, every: int, activations: bool = True) -> None:
        self.every, self.step_i, self.logged = every, 0, {}
        self.handles = []
        for mname, mod in model.named_modules():
            params = [(f"{mname}.{n}" if mname else n, p) for n, p in mod.named_parameters(recurse=False)]
            if not params:
                continue
            self.handles.append(mod.register_forward_hook(self._fwd(mname, params, activations)))
            for name, p in params:
                if p.requires_grad:
                    self.handles.append(p.register_hook(self._grad(name)))

    def _on(self) -> bool:
        return self.step_i % self.every == 0

    @staticmethod
    def _stats(t: torch.Tensor) -> dict:
        t = t.detach().float().reshape(-1)
        tmin, tmax = t.min().item(), t.max().item()
        out = {"min": tmin, "max": tmax, "mean": t.mean().item(), "std": t.std().item(),
               "nan": bool(torch.isnan(t).any().item()), "inf": bool(torch.isinf(t).any().item())}
        out["hist"] = t.histc(bins=64, min=tmin, max=tmax).cpu().tolist()
        return out

    def _fwd(self, mname: str, params, activations: bool) -> Callable:
        def hook(mod, args, out):
            if not self._on():
                return
            for name, p in params:
                self.logged[f"parameters/{name}"] = self._stats(p)
            if activations and isinstance(out, torch.Tensor) and out.is_floating_point():
                self.logged[f"activations/{mname}"] = self._stats(out)

        return hook

    def _grad(self, name: str) -> Callable:
        def hook(grad):
            if self._on():
                self.logged[f"gradients/{name}"] = self._stats(grad)

        return hook

    def step(self) -> None:
        self.step_i += 1

    def close(self) -> None:
        for h in self.handles:
            h.remove()


class WandbWatch:
    """The real ``wandb.watch(model, log="all", log_freq=every)`` on an offline run; its histograms are
    queued uncommitted by the hooks and committed after each monitored step."""

    run = None

    def __init__(self, model: nn.Module, every: int) -> None:
        import wandb

        if WandbWatch.run is None:
            import tempfile

            os.environ.setdefault("WANDB_SILENT", "true")
            WandbWatch.run = wandb.init(project="depthinit-bench", mode="offline", dir=tempfile.mkdtemp(),
                                        settings=wandb.Settings(console="off", x_disable_stats=True))
        self.model, self.every, self.step_i = model, every, 0
        WandbWatch.run.watch(model, log="all", log_freq=every)

    def step(self) -> None:
        if self.step_i % self.every == 0:
            WandbWatch.run.log({}, commit=True)
        self.step_i += 1

    def close(self) -> None:
        WandbWatch.run.unwatch(self.model)


def build(args, seed: int = 0) -> nn.Module:
    import depthinit as di

    torch.manual_seed(seed)
    model = di.models.gpt2(n_layer=args.layers, n_embd=args.width, n_head=args.heads, vocab=args.vocab,
                           block=args.seq)
    di.init_(model, "gpt2", seed=seed)
    return model


class Trainer:
    """A model, its optimizer and the tokens: what the variants share (so that they differ in nothing else)."""

    def __init__(self, args, tokens: torch.Tensor) -> None:
        self.device = torch.device(args.device)
        self.tokens = tokens.to(self.device)
        self.model = build(args).to(self.device)
        self.amp = torch.bfloat16 if args.amp == "bf16" else None
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=args.lr)
        self.fwd = self.model

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self, mon=None) -> None:
        """One training step (forward, backward, optimizer), then ``mon.step()`` when a monitor is given."""
        x, y = self.tokens[:, :-1], self.tokens[:, 1:]
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            loss = F.cross_entropy(self.fwd(x).flatten(0, 1).float(), y.flatten())
        loss.backward()
        self.opt.step()
        if mon is not None:
            mon.step()
        self.opt.zero_grad(set_to_none=True)


class Run:
    """One variant and the mean step time of each of its blocks.

    By default the three variants train ONE model with one optimizer, taking turns: a variant's monitor
    is attached before its block and closed after it, outside the timed region. Separate model copies
    would differ in memory placement, which alone moves CPU step times by a percent or two. With
    ``--compile`` each variant keeps its own model, monitored before it is compiled (hooks cannot come
    and go around a compiled graph without recompiling it).
    """

    def __init__(self, name: str, args, trainer: Trainer, clock: Callable[[], float]) -> None:
        self.name, self.args, self.clock, self.trainer = name, args, clock, trainer
        self.persistent = bool(args.compile)
        self.mon = self.attach() if self.persistent else None
        if args.compile:
            trainer.fwd = torch.compile(trainer.model)

    def attach(self):
        from depthinit.monitor import VarianceMonitor

        model, every = self.trainer.model, self.args.every
        if self.name == "depthinit":
            return VarianceMonitor(model, every=every, alerts=True, update=self.args.update)
        if self.name == "watch":
            return WatchLike(model, every)
        if self.name == "wandb":
            return WandbWatch(model, every)
        return None

    def steps(self, n: int) -> float:
        """Run ``n`` training steps; their mean time (the device is synchronized at both ends only)."""
        tr = self.trainer
        mon = self.mon if self.persistent else self.attach()
        tr.sync()
        t0 = self.clock()
        for _ in range(n):
            tr.step(mon)
        tr.sync()
        elapsed = (self.clock() - t0) / n
        if mon is not None and not self.persistent:
            mon.close()
        return elapsed


def idle_hook_cost(mon, clock: Callable[[], float], calls: int = 20000, reps: int = 9) -> float:
    """Seconds one idle hook of ``mon`` (not recording) adds to a module call: ``nn.Identity`` called with it
    minus without it, median of ``reps`` interleaved loops (a difference of a microsecond or two, far below the
    noise of pairs of whole training steps)."""
    m, x = nn.Identity(), torch.zeros(1)

    def loop() -> float:
        t0 = clock()
        for _ in range(calls):
            m(x)
        return (clock() - t0) / calls

    diffs = []
    for _ in range(reps):
        bare = loop()
        h = m.register_forward_hook(mon._capture._make_hook(0))
        diffs.append(loop() - bare)
        h.remove()
    return max(statistics.median(diffs), 0.0)


def monitored_cycle_cost(run: Run, clock: Callable[[], float], reps: int = 9) -> dict[str, float]:
    """Median cost of the monitor's work in one cycle of ``every`` steps, each part timed alone (CPU).

    ``activations``: a training forward and backward with the hooks recording (outputs, residual-stream
    gradients) minus one with them idle (a forward under ``no_grad`` would overstate it: there the hooks keep
    outputs alive that the forward would free at once); ``record``:
    ``mon._record`` (weight and gradient statistics, update rows, ring buffer, records, alerts);
    ``update_ref``: the reference taken on the step before; ``idle_hooks``: the hooks when they do not record
    (:func:`idle_hook_cost` for each hooked module), on each of the ``every`` steps. Less sensitive to machine
    noise than the difference of two whole-step means.
    """
    mon = run.mon or run.attach()
    model, tr = run.trainer.model, run.trainer
    x, y = tr.tokens[:, :-1], tr.tokens[:, 1:]

    def med(fn) -> float:
        fn()
        ts = []
        for _ in range(reps):
            t0 = clock()
            fn()
            ts.append(clock() - t0)
        return statistics.median(ts)

    def fwd(active: bool):
        def f():  # a training forward and backward: its activations stay alive for the backward anyway
            mon._active = active  # idle: the modules' hooks come off at the forward's start
            F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
            mon._capture.finish()
            tr.opt.zero_grad(set_to_none=True)
        return f

    def paired(on, off) -> float:  # median of (on - off) over adjacent pairs: slow drifts of the machine cancel
        on(), off()
        diffs = []
        for _ in range(3 * reps):  # a few ms on a whole step: more pairs than the other parts take
            t0 = clock()
            on()
            t1 = clock()
            off()
            diffs.append((t1 - t0) - (clock() - t1))
        return statistics.median(diffs)

    acts = max(paired(fwd(True), fwd(False)), 0.0)
    hooks = len(mon._capture._hooks) * idle_hook_cost(mon, clock)  # the hooks an idle eager forward runs
    F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
    step = mon.global_step

    def record():
        mon._prepare_update()
        mon._prev_step = step - 1
        mon._record(step)

    both = med(record)
    ref = med(mon._prepare_update)
    tr.opt.zero_grad(set_to_none=True)
    mon._active = False
    if mon is not run.mon:
        mon.close()
    every = run.args.every
    return {"activations": acts, "record": both - ref, "update_ref": ref, "idle_hooks": every * hooks,
            "total": acts + both + every * hooks}


def paired_cycles(args, tokens: torch.Tensor, clock: Callable[[], float], cycles: int) -> list[list[float]]:
    """depthinit's overhead (%) in each monitoring cycle, from two identical models trained step by step in turn.

    Two trainers built alike (same init, tokens, optimizer); one carries a ``VarianceMonitor``, and their
    steps alternate (the order swaps every step), each timed alone, so that both see the same machine from one
    step to the next: on a shared machine the speed drifts over seconds, and whole blocks of steps taken one
    after the other differ by several percent where adjacent steps differ by far less. A cycle's overhead is
    its ``every`` monitored steps against the other model's ``every`` steps of the same stretch of time: the
    monitored step, its update reference and the idle hooks of the other steps, all included. The monitor is
    on the first model for ``cycles`` cycles, then on the second for as many (so that a difference between the
    two models' memory placement cancels); the first cycle of each half warms up and is left out.
    Returns the two halves' per-cycle overheads."""
    from depthinit.monitor import VarianceMonitor

    trainers = [Trainer(args, tokens), Trainer(args, tokens)]
    halves = []
    for monitored in (0, 1):
        mon = VarianceMonitor(trainers[monitored].model, every=args.every, alerts=True, update=args.update)
        per_cycle = []
        for c in range(cycles + 1):
            spent = [0.0, 0.0]
            for i in range(args.every):
                for j in (0, 1) if i % 2 == 0 else (1, 0):
                    t0 = clock()
                    trainers[j].step(mon if j == monitored else None)
                    spent[j] += clock() - t0
            if c:
                bare = spent[1 - monitored]
                per_cycle.append(100 * (spent[monitored] - bare) / bare)
        mon.close()
        halves.append(per_cycle)
    return halves


def median_interval(values: list[float] | list[list[float]], level: float = 0.9, resamples: int = 2000,
                    seed: int = 0) -> list[float]:  # fmt: skip
    """A bootstrap ``level`` interval of the median of ``values`` (percentiles of the medians of ``resamples``
    resamples with replacement, fixed seed): how far the reported median could move on another run. A list of
    groups (the halves of :func:`paired_cycles`): the interval of the mean of the groups' medians, each group
    resampled on its own."""
    groups = values if values and isinstance(values[0], list) else [values]
    g = torch.Generator().manual_seed(seed)
    meds = torch.zeros(resamples, dtype=torch.float64)
    for group in groups:
        v = torch.tensor(group, dtype=torch.float64)
        meds += v[torch.randint(0, len(group), (resamples, len(group)), generator=g)].median(1).values / len(groups)
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    return torch.quantile(meds, q).tolist()


def mean_of_medians(groups: list[list[float]]) -> float:
    return statistics.fmean(statistics.median(g) for g in groups)


def verdict(interval: list[float], ref: float, target: float = 1.0) -> str:
    """``met`` when the whole interval of the median is within the target and below ``ref`` (wandb.watch's
    median), ``NOT met`` when the whole interval is above the target (or the median is not below ``ref``),
    ``undecided`` when the interval straddles the target: the run cannot tell."""
    lo, hi = interval
    if hi <= target and hi < ref:
        return "met"
    if lo > target or lo >= ref:
        return "NOT met"
    return "undecided"


def parser(defaults: dict | None = None, description: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description or __doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[6, 12], help="one model per layer count")
    ap.add_argument("--width", type=int, default=192)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--every", type=int, default=10, help="monitor every N optimizer steps")
    ap.add_argument("--block", type=int, default=0, help="steps per variant per round (default: 2*every)")
    ap.add_argument("--rounds", type=int, default=8, help="interleaved rounds")
    ap.add_argument("--cycles", type=int, default=30,
                    help="monitoring cycles per half of the paired-steps estimate (CPU; 0: leave it out)")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--update", default="norm", choices=("norm", "exact"), help="monitor's update-ratio mode")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is; default 1)")
    ap.add_argument("--clock", default="cpu", choices=("cpu", "thread", "wall"),
                    help="cpu: process CPU time (robust on a shared machine, exact with 1 thread); thread: CPU time "
                         "of the main thread only; wall: wall time")
    ap.add_argument("--malloc", default="keep", choices=("keep", "default"),
                    help="keep: glibc keeps freed memory (no trimming, no mmap for large blocks), so that steps do "
                         "not page-fault their activations in again (thousands of faults a step on CPU, the "
                         "largest noise of a step here; both variants alike); default: glibc's own settings")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--amp", default="none", choices=("none", "bf16"), help="autocast dtype")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (monitor hooks included)")
    ap.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                    help="save the result as JSON to PATH (without PATH: print it instead of the report)")
    ap.add_argument("--no-wandb", dest="wandb", action="store_false", help="leave out the real wandb.watch")
    ap.set_defaults(**(defaults or {}))
    return ap


VARIANTS = ("none", "depthinit", "wandb", "watch")
MONITORS = VARIANTS[1:]


def keep_freed_memory() -> bool:
    """glibc keeps what is freed for reuse (``mallopt``: no trimming, no ``mmap`` for large blocks); False where
    the C library is not glibc."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_trim_threshold, 1 << 30) and libc.mallopt(m_mmap_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False


def measure(args, layers: int) -> dict:
    """One model: the interleaved rounds, per-round overheads, their median and min-max."""
    args = argparse.Namespace(**{**vars(args), "layers": layers})
    block = args.block or 2 * args.every
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, args.vocab, (args.batch, args.seq + 1), generator=g)
    clock = {"cpu": time.process_time, "thread": time.thread_time}.get(args.clock, time.perf_counter)
    names = [n for n in VARIANTS if n != "wandb" or args.wandb]
    shared = None if args.compile else Trainer(args, tokens)
    runs = [Run(n, args, shared or Trainer(args, tokens), clock) for n in names]
    for r in runs:  # warm-up: allocator, first monitored steps, the wandb run, compiled statistics kernels
        r.steps(2 * args.every)
    round_means: dict[str, list[float]] = {r.name: [] for r in runs}
    for k in range(args.rounds):
        order = runs[k % len(runs):] + runs[: k % len(runs)]
        for r in order:
            round_means[r.name].append(r.steps(block))
    cycle = monitored_cycle_cost(runs[1], clock) if args.device == "cpu" else None
    for r in runs:
        if r.mon is not None:
            r.mon.close()
    # the paired models are eager: with --compile the rounds (compiled) keep the verdict
    paired = (paired_cycles(args, tokens, clock, args.cycles)
              if args.device == "cpu" and args.cycles and not args.compile else None)  # fmt: skip

    mean = {n: statistics.fmean(v) for n, v in round_means.items()}
    mons = [n for n in MONITORS if n in round_means]
    # paired per round: each round's block against the same round's unmonitored block
    per_round = {n: [100 * (a - b) / b for a, b in zip(round_means[n], round_means["none"])] for n in mons}
    res = {
        "config": {k: v for k, v in vars(args).items() if k != "json"} | {"block": block,
                                                                             "threads": torch.get_num_threads()},
        "step_ms": {n: 1e3 * v for n, v in mean.items()},
        "overhead_pct": {n: statistics.median(v) for n, v in per_round.items()},
        "overhead_pct_range": {n: [min(v), max(v)] for n, v in per_round.items()},
        "overhead_pct_of_means": {n: 100 * (mean[n] - mean["none"]) / mean["none"] for n in mons},
        "overhead_pct_rounds": per_round,
    }
    od = res["overhead_pct"]["depthinit"]
    ref = res["overhead_pct"].get("wandb", res["overhead_pct"]["watch"])
    res["depthinit_over_watch"] = od / res["overhead_pct"]["watch"] if res["overhead_pct"]["watch"] > 0 else math.nan
    res["depthinit_over_wandb"] = od / ref if "wandb" in mons and ref > 0 else math.nan
    res["overhead_pct_interval"] = {n: median_interval(v) for n, v in per_round.items()}
    res["target"] = verdict(res["overhead_pct_interval"]["depthinit"], ref)
    res["target_met"] = res["target"] == "met"
    if paired is not None:  # the finest end-to-end estimate: adjacent steps of two identical models
        res["paired"] = {"overhead_pct": mean_of_medians(paired), "interval": median_interval(paired),
                         "cycles": paired, "range": [min(map(min, paired)), max(map(max, paired))]}  # fmt: skip
        res["paired"]["target"] = verdict(res["paired"]["interval"], ref)
        # the verdict: the rounds' medians spread too widely on a shared machine to decide (target_rounds)
        res["target_rounds"], res["target"] = res["target"], res["paired"]["target"]
        res["target_met"] = res["target"] == "met"
    if cycle is not None:  # the same overhead from the parts of one monitoring cycle, timed alone
        res["cycle_ms"] = {k: 1e3 * v for k, v in cycle.items()}
        res["overhead_pct_from_parts"] = 100 * cycle["total"] / (args.every * mean["none"])
    return res


def report(res: dict) -> str:
    c = res["config"]
    lines = [f"GPT-2-style L={c['layers']} d={c['width']} vocab={c['vocab']} tokens={c['batch']}x{c['seq']}, "
             f"monitor every {c['every']} steps, {c['rounds']} rounds x {c['block']} steps, threads={c['threads']}, "
             f"clock={c['clock']}"]
    for n, ms in res["step_ms"].items():
        extra = ""
        if n != "none":
            lo, hi = res["overhead_pct_range"][n]
            a, b = res["overhead_pct_interval"][n]
            extra = (f"  overhead median {res['overhead_pct'][n]:+6.2f} %  (rounds {lo:+.2f} .. {hi:+.2f} %; "
                     f"90 % interval of the median {a:+.2f} .. {b:+.2f} %)")
        lines.append(f"  {n:<10} {ms:8.1f} ms/step{extra}")
    lines.append(f"  depthinit / wandb.watch overhead = {res['depthinit_over_wandb']:.3f}; depthinit / watch-like = "
                 f"{res['depthinit_over_watch']:.3f}; target (<= 1 % median, below wandb.watch): "
                 f"{res.get('target_rounds', res['target'])} (from the interval of the rounds' median)")
    if "paired" in res:
        pr = res["paired"]
        n = sum(map(len, pr["cycles"]))
        lines.append(f"  paired steps of two identical models ({n} monitoring cycles, the monitor on each model in "
                     f"turn): overhead median {pr['overhead_pct']:+.2f} % (cycles {pr['range'][0]:+.2f} .. "
                     f"{pr['range'][1]:+.2f} %; 90 % interval of the median {pr['interval'][0]:+.2f} .. "
                     f"{pr['interval'][1]:+.2f} %); target: {pr['target']} (the verdict)")
    if "cycle_ms" in res:
        parts = ", ".join(f"{k} {v:.1f} ms" for k, v in res["cycle_ms"].items())
        pct = res["overhead_pct_from_parts"]
        lines.append(f"  one monitoring cycle timed by parts (median of 9): {parts} -> "
                     f"{pct:.2f} % of {c['every']} unmonitored steps (<= 1 %: {'met' if pct <= 1 else 'NOT met'})")
    return "\n".join(lines)


def headline_overhead(res: dict) -> float:
    """depthinit's overhead (%) that the verdict is drawn from: the paired-steps median where it was measured
    (CPU), else the median of the rounds."""
    return res["paired"]["overhead_pct"] if "paired" in res else res["overhead_pct"]["depthinit"]


def main(argv=None, defaults: dict | None = None, description: str | None = None) -> dict:
    """Measure every model of ``--layers``; the top-level keys are those of the model where depthinit's
    overhead (:func:`headline_overhead`) is highest (the worst case), ``models`` holds every model's result."""
    args = parser(defaults, description).parse_args(argv)
    if args.device.startswith("cuda") and args.clock == "cpu":
        args.clock = "wall"  # CPU time does not see the device
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.malloc == "keep" and not keep_freed_memory():
        args.malloc = "default"  # not glibc: recorded in the config as run
    if args.wandb:
        try:
            import wandb  # noqa: F401
        except ImportError:
            print("bench_monitor_overhead: wandb is not installed; the real wandb.watch baseline is skipped "
                  "(pip install wandb, or --no-wandb)", file=sys.stderr)
            args.wandb = False
    layer_list = args.layers if isinstance(args.layers, list) else [args.layers]
    results = [measure(args, n) for n in layer_list]
    if WandbWatch.run is not None:  # leave no wandb state behind for a caller in the same process
        import wandb

        WandbWatch.run.finish()
        WandbWatch.run = None
        wandb.teardown()
    worst = max(results, key=headline_overhead)
    res = {**worst, "models": results}
    if args.json == "-":
        print(json.dumps(res, indent=2))
    else:
        print("\n\n".join(report(r) for r in results))
        if args.json:
            save_json(res, args.json)
    return res


if __name__ == "__main__":
    main()
