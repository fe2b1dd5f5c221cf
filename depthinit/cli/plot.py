"""``depthinit plot run.jsonl -o out/``: the monitor figures of a JSONL log."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ._common import MATPLOTLIB, UsageError, input_file, output_dir, positive_int, require

DPI_RANGE = (10, 1200)  # beyond 1200 a figure is hundreds of megapixels: out of memory, not sharper


def dpi(text: str) -> int:
    v = positive_int(text)
    if not DPI_RANGE[0] <= v <= DPI_RANGE[1]:
        raise argparse.ArgumentTypeError(f"must be {DPI_RANGE[0]} to {DPI_RANGE[1]}, got {v}")
    return v


NAME = "plot"
HELP = "draw the monitor figures of a JSONL log (heatmaps, profiles, Q/K/V)"


def setup(sp: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    sp.add_argument("log", help="a JSONL log written by depthinit.sinks.JSONL")
    sp.add_argument("-o", "--out", default="plots", help="output folder, created if missing (default plots)")
    sp.add_argument("--stat", default="std", help="statistic to draw: std (default), rms, absmax, mean, var, l2, "
                                                  "min, max")
    sp.add_argument("--steps", default=None, help="monitored steps of the profile figure, comma separated "
                                                  "(default: 4 steps from the first to the last)")
    sp.add_argument("--format", default="png", choices=("png", "pdf", "svg"), help="image format (default png)")
    sp.add_argument("--dpi", type=dpi, default=120, help="resolution of png figures, 10 to 1200 (default 120)")
    return run


def run(args: argparse.Namespace) -> int:
    from depthinit.plots import check_request, load_records, plot_run

    steps = None
    if args.steps is not None:
        try:
            steps = [int(s) for s in args.steps.split(",") if s.strip()]
        except ValueError:
            raise UsageError(f"--steps takes integers separated by commas, got {args.steps!r}") from None
        if not steps:
            raise UsageError("--steps is empty: give monitored steps separated by commas")
    require(MATPLOTLIB, "depthinit plot", "plots")
    input_file(args.log, "a JSONL log of depthinit.sinks.JSONL")
    records = load_records(args.log)
    check_request(records, args.stat, steps, args.log)
    output_dir(args.out, "-o/--out")
    for p in plot_run(records, args.out, stat=args.stat, steps=steps, fmt=args.format, dpi=args.dpi):
        print(p)
    return 0
