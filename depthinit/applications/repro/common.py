"""What the reproductions share: threads, the batch order of a seed, stall rules, statistics, figure and report
helpers, the result files (the training loop itself is :mod:`depthinit.applications.training`).

Every study writes into its ``--out`` folder:

* ``report.md`` — the setup, the exact command, tables, and a plain statement of where the results agree
  or disagree with the paper's claims;
* ``results.json`` — everything measured (per run curves, summaries, verdicts, environment);
* ``*.png`` — the figures, drawn with matplotlib's Agg canvas (no display needed).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...report import write_json
from ..training import Curves, TrainConfig, train_classifier

RESULTS_JSON = "results.json"
REPORT_MD = "report.md"
FORMAT = "depthinit.repro/1"


# ------------------------------------------------------------------------------------------------ environment


def set_threads(n: int) -> None:
    """``torch.set_num_threads(n)`` (intra-op); the studies' tensors are small, so more threads rarely help."""
    if n < 1:
        raise ValueError(f"--threads must be >= 1, got {n}")
    torch.set_num_threads(n)


def environment() -> dict[str, Any]:
    """Versions and machine facts stored with every result."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def command_line(study: str, parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The full command that reproduces ``args``: every option of the study written out explicitly."""
    parts = ["depthinit", "repro", study]
    for a in parser._actions:  # noqa: SLF001 - argparse has no public list of actions
        if not a.option_strings or a.dest in ("help",) or a.dest.startswith("_"):
            continue
        v = getattr(args, a.dest, None)
        opt = a.option_strings[-1]
        if isinstance(a, argparse._StoreTrueAction):  # noqa: SLF001
            if v:
                parts.append(opt)
        elif v is not None:
            parts += [opt, ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)]
    return shlex.join(parts)


# ------------------------------------------------------------------------------------------------ training


def train(model: nn.Module, split: Any, cfg: TrainConfig, seed: int) -> Curves:
    """:func:`~depthinit.applications.training.train_classifier` with the batch order of the study's
    ``seed``."""
    return train_classifier(model, split, cfg, 10_007 * seed + 1)


# ------------------------------------------------------------------------------------------------ verdicts


STALL_LOSS_FRACTION = 0.95
CHANCE_MARGIN = 0.05


@dataclass(frozen=True)
class Outcome:
    """How a run ended (see :func:`outcome`) and its headline numbers."""

    status: str
    epochs_to_target: int | None
    final_train_loss: float | None
    final_train_acc: float | None
    final_test_acc: float | None
    best_test_acc: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


STATUSES = ("trained", "collapsed", "stalled", "diverged")


def outcome(c: Curves, n_classes: int, target_acc: float) -> Outcome:
    """Classify a run of N epochs (``STALL_RULE`` says it in words).

    * ``diverged``: the training loss became non-finite (NaN / inf) at some epoch;
    * ``stalled``: at no epoch 1..N was the training loss below ``STALL_LOSS_FRACTION`` (95%) of its value
      before training, or at no epoch did the training accuracy rise more than ``CHANCE_MARGIN`` (5 points)
      above chance (1 / n_classes): the network never started to learn;
    * ``collapsed``: it learned at some epoch, but after epoch N its training loss is back above 95% of
      the initial loss or its accuracy back within 5 points of chance;
    * ``trained``: otherwise.

    ``epochs_to_target``: the first epoch whose **test** accuracy reaches ``target_acc`` (None: never).
    """
    hit = next((e for e, a in zip(c.epoch, c.test_acc) if math.isfinite(a) and a >= target_acc), None)
    accs = [a for a in c.test_acc if math.isfinite(a)]
    best = max(accs) if accs else None
    if not all(math.isfinite(v) for v in c.train_loss):
        return Outcome("diverged", hit, None, None, None, best)
    limit, chance = STALL_LOSS_FRACTION * c.train_loss[0], 1.0 / n_classes + CHANCE_MARGIN
    ever_learned = min(c.train_loss[1:], default=math.inf) < limit and max(c.train_acc[1:], default=0.0) > chance
    learned_now = c.train_loss[-1] < limit and c.train_acc[-1] > chance
    status = "trained" if learned_now else ("collapsed" if ever_learned else "stalled")
    return Outcome(status, hit, c.train_loss[-1], c.train_acc[-1], c.test_acc[-1], best)


STALL_RULE = (f"a run **stalls** when at no epoch is its training loss below {STALL_LOSS_FRACTION:.0%} of the loss "
              f"before training and its training accuracy more than {CHANCE_MARGIN * 100:.0f} points above chance "
              "(1/classes) — it never starts to learn; it **collapses** when it did learn at some epoch but ends "
              "back in that zone; it **diverges** when the loss becomes non-finite (NaN or inf)")


# ------------------------------------------------------------------------------------------------ statistics


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return None, None
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, s


def median(values: Iterable[float | None]) -> float | None:
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    k = len(v) // 2
    return float(v[k]) if len(v) % 2 else (v[k - 1] + v[k]) / 2


def fmt(v: Any, spec: str = ".3f") -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan"
    return format(v, spec) if isinstance(v, (int, float)) and spec else str(v)


def fmt_pm(m: float | None, s: float | None, spec: str = ".3f") -> str:
    return "—" if m is None else f"{m:{spec}} ± {s:{spec}}"


# ------------------------------------------------------------------------------------------------ figures


