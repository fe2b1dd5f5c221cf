"""``depthinit repro <study>``: the reproductions of the seed studies (see :mod:`depthinit.applications.repro`).

The options of every study are declared here; each study's ``run(args, parser)`` resolves the ``--quick``
defaults, checks the values (ValueError) and does the work.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

from ._common import MATPLOTLIB, Parser, UsageError, output_dir, positive_int, require

NAME = "repro"
HELP = "reproduce the seed papers' studies (deep-mlp, std-sweep, gpt2-variance)"


def _common_args(sp: argparse.ArgumentParser, default_out: str) -> None:
    sp.add_argument("--out", default=default_out, help=f"output folder (default: {default_out})")
    sp.add_argument("--quick", action="store_true", help="CI-sized run (well under a minute)")
    sp.add_argument("--threads", type=positive_int, default=2, help="torch intra-op threads (default 2)")
    sp.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _deep_mlp_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--data", default="digits", choices=("digits", "wine", "cifar10"), help="dataset (default digits)")
    sp.add_argument("--data-dir", "--data-root", dest="data_dir", default=None,
                    help="folder of the CIFAR-10 python batches (for --data cifar10)")
    sp.add_argument("--n-train", type=positive_int, default=None, help="keep the first N training samples")
    sp.add_argument("--n-test", type=positive_int, default=None, help="keep the first N test samples")
    sp.add_argument("--depth", type=positive_int, default=54, help="number of Linear layers (default 54)")
    sp.add_argument("--width", type=positive_int, default=None, help="hidden width (default 128; quick 32)")
    sp.add_argument("--K", default="4", help="depth-aware |K| values, comma separated: each gives +K and -K "
                                              "(default 4)")
    sp.add_argument("--schedule", default="ramp", choices=("ramp", "linear"),
                    help="depth schedule of the ±K cases (default ramp)")
    sp.add_argument("--distributions", default="normal,uniform", help="comma separated (default normal,uniform)")
    sp.add_argument("--seeds", type=positive_int, default=None, help="seeds per case (default 3; quick 1)")
    sp.add_argument("--epochs", type=positive_int, default=None, help="epochs (default 40; quick 2)")
    sp.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    sp.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"),
                    help="sgd (momentum 0.9, the default) or adam")
    sp.add_argument("--batch", type=positive_int, default=128, help="batch size (default 128)")
    sp.add_argument("--target", type=float, default=None,
                    help="target test accuracy (default: digits 0.8, wine 0.9, cifar10 0.3)")


def _std_sweep_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--datasets", default="digits,wine", help="comma separated: digits, wine (default both)")
    sp.add_argument("--depth", type=positive_int, default=4, help="Linear layers of the compact MLP (default 4)")
    sp.add_argument("--widths", default=None, help="hidden widths, comma separated (default 64,256; quick 64)")
    sp.add_argument("--points-per-decade", type=positive_int, default=None,
                    help="stds per decade between 1e-4 and 1 (default 4; quick 1)")
    sp.add_argument("--std-min", type=float, default=1e-4, help="smallest std (default 1e-4)")
    sp.add_argument("--std-max", type=float, default=1.0, help="largest std (default 1)")
    sp.add_argument("--seeds", type=positive_int, default=None, help="seeds per sweep point (default 3; quick 1)")
    sp.add_argument("--compare-seeds", type=positive_int, default=None,
                    help="seeds of the Kaiming-vs-Xavier comparison (default 10; quick 2)")
    sp.add_argument("--epochs", type=positive_int, default=None,
                    help="epochs for every dataset (default: digits 20, wine 60; quick 3 and 8)")
    sp.add_argument("--lr", type=float, default=0.01, help="SGD learning rate, momentum 0.9 (default 0.01)")


def _gpt2_variance_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--n-layer", type=positive_int, default=12, help="transformer blocks (default 12)")
    sp.add_argument("--n-embd", type=positive_int, default=None, help="model width (default 64; quick 32)")
    sp.add_argument("--n-head", type=positive_int, default=4, help="attention heads (default 4)")
    sp.add_argument("--block", type=positive_int, default=None, help="context length in bytes (default 64; quick 32)")
    sp.add_argument("--batch", type=positive_int, default=16, help="sequences per step (default 16)")
    sp.add_argument("--steps", type=positive_int, default=None, help="optimizer steps (default 1500; quick 40)")
    sp.add_argument("--every", type=positive_int, default=None, help="monitor every N steps (default 10; quick 4)")
    sp.add_argument("--lr", type=float, default=2e-3, help="AdamW peak learning rate (default 2e-3)")
    sp.add_argument("--weight-decay", type=float, default=1.0,
                    help="AdamW weight decay on matrices (default 1.0: see 'Learning rate and weight decay')")
    sp.add_argument("--warmup", type=float, default=0.05, help="warm-up fraction of the steps (default 0.05)")
    sp.add_argument("--lr-schedule", default="constant", choices=("constant", "cosine"),
                    help="after warm-up: constant (default) or cosine decay to 10%%")
    sp.add_argument("--init", default="gpt2", help="depthinit scheme (default gpt2: std 0.02, residual 0.02/√(2L))")
    sp.add_argument("--corpus-bytes", type=positive_int, default=None,
                    help="bytes of stdlib source (default 2000000; quick 200000)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the init and of the batch order")


STUDY_ARGS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "deep-mlp": _deep_mlp_args, "std-sweep": _std_sweep_args, "gpt2-variance": _gpt2_variance_args}


def setup(sp: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    from depthinit.applications.repro import STUDIES, studies

    sub = sp.add_subparsers(dest="study", required=True, metavar="{" + ",".join(STUDIES) + "}", parser_class=Parser)
    runners: dict[str, Callable[[argparse.Namespace], int]] = {}
    for name, (help_, study_run) in studies().items():
        p = sub.add_parser(name, help=help_, description=help_)
        _common_args(p, f"repro-{name}")
        STUDY_ARGS[name](p)
        runners[name] = functools.partial(study_run, parser=p)

    def run(args: argparse.Namespace) -> int:
        require(MATPLOTLIB, f"depthinit repro {args.study}", "plots")
        output_dir(args.out, "--out")
        try:
            return runners[args.study](args)
        except FileNotFoundError as e:  # a missing data folder: one line
            raise UsageError(" ".join(str(e).split())) from None

    return run
