"""``depthinit probe``: forward/backward variance per layer of a built-in model at initialization."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ._common import FIGURE_SUFFIXES, MATPLOTLIB, UsageError, output_file, positive_int, require, seed
from .plan import add_model_arg

NAME = "probe"
HELP = "signal-propagation probe: forward/backward variance per layer at init"
DEFAULT_MODEL = "mlp:depth=54,width=256"
SCHEMES_HELP = (
    "comma-separated initializations to compare: scheme[:key=value[+key=value...]], e.g. "
    "he,xavier,depth_aware:K=1,depth_aware:K=1+distribution=uniform. Options of one scheme follow ':' "
    "and are joined by '+' (or ';', quoted); a bare key=value after a comma continues the previous "
    "scheme's options. Default: the model as built (PyTorch's own init)."
)


def setup(sp: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    from depthinit.probe import DEFAULT_THRESHOLD

    add_model_arg(sp, DEFAULT_MODEL)
    sp.add_argument("--schemes", default=None, help=SCHEMES_HELP)
    sp.add_argument("--batch", type=positive_int, default=256,
                    help="example batch size (standard-normal inputs; default %(default)s)")
    sp.add_argument("--seed", type=seed, default=0, help="init seed and backward-noise seed (default 0)")
    sp.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                    help="variance ratio beyond which a profile is exploding/vanishing (default %(default)g)")
    sp.add_argument("--plot", metavar="PNG", help="write the forward/backward variance figure here (folders are "
                                                  "created)")
    sp.add_argument("--json", metavar="PATH", help="write the full report as JSON here (folders are created)")
    sp.add_argument("--detail", action="store_true", help="also print every layer of every initialization")
    return run


def example_input(model, batch: int, seed: int):
    """A seeded batch for the model's first layer: token ids for an embedding, standard normals for a Linear."""
    import torch
    from torch import nn

    first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Embedding))), None)
    g = torch.Generator().manual_seed(seed + 1)
    if isinstance(first, nn.Embedding):
        block = getattr(model, "block_size", 64)
        return torch.randint(0, first.num_embeddings, (batch, min(block, 64)), generator=g)
    if isinstance(first, nn.Linear):
        return torch.randn(batch, first.in_features, generator=g)
    raise UsageError("cannot build an example input for this model: it starts with neither Linear nor Embedding")


def run(args: argparse.Namespace) -> int:
    from depthinit import schemes as S
    from depthinit.applications.models import build
    from depthinit.probe import parse_schemes, probe

    if not args.threshold > 1 or args.threshold == float("inf"):
        raise UsageError(f"--threshold must be a finite number > 1, got {args.threshold}")
    schemes = None if args.schemes is None else parse_schemes(args.schemes)
    for name, opts in schemes or []:
        S.check_options(S.get_scheme(name), opts)
    if args.plot is not None:
        require(MATPLOTLIB, "probe --plot", "plots")
        output_file(args.plot, "--plot", FIGURE_SUFFIXES)
    if args.json is not None:
        output_file(args.json, "--json")
    model = build(args.model)
    x = example_input(model, args.batch, args.seed)
    report = probe(model, x, schemes=schemes, seed=args.seed, threshold=args.threshold)
    print(report.table(detail=args.detail))
    if args.plot:
        report.plot(args.plot)
        print(f"wrote {args.plot}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(report.to_json())
        print(f"wrote {args.json}")
    return 0
