"""``depthinit bench``: run the micro-benchmarks of ``bench/`` and print one table.

The runner is :mod:`depthinit.applications.bench`; its :class:`BenchError` (a ``ValueError``) is a one-line error,
exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from ._common import UsageError, output_file, positive_number

NAME = "bench"
HELP = "run the micro-benchmarks of bench/ and print one table of ratios"


def setup(sp: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    from depthinit.applications.bench import ENV_DIR

    sp.add_argument("--quick", action="store_true", help="CI-sized inputs (well under a minute in all)")
    sp.add_argument("--json", metavar="PATH", default=None, help="also save the results as JSON (folders are "
                                                                 "created)")
    sp.add_argument("--bench-dir", default=None, help=f"the repository's bench/ folder (default: ${ENV_DIR}, the "
                                                      "source checkout, ./bench)")
    sp.add_argument("--only", default=None, help="comma-separated benchmark names (default all; e.g. "
                                                 "bench_stats_cpu)")
    sp.add_argument("--threads", type=int, default=None,
                    help="OMP_NUM_THREADS of the benchmark processes (default: as inherited)")
    sp.add_argument("--timeout", type=positive_number, default=None,
                    help="seconds per benchmark (default 120 with --quick, else 900)")
    sp.add_argument("--list", action="store_true", help="list the benchmarks found and exit")
    return run


def run(args: argparse.Namespace) -> int:
    from depthinit.applications.bench import (
        Row,
        discover,
        find_bench_dir,
        is_pytest_benchmark,
        run_all,
        save_json,
        table,
    )

    bench_dir = find_bench_dir(args.bench_dir)
    if args.list:
        for f in discover(bench_dir):
            kind = "pytest-benchmark" if is_pytest_benchmark(os.path.join(bench_dir, f)) else "script"
            print(f"{f.removesuffix('.py'):28s} {kind}{' (GPU)' if f.startswith('gpu_') else ''}")
        return 0
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    if args.json:
        output_file(args.json, "--json")
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    res = run_all(bench_dir, args.quick, only, args.threads, args.timeout,
                  log=lambda m: print(m, file=sys.stderr, flush=True))
    rows = [Row(**r) for r in res["rows"]]
    print(f"depthinit bench{' --quick' if args.quick else ''}: {res['device']}, benchmarks from {res['bench_dir']}; "
          f"every ratio is against a baseline measured in the same run")
    print(table(rows, show_gbs=res["gpu"]))
    if args.quick:
        print("--quick: CI-sized inputs check that every benchmark runs; fixed costs dominate at these sizes, so "
              "the targets apply to the full-size run (depthinit bench)")
    failed = [r for r in res["benchmarks"] if r["returncode"] not in (0, None)]
    print(f"{len(res['benchmarks'])} benchmark(s), {len(failed)} failed, {len(res['skipped'])} skipped, "
          f"{res['wall_s']:.0f} s")
    if args.json:
        save_json(res, args.json)
        print(f"saved {args.json}")
    return 1 if failed else 0
