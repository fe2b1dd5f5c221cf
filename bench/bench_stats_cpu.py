"""CPU benchmark of depthinit.stats.layer_stats against the per-tensor loop and the memory-read limit.

A GPT-like stack of ~100M fp32 parameters in 300 tensors (25 blocks of d=576: qkv, proj, fc1, fc2 with
biases and two LayerNorms). In ONE run, interleaving the candidates (so that machine noise hits all of
them alike) and taking the best of ``--reps`` runs, it prints:

* speed-up of ``layer_stats(params)`` over a loop of ``torch.var_mean(p)`` + ``.item()`` per tensor
  (target >= 10x);
* throughput of ``layer_stats`` relative to ``x.sum()`` over the same bytes held in one tensor, the
  memory-read limit (target >= 0.5x); also relative to a per-tensor ``p.sum()`` loop, for reference.

The first ``layer_stats`` call may build the CPU kernel (``kernels/cpu_stats.c`` with the system C compiler,
under a second, then cached), which is reported separately; the whole script takes well under a minute.
OpenMP regions are sensitive to other processes on the same cores: run it on a quiet machine, or use
``--threads 1 --clock cpu`` (CPU time of one thread, robust to other load). Usage::

    .venv/bin/python bench/bench_stats_cpu.py [--reps 15] [--loop-reps 3] [--width 576] [--blocks 25]
                                              [--threads N] [--clock cpu]
"""

from __future__ import annotations

import argparse
import time

import torch


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


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=15, help="timed repetitions of each candidate (best is kept)")
    ap.add_argument("--loop-reps", type=int, default=3, help="repetitions of the slow var_mean+item loop")
    ap.add_argument("--width", type=int, default=576, help="model width d")
    ap.add_argument("--blocks", type=int, default=25, help="number of blocks (12 tensors each)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: perf_counter; cpu: process CPU time (robust to other processes on the machine, "
                         "meaningful with --threads 1)")  # fmt: skip
    args = ap.parse_args(argv)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)

    from depthinit.stats import layer_stats

    t0 = time.perf_counter()
    params = make_params(args.width, args.blocks)
    n = sum(p.numel() for p in params)
    flat = torch.cat([p.reshape(-1) for p in params])
    print(f"{len(params)} tensors, {n / 1e6:.1f}M fp32 parameters ({n * 4 / 1e9:.2f} GB), "
          f"{torch.get_num_threads()} threads, {args.clock} clock")  # fmt: skip

    t = time.perf_counter()
    layer_stats(params, backend="torch")
    print(f"first layer_stats call (builds or loads the CPU kernel): {time.perf_counter() - t:.1f} s")

    cands = {
        "layer_stats": lambda: layer_stats(params, backend="torch").data,
        "var_mean+item loop": lambda: var_mean_loop(params),
        "x.sum() one tensor": lambda: flat.sum(),
        "p.sum() loop": lambda: [p.sum() for p in params],
    }
    best = {k: float("inf") for k in cands}
    for f in cands.values():  # warm-up
        f()
    slow = "var_mean+item loop"
    for rep in range(args.reps):
        for k, f in cands.items():
            if k == slow and rep >= args.loop_reps:
                continue
            t = clock()
            f()
            best[k] = min(best[k], clock() - t)
    gb = n * 4 / 1e9
    for k, v in best.items():
        print(f"  {k:22s} {v * 1e3:8.2f} ms  {gb / v:6.1f} GB/s")
    speedup = best["var_mean+item loop"] / best["layer_stats"]
    read_ratio = best["x.sum() one tensor"] / best["layer_stats"]
    print(f"speed-up over var_mean+.item() loop: {speedup:.1f}x (target >= 10x)")
    print(f"throughput / x.sum() throughput:      {read_ratio:.2f}x (target >= 0.5x)")
    print(f"throughput / p.sum() loop throughput: {best['p.sum() loop'] / best['layer_stats']:.2f}x")
    print(f"total benchmark time: {time.perf_counter() - t0:.0f} s")
    return {"speedup_vs_var_mean": speedup, "ratio_vs_sum": read_ratio}


if __name__ == "__main__":
    main()
