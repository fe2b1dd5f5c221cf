"""``depthinit demo``: probe, train with the monitor on and write a report (see :mod:`depthinit.applications.demo`)."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable

from ._common import DEMO_PACKAGES, output_dir, require

NAME = "demo"
HELP = ("the main job: probe He / Xavier / depth-aware on a 54-layer MLP, train each with the monitor on, "
        "write a report")


def setup(sp: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    from depthinit.applications.demo import DEFAULT_OUT, DEFAULT_SCHEMES, DemoConfig

    d, q = DemoConfig(), DemoConfig.quick_config()
    sp.add_argument("--out", default=DEFAULT_OUT, help="report folder, created if missing (default %(default)s)")
    sp.add_argument("--quick", action="store_true", help=f"width {q.width}, {q.epochs} epochs: a smoke run in well "
                                                         "under 30 s")
    sp.add_argument("--data", default=d.data, choices=("digits", "wine", "cifar10"),
                    help="dataset: digits (default) or wine, bundled with scikit-learn, or cifar10 (local files, "
                         "--data-root)")
    sp.add_argument("--data-root", help="folder holding the CIFAR-10 python batches (data_batch_1.., test_batch)")
    sp.add_argument("--n-train", type=int, help="keep the first N training samples (cifar10; default all)")
    sp.add_argument("--n-test", type=int, help="keep the first N test samples (cifar10; default all)")
    sp.add_argument("--depth", type=int, help=f"Linear layers (default {d.depth})")
    sp.add_argument("--width", type=int, help=f"hidden width (default {d.width}; --quick {q.width})")
    sp.add_argument("--epochs", type=int, help=f"training epochs (default {d.epochs}; --quick {q.epochs})")
    sp.add_argument("--batch-size", type=int, help=f"minibatch size (default {d.batch_size})")
    sp.add_argument("--optimizer", choices=("adam", "sgd"), help=f"optimizer (default {d.optimizer})")
    sp.add_argument("--lr", type=float, help=f"learning rate (default {d.lr:g}; --quick {q.lr:g})")
    sp.add_argument("--seed", type=int, help=f"init seed of every scheme, split and shuffling seed (default "
                                             f"{d.seed})")
    sp.add_argument("--threads", type=int, help=f"torch intra-op threads (default {d.threads}: the tensors are small, "
                                                "one thread wastes nothing and never oversubscribes a busy machine)")
    sp.add_argument("--schemes", help="initializations, as `depthinit probe --schemes` (default: "
                                      + ",".join(DEFAULT_SCHEMES) + ")")
    return run


def config_from_args(args: argparse.Namespace):
    """The :class:`~depthinit.applications.demo.DemoConfig` of parsed ``depthinit demo`` arguments."""
    from depthinit.applications.demo import DemoConfig
    from depthinit.probe import parse_schemes, scheme_label

    keys = ("depth", "width", "epochs", "batch_size", "optimizer", "lr", "seed", "threads")
    over = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    over.update(data=args.data, data_root=args.data_root, n_train=args.n_train, n_test=args.n_test)
    if args.schemes:
        over["schemes"] = tuple(scheme_label(n, o) for n, o in parse_schemes(args.schemes))
    return DemoConfig.quick_config(**over) if args.quick else DemoConfig(**over)


def run(args: argparse.Namespace) -> int:
    from depthinit.applications.demo import check_config, run_demo

    packages = DEMO_PACKAGES if args.data != "cifar10" else {"matplotlib": "matplotlib"}
    require(packages, "depthinit demo", "demo")
    cfg = config_from_args(args)
    check_config(cfg)
    output_dir(args.out, "--out")
    argv = sys.argv[2:] if len(sys.argv) > 1 and sys.argv[1] == "demo" else []
    run_demo(cfg, args.out, command=shlex.join(["depthinit", "demo", *argv]))
    return 0
