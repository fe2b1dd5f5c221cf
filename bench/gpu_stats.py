"""GPU benchmark of the fused statistics launch (depthinit.kernels.stats) against per-tensor baselines.

On a GPT-like stack of parameters (``--width``, ``--blocks``, ``--dtype``), it times with CUDA events:

* ``layer_stats``: the fused launches (one partials launch per dtype + one merge), prepared launch
  reused (as the monitor does every step), result left on the device;
* ``var_mean+item``: ``torch.var_mean(p)`` + ``.item()`` per tensor (what a naive monitor does);
* ``_foreach_norm``: ``torch._foreach_norm(params)``, ONE statistic (the L2 norm) for all tensors;
* ``x.sum()``: one reduction over a single buffer of the same bytes (the read-bandwidth reference),

and prints each one's time, achieved GB/s (bytes of the parameters read once) and the fraction of the
device's peak memory bandwidth (from the device properties, or ``--peak-gbs``). It also checks that the
fused call makes no host synchronization (``torch.cuda.set_sync_debug_mode("error")``), that two calls
are bitwise equal, and that the figures agree with the fp64 reference.

Import-safe on a machine without a GPU; ``--device cpu`` runs the same harness on the CPU torch path
(a dry run of the script). Usage::

    python bench/gpu_stats.py                       # ~1.2B bf16 parameters on cuda:0
    python bench/gpu_stats.py --dtype float32 --width 2048 --blocks 24 --reps 50
    python bench/gpu_stats.py --device cpu --width 256 --blocks 4   # dry run without a GPU
    TRITON_INTERPRET=1 python bench/gpu_stats.py --device cpu --backend triton --width 64 --blocks 2 --reps 2
"""

from __future__ import annotations

import argparse
import time

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Fallback peaks (GB/s) when the device properties do not give the memory clock and bus width.
KNOWN_PEAKS = {"H200": 4800.0, "H100 SXM": 3350.0, "H100 PCIe": 2000.0, "H100": 3350.0, "A100-SXM4-80GB": 2039.0,
               "A100": 1555.0, "L40S": 864.0, "L4": 300.0, "A10": 600.0, "RTX 4090": 1008.0}  # fmt: skip


def peak_gbs(device: torch.device) -> float | None:
    """Theoretical DRAM bandwidth of ``device`` in GB/s (2 transfers per clock x bus width), if known."""
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    clock_khz = getattr(props, "memory_clock_rate", None)
    bus_bits = getattr(props, "memory_bus_width", None)
    if clock_khz and bus_bits:
        return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9
    for key, value in KNOWN_PEAKS.items():
        if key in props.name:
            return value
    return None


