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
                                              [--threads N] [--clock cpu]
"""

from __future__ import annotations

import argparse
import statistics
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
    ap.add_argument("--reps", type=int, default=15, help="interleaved rounds of each candidate")
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
    tiny = [torch.randn(256) for _ in range(10_000)]
    ones = [torch.randn(1) for _ in range(10_000)]
    cands["tiny: layer_stats"] = lambda: layer_stats(tiny, backend="torch").data
    cands["tiny: var_mean+item loop"] = lambda: var_mean_loop(tiny)
    cands["host: 10,000 x 1 element"] = lambda: layer_stats(ones, backend="torch").data
    times = {k: [] for k in cands}
    for f in cands.values():  # warm-up
        f()
    slow = ("var_mean+item loop", "tiny: var_mean+item loop")
    for rep in range(args.reps):
        for k, f in cands.items():
            if k in slow and rep >= args.loop_reps:
                continue
            t = clock()
            f()
            times[k].append(clock() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    gb = n * 4 / 1e9
    for k, v in times.items():
        rate = f"{gb / med[k]:6.1f} GB/s" if not k.startswith(("tiny", "host")) else ""
        print(f"  {k:26s} median {med[k] * 1e3:8.2f} ms  spread {min(v) * 1e3:8.2f} - {max(v) * 1e3:8.2f} ms  {rate}")
    speedup = med["var_mean+item loop"] / med["layer_stats"]
    tiny_speedup = med["tiny: var_mean+item loop"] / med["tiny: layer_stats"]
    read_ratio = med["x.sum() one tensor"] / med["layer_stats"]
    loop_ratio = med["p.sum() loop"] / med["layer_stats"]
    host_ms = med["host: 10,000 x 1 element"] * 1e3
    print(f"speed-up over var_mean+.item() loop:        {speedup:.1f}x (target >= 10x)")
    print(f"speed-up over the loop, 10,000 x 256:      {tiny_speedup:.1f}x (target >= 10x)")
    print(f"throughput / x.sum() throughput:            {read_ratio:.2f}x (target >= 0.8x)")
    print(f"throughput / p.sum() loop throughput:       {loop_ratio:.2f}x")
    print(f"host time of one call on 10,000 tensors:    {host_ms:.1f} ms (target <= 10 ms)")
    print(f"total benchmark time: {time.perf_counter() - t0:.0f} s")
    return {"speedup_vs_var_mean": speedup, "ratio_vs_sum": read_ratio, "ratio_vs_sum_loop": loop_ratio,
            "tiny_speedup_vs_var_mean": tiny_speedup, "host_ms_10000": host_ms}  # fmt: skip


if __name__ == "__main__":
    main()
