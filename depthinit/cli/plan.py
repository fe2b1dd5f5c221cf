"""``depthinit plan``: print the init plan of a built-in model, or validate and print a saved plan."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ._common import UsageError, add_scheme_args, scheme_options

NAME = "plan"
HELP = "print the init plan of a built-in model"
DEFAULT_MODEL = "mlp:depth=54,width=512"
MODEL_HELP = ("built-in model spec: mlp:depth=,width=,act=,in=,out=,bias= or gpt2:n_layer=,n_embd=,n_head=,vocab=,"
              "block= (default %(default)s)")
MAX_PLAN_BYTES = 64 * 2**20  # ~400 bytes a row: room for 150,000 parameter tensors; larger files are refused


def add_model_arg(sp: argparse.ArgumentParser, default: str = DEFAULT_MODEL) -> None:
    sp.add_argument("--model", default=default, help=MODEL_HELP)


def setup(sp: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    add_model_arg(sp)
    add_scheme_args(sp)
    sp.add_argument("--json", action="store_true", help="print the plan as JSON (the format of --load)")
    sp.add_argument("--load", metavar="PLAN_JSON", help="validate and print a saved plan instead of planning a model")
    return run


def load_plan(path: str):
    from ..plan import InitPlan

    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PLAN_BYTES + 1)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    if len(data) > MAX_PLAN_BYTES:
        raise UsageError(f"{path} is over {MAX_PLAN_BYTES // 2**20} MiB: not a plan")
    return InitPlan.from_json(data)


def run(args: argparse.Namespace) -> int:
    if args.load:
        p = load_plan(args.load)
    else:
        import depthinit as di
        from depthinit.applications.models import build

        opts = scheme_options(args)
        model = build(args.model, device="meta")
        p = di.plan(model, args.scheme, seed=args.seed, **opts)
    print(p.to_json() if args.json else p.table())
    return 0
