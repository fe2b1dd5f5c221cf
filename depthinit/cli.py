"""``depthinit`` command line: ``plan | probe | stats | bench | repro | demo | plot``.

Bad input (an unknown scheme, a malformed model spec, a bad K) prints one line ``depthinit: error: ...``
and exits with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

EXIT_USAGE = 2
MAX_PLAN_BYTES = 64 * 2**20  # ~400 bytes a row: room for 150,000 parameter tensors; larger files are refused


class UsageError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise UsageError(message)


def _number(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    return v


def _scheme_options(args: argparse.Namespace) -> dict:
    opts = {}
    for key in ("K", "schedule", "distribution", "nonlinearity", "base", "std"):
        v = getattr(args, key, None)
        if v is not None:
            opts[key] = v
    for item in getattr(args, "option", None) or []:
        k, eq, v = item.partition("=")
        if not eq:
            raise UsageError(f"--option takes key=value, got {item!r}")
        opts[k] = _parse_value(v)
    return opts


def _parse_value(v: str):
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    return v


def cmd_plan(args: argparse.Namespace) -> int:
    import depthinit as di
    from depthinit.models import build

    if args.load:
        try:
            with open(args.load, "rb") as f:
                data = f.read(MAX_PLAN_BYTES + 1)
        except OSError as e:
            raise UsageError(f"cannot read {args.load}: {e.strerror}") from None
        if len(data) > MAX_PLAN_BYTES:
            raise UsageError(f"{args.load} is over {MAX_PLAN_BYTES // 2**20} MiB: not a plan")
        p = di.InitPlan.from_json(data)
    else:
        model = build(args.model, device="meta")
        p = di.plan(model, args.scheme, seed=args.seed, **_scheme_options(args))
    if args.json:
        print(p.to_json())
    else:
        print(p.table())
    return 0


def _add_scheme_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--scheme", default="depth_aware", help="init scheme (see `depthinit schemes`)")
    sp.add_argument("--K", type=_number, help="depth-aware hyperparameter K")
    sp.add_argument("--schedule", help="depth schedule: constant, ramp, linear")
    sp.add_argument("--distribution", help="normal, uniform or trunc_normal")
    sp.add_argument("--nonlinearity", help="activation the gain is computed for (relu, gelu, tanh, ...)")
    sp.add_argument("--std", type=_number, help="fixed std (gpt2, normal, trunc_normal)")
    sp.add_argument("--option", action="append", metavar="KEY=VALUE", help="any other scheme option")
    sp.add_argument("--seed", type=int, default=0)


def cmd_schemes(args: argparse.Namespace) -> int:
    from depthinit.schemes import SCHEMES

    for s in SCHEMES.values():
        opts = ", ".join(f"{k}={v!r}" for k, v in s.options.items())
        alias = f" (aliases: {', '.join(s.aliases)})" if s.aliases else ""
        print(f"{s.name}{alias}\n    {s.summary()}\n    options: {opts or '-'}")
    return 0


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def _setup_plan(sp: argparse.ArgumentParser):
    sp.add_argument(
        "--model",
        default="mlp:depth=54,width=512",
        help="built-in model spec: mlp:depth=,width=,act=,in=,out= or gpt2:n_layer=,n_embd=,n_head=,vocab=,block=",
    )
    _add_scheme_args(sp)
    sp.add_argument("--json", action="store_true", help="print the plan as JSON")
    sp.add_argument("--load", metavar="PLAN_JSON", help="validate and print a saved plan instead of planning a model")
    return cmd_plan


def cmd_stats(args: argparse.Namespace) -> int:
    import depthinit as di
    from depthinit.models import build

    model = build(args.model, device="meta")
    plan = di.materialize(model, device=args.device, scheme=args.scheme, seed=args.seed, **_scheme_options(args))
    stats = di.layer_stats(model)
    print(f"{plan.scheme} init of {args.model} (seed {args.seed}): per-parameter statistics, one fused pass")
    print(stats)
    return 0


def _setup_stats(sp: argparse.ArgumentParser):
    sp.add_argument("--model", default="mlp:depth=54,width=512", help="built-in model spec (as for `plan`)")
    _add_scheme_args(sp)
    sp.add_argument("--device", default="cpu", help="where to materialize the model (cpu, cuda)")
    return cmd_stats


COMMANDS["plan"] = ("print the init plan of a built-in model", _setup_plan)
COMMANDS["stats"] = ("initialize a built-in model and print its per-layer statistics", _setup_stats)
COMMANDS["schemes"] = ("list the init schemes and their options", lambda sp: cmd_schemes)


def _load_extensions() -> None:
    """Subcommands that live beside their feature (probe, stats, monitor plots, demo, bench, repro)."""
    import importlib

    for mod in ("depthinit.probe", "depthinit.stats", "depthinit.plots", "depthinit.demo", "depthinit.bench",
                "depthinit.repro"):
        try:
            m = importlib.import_module(mod)
        except ImportError as e:
            if e.name == mod:  # the feature is not there (yet)
                continue
            raise
        reg = getattr(m, "register_cli", None)
        if reg is not None:
            reg(COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    _load_extensions()
    parser = _Parser(prog="depthinit", description="Depth-aware initialization and variance monitoring.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (help_, setup) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(_run=setup(sp))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args._run(args) or 0)
    except (UsageError, ValueError, NotImplementedError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"depthinit: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
