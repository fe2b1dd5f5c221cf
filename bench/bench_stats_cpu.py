"""CPU benchmark of depthinit.stats.layer_stats against the per-tensor loop and the memory-read limit.

A GPT-like stack of ~100M fp32 parameters in 300 tensors (25 blocks of d=576: qkv, proj, fc1, fc2 with
biases and two LayerNorms), and 10,000 tiny tensors of 256 elements. In ONE run, interleaving the candidates
(so that machine noise hits all of them alike), it prints the median and the spread (min-max) of ``--reps``
rounds and ratios of medians:

* speed-up of ``layer_stats(params)`` over a loop of ``torch.var_mean(p)`` + ``.item()`` per tensor
  (target >= 10x), on the stack and on the 10,000 tiny tensors;
* throughput of ``layer_stats`` relative to ``x.sum()`` over the same bytes held in one tensor, the
  memory-read limit (target >= 0.8x); also relative to a per-tensor ``p.sum()`` loop;
* the host time of one call on 10,000 one-element tensors (building the kernel's table: target <= 10 ms).

The first ``layer_stats`` call may build the CPU kernel (``kernels/cpu_stats.c`` with the system C compiler,
under a second, then cached), which is reported separately; the whole script takes well under a minute.
OpenMP regions are sensitive to other processes on the same cores: run it on a quiet machine, or use
``--threads 1 --clock cpu`` (CPU time of one thread, robust to other load). Usage::

    .venv/bin/python bench/bench_stats_cpu.py [--reps 15] [--loop-reps 3] [--width 576] [--blocks 25]
                                              [--threads N] [--clock cpu] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # the helpers beside this script
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
from _results import print_rows, rounds, save_json, timing_row  # noqa: E402


def make_params(width: int, blocks: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    d = width
    shapes = [(3 * d, d), (3 * d,), (d, d), (d,), (4 * d, d), (4 * d,), (d, 4 * d), (d,), (d,), (d,), (d,), (d,)]
    return [torch.randn(s, generator=g) * 0.02 for _ in range(blocks) for s in shapes]


def var_mean_loop(params):
    out = []
    for p in params:
        v, m = torch.var_mean(p)
        out.append((v.item(), m.item()))
    return out


SUMMARY_TARGETS = {"speedup_vs_var_mean": (">=", 10.0), "ratio_vs_sum": (">=", 0.8), "ratio_vs_sum_loop": ("", None),
                   "tiny_speedup_vs_var_mean": (">=", 10.0), "host_ms_10000": ("<=", 10.0)}  # fmt: skip
STACK, TINY, HOST = "stack", "10,000 x 256", "10,000 x 1 element"


def run(reps: int = 15, loop_reps: int = 3, width: int = 576, blocks: int = 25, threads: int | None = None,
        clock: str = "wall") -> dict:
    """Time the candidates (see the module docstring); returns ``{"config", "first_call_s", "rows", "summary",
    "targets"}``: ``rows`` one :func:`_results.timing_row` per candidate (ratio against its baseline loop, GB/s of
    reading the stack's bytes once), ``summary`` the ratios of medians and the host time (``SUMMARY_TARGETS``)."""
    timer = time.perf_counter if clock == "wall" else time.process_time
    if threads:
        torch.set_num_threads(threads)

    from depthinit.stats import layer_stats

    params = make_params(width, blocks)
    n = sum(p.numel() for p in params)
    flat = torch.cat([p.reshape(-1) for p in params])
    t = time.perf_counter()
    layer_stats(params, backend="torch")
    first_call_s = time.perf_counter() - t

    tiny = [torch.randn(256) for _ in range(10_000)]
    ones = [torch.randn(1) for _ in range(10_000)]
    # candidate -> (what is measured, callable, baseline candidate)
    cands = {
        "layer_stats": (STACK, lambda: layer_stats(params, backend="torch").data, "var_mean+item loop"),
        "var_mean+item loop": (STACK, lambda: var_mean_loop(params), None),
        "x.sum() one tensor": (STACK, lambda: flat.sum(), None),
        "p.sum() loop": (STACK, lambda: [p.sum() for p in params], None),
        "tiny: layer_stats": (TINY, lambda: layer_stats(tiny, backend="torch").data, "tiny: var_mean+item loop"),
        "tiny: var_mean+item loop": (TINY, lambda: var_mean_loop(tiny), None),
        "host: 10,000 x 1 element": (HOST, lambda: layer_stats(ones, backend="torch").data, None),
    }
    slow = ("var_mean+item loop", "tiny: var_mean+item loop")
    times = rounds({k: f for k, (_, f, _) in cands.items()}, reps, timer, dict.fromkeys(slow, loop_reps))
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [timing_row(what, k, times[k], base, med[base] if base else None, n * 4 if what == STACK else None)
            for k, (what, _, base) in cands.items()]  # fmt: skip
    summary = {"speedup_vs_var_mean": med["var_mean+item loop"] / med["layer_stats"],
               "ratio_vs_sum": med["x.sum() one tensor"] / med["layer_stats"],
               "ratio_vs_sum_loop": med["p.sum() loop"] / med["layer_stats"],
               "tiny_speedup_vs_var_mean": med["tiny: var_mean+item loop"] / med["tiny: layer_stats"],
               "host_ms_10000": med["host: 10,000 x 1 element"] * 1e3}  # fmt: skip
    config = {"reps": reps, "loop_reps": loop_reps, "width": width, "blocks": blocks, "tensors": len(params),
              "elements": n, "bytes": n * 4, "threads": torch.get_num_threads(), "clock": clock}  # fmt: skip
    return {"config": config, "first_call_s": first_call_s, "rows": rows, "summary": summary,
            "targets": {k: list(v) for k, v in SUMMARY_TARGETS.items() if v[1] is not None}}


def print_result(res: dict) -> None:
    c, s = res["config"], res["summary"]
    print(f"{c['tensors']} tensors, {c['elements'] / 1e6:.1f}M fp32 parameters ({c['bytes'] / 1e9:.2f} GB), "
          f"{c['threads']} threads, {c['clock']} clock")  # fmt: skip
    print(f"first layer_stats call (builds or loads the CPU kernel): {res['first_call_s']:.1f} s")
    print_rows(res["rows"])
    print(f"speed-up over var_mean+.item() loop:        {s['speedup_vs_var_mean']:.1f}x (target >= 10x)")
    print(f"speed-up over the loop, 10,000 x 256:      {s['tiny_speedup_vs_var_mean']:.1f}x (target >= 10x)")
    print(f"throughput / x.sum() throughput:            {s['ratio_vs_sum']:.2f}x (target >= 0.8x)")
    print(f"throughput / p.sum() loop throughput:       {s['ratio_vs_sum_loop']:.2f}x")
    print(f"host time of one call on 10,000 tensors:    {s['host_ms_10000']:.1f} ms (target <= 10 ms)")


def main(argv=None) -> dict:
    """Run, print the table; ``--json PATH`` also saves :func:`run`'s result. Returns the ``summary`` ratios."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=15, help="interleaved rounds of each candidate")
    ap.add_argument("--loop-reps", type=int, default=3, help="repetitions of the slow var_mean+item loop")
    ap.add_argument("--width", type=int, default=576, help="model width d")
    ap.add_argument("--blocks", type=int, default=25, help="number of blocks (12 tensors each)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: perf_counter; cpu: process CPU time (robust to other processes on the machine, "
                         "meaningful with --threads 1)")  # fmt: skip
    ap.add_argument("--json", metavar="PATH", default=None, help="also save the result as JSON (- prints it)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = run(args.reps, args.loop_reps, args.width, args.blocks, args.threads, args.clock)
    print_result(res)
    print(f"total benchmark time: {time.perf_counter() - t0:.0f} s")
    if args.json:
        save_json(res, args.json)
    return res["summary"]


if __name__ == "__main__":
    main()
