"""``depthinit stats``: initialize a built-in model and print its per-parameter statistics."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ._common import add_scheme_args, check_device, scheme_options
from .plan import add_model_arg

NAME = "stats"
HELP = "initialize a built-in model and print its per-parameter statistics"


def setup(sp: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    add_model_arg(sp)
    add_scheme_args(sp)
    sp.add_argument("--device", default="cpu", help="where to materialize the model: cpu (default), cuda, cuda:N")
    return run


def run(args: argparse.Namespace) -> int:
    import depthinit as di
    from depthinit.applications.models import build

    check_device(args.device)
    opts = scheme_options(args)
    model = build(args.model, device="meta")
    di.plan(model, args.scheme, seed=args.seed, **opts)  # every option checked before memory is allocated
    plan = di.materialize(model, device=args.device, scheme=args.scheme, seed=args.seed, **opts)
    stats = di.layer_stats(model)
    print(f"{plan.scheme} init of {args.model} (seed {args.seed}): per-parameter statistics, one fused pass")
    print(stats)
    return 0