def plot_mean_band(ax: Any, runs: Sequence[dict], key: str, color: Any, label: str, band_label: str | None = None,
                   lw: float = 1.6, alpha: float = 0.12) -> list[list[float]]:
    """Mean over the runs of ``run["curves"][key]`` per epoch, and the min..max band when there are several
    runs; returns the curves (NaN for missing values)."""
    ep = runs[0]["curves"]["epoch"]
    ys = [[v if v is not None else float("nan") for v in r["curves"][key]] for r in runs]
    ax.plot(ep, [sum(c) / len(c) for c in zip(*ys)], color=color, lw=lw, label=label)
    if len(ys) > 1:
        ax.fill_between(ep, [min(c) for c in zip(*ys)], [max(c) for c in zip(*ys)], color=color, alpha=alpha, lw=0,
                        label=band_label)
    return ys


def epoch_axis(ax: Any) -> None:
    """Integer ticks on the x axis (epochs, steps)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def auto_log(ax: Any, values: Iterable[float | None], decades: float = 1.0) -> None:
    """Log scale on y when the finite positive values span more than ``decades`` decades."""
    v = [x for x in values if x is not None and math.isfinite(x) and x > 0]
    if v and max(v) / min(v) > 10**decades:
        ax.set_yscale("log")


def save_figure(fig: Any, out: str, name: str, dpi: int = 120) -> str:
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, name)
    fig.savefig(path, dpi=dpi)
    return name


# ------------------------------------------------------------------------------------------------ output


@dataclass
class Claim:
    """One claim of a paper and what this reproduction found: ``agrees``, ``disagrees``, ``partly`` or
    ``inconclusive``."""

    paper: str
    claim: str
    verdict: str
    evidence: str

    def to_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


def claims_section(claims: Sequence[Claim]) -> str:
    lines = ["## Agreement with the paper", ""]
    for c in claims:
        lines.append(f"* **{c.verdict.upper()}** — {c.paper}: “{c.claim}” — {c.evidence}")
    return "\n".join(lines)


def write_outputs(out: str, data: dict[str, Any], report: str) -> None:
    """``results.json`` (``data`` plus the format tag) and ``report.md`` into ``out``."""
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, RESULTS_JSON), {"format": FORMAT, **data})
    with open(os.path.join(out, REPORT_MD), "w", encoding="utf-8") as f:
        f.write(report.rstrip() + "\n")


QUICK_NOTE = ("> **CI-sized run (`--quick`)**: too small to support any verdict below; the full-size results are in "
              "`bench/results/` of the repository.")


def report_header(title: str, command: str, lines: Sequence[str], quick: bool = False) -> str:
    return "\n".join([f"# {title}", "", "Made by:", "", "```", command, "```", "",
                      *([QUICK_NOTE, ""] if quick else []), *lines, ""])


def study_report(title: str, data: dict[str, Any], claims: Sequence[Claim], lines: Sequence[str]) -> str:
    """A study's ``report.md``: the header with the command (and the ``--quick`` note), ``lines``, the claims
    and the environment."""
    env = data["environment"]
    tail = ["", claims_section(claims), "", f"Environment: Python {env['python']}, torch {env['torch']}, "
            f"{env['threads']} thread(s); wall time {data['wall_s']:.0f} s."]
    return report_header(title, data["command"], [*lines, *tail], data["config"]["quick"])


class Progress:
    """One line per finished unit of work on stderr (``--quiet`` silences it)."""

    def __init__(self, total: int, quiet: bool = False, stream=None):
        self.total, self.done, self.quiet = total, 0, quiet
        self.t0 = time.perf_counter()
        self.stream = stream or sys.stderr

    def __call__(self, what: str) -> None:
        self.done += 1
        if not self.quiet:
            el = time.perf_counter() - self.t0
            print(f"[{self.done}/{self.total} {el:6.1f}s] {what}", file=self.stream, flush=True)


def quick_defaults(args: argparse.Namespace, **defaults: tuple[Any, Any]) -> None:
    """Fill every option of ``defaults`` left unset (None, empty) with its ``(quick, full)`` value."""
    for name, (quick, full) in defaults.items():
        if not getattr(args, name):
            setattr(args, name, quick if args.quick else full)


def parse_list(text: str, conv: Callable[[str], Any], what: str, valid: Sequence[Any] | None = None) -> list:
    """``"a,b,c"`` -> ``[conv(a), conv(b), conv(c)]``; ValueError naming the option ``what`` on bad input
    (not convertible, empty, not in ``valid``, or an integer below 1)."""
    try:
        out = [conv(s.strip()) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"{what}: expected values separated by commas, got {text!r}") from None
    if not out:
        raise ValueError(f"{what}: expected at least one value")
    for v in out:
        if valid is not None and v not in valid:
            raise ValueError(f"{what}: unknown value {v!r}; valid: {', '.join(map(str, valid))}")
        if isinstance(v, int) and v < 1:
            raise ValueError(f"{what}: values must be >= 1, got {v}")
    return out


def finish(out: str, command: str, files: Sequence[str], t0: float) -> None:
    print(f"wrote {os.path.join(out, REPORT_MD)}, {os.path.join(out, RESULTS_JSON)} and {len(files)} figure(s) "
          f"in {time.perf_counter() - t0:.0f} s")
    print(f"command: {command}")