def make_params(width: int, blocks: int, dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
    d = width
    shapes = [(3 * d, d), (3 * d,), (d, d), (d,), (4 * d, d), (4 * d,), (d, 4 * d), (d,), (d,), (d,), (d,), (d,)]
    g = torch.Generator(device=device).manual_seed(0)
    return [torch.randn(s, generator=g, device=device, dtype=torch.float32).mul_(0.02).to(dtype)
            for _ in range(blocks) for s in shapes]  # fmt: skip


class Timer:
    """Best time of ``reps`` calls: CUDA events on a GPU (no sync inside the loop), perf_counter on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn, reps: int) -> float:
        fn()  # warm-up (compilation, caches)
        if not self.cuda:
            best = float("inf")
            for _ in range(reps):
                t = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t)
            return best
        torch.cuda.synchronize()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        for s, e in zip(starts, ends):
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        return min(s.elapsed_time(e) for s, e in zip(starts, ends)) / 1e3


def check_no_sync(fn, device: torch.device) -> str:
    if device.type != "cuda":
        return "n/a on CPU"
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return "verified (set_sync_debug_mode('error'))"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description="Fused per-tensor statistics vs per-tensor loops, in GB/s.")
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a dry run")
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    ap.add_argument("--width", type=int, default=2048, help="model width d (12 d^2 parameters per block)")
    ap.add_argument("--blocks", type=int, default=24, help="number of blocks, 12 tensors each")
    ap.add_argument("--reps", type=int, default=20, help="timed repetitions (the best is reported)")
    ap.add_argument("--loop-reps", type=int, default=3, help="repetitions of the slow var_mean+item loop")
    ap.add_argument("--peak-gbs", type=float, default=None, help="override the device's peak bandwidth")
    ap.add_argument("--backend", default="auto", choices=("auto", "triton", "torch"),
                    help="auto: triton on CUDA; triton on CPU needs TRITON_INTERPRET=1 (a slow dry run)")  # fmt: skip
    args = ap.parse_args(argv)

    from depthinit.stats import ABSMAX, COUNT, M2, MAX, MEAN, MIN, NONFINITE, ZEROS, stats_reference, tensor_stats

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --device cpu for a dry run")
    dtype = DTYPES[args.dtype]
    params = make_params(args.width, args.blocks, dtype, device)
    n = sum(p.numel() for p in params)
    nbytes = n * params[0].element_size()
    flat = torch.cat([p.reshape(-1) for p in params])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = args.peak_gbs or peak_gbs(device)
    print(f"{name}: {len(params)} tensors, {n / 1e6:.1f}M {args.dtype} parameters, {nbytes / 1e9:.2f} GB"
          + (f", peak {peak:.0f} GB/s" if peak else ""))  # fmt: skip

    fused = lambda: tensor_stats(params, args.backend)  # noqa: E731  (auto: triton on CUDA, torch path on CPU)

    def var_mean_loop():
        for p in params:
            v, m = torch.var_mean(p)
            v.item(), m.item()

    timer = Timer(device)
    results = {
        "layer_stats (fused)": timer(fused, args.reps),
        "var_mean+item loop": timer(var_mean_loop, args.loop_reps),
        "_foreach_norm (1 stat)": timer(lambda: torch._foreach_norm(params), args.reps),
        "x.sum() one buffer": timer(lambda: flat.sum(), args.reps),
    }
    for k, t in results.items():
        gbs = nbytes / t / 1e9
        frac = f"  {100 * gbs / peak:5.1f}% of peak" if peak else ""
        print(f"  {k:24s} {t * 1e3:9.3f} ms  {gbs:8.1f} GB/s{frac}")
    t_fused = results["layer_stats (fused)"]
    print(f"fused vs var_mean+item loop: {results['var_mean+item loop'] / t_fused:.1f}x faster")
    print(f"fused vs _foreach_norm:      {results['_foreach_norm (1 stat)'] / t_fused:.2f}x the speed")
    print(f"fused vs x.sum():            {results['x.sum() one buffer'] / t_fused:.2f}x the throughput")

    print(f"host synchronization in the fused call: {check_no_sync(fused, device)}")
    a, b = fused(), fused()
    same = torch.equal(a.nan_to_num(), b.nan_to_num())
    print(f"two calls bitwise equal: {same}")
    ref = stats_reference(params)
    var, var_ref = a[:, M2] / a[:, COUNT], ref[:, M2] / ref[:, COUNT]
    var_rel = ((var - var_ref).abs() / var_ref).max().item()
    mean_err = ((a[:, MEAN] - ref[:, MEAN]).abs() / var_ref.sqrt()).max().item()
    exact = all(torch.equal(a[:, f], ref[:, f]) for f in (COUNT, MIN, MAX, ABSMAX, NONFINITE, ZEROS))
    print(f"vs fp64 reference: variance rel. error {var_rel:.1e}, mean error {mean_err:.1e} std, "
          f"count/min/max/absmax/nonfinite/zeros equal: {exact}")  # fmt: skip
    return {"times": results, "bitwise_equal": same, "var_rel": var_rel}


if __name__ == "__main__":
    main()
