"""GPU benchmark of the fused statistics launch (depthinit.kernels.stats) against per-tensor baselines.

On a GPT-like stack of parameters (``--width``, ``--blocks``, ``--dtype``), it times with CUDA events (median of
``--reps``):

* ``layer_stats``: the fused launches (one partials launch per dtype + one merge) computing nine statistics of
  every tensor, prepared launch reused (as the monitor does every step), result left on the device;
* ``var_mean+item``: ``torch.var_mean(p)`` + ``.item()`` per tensor (what a naive monitor does);
* ``_foreach_norm``: ``torch._foreach_norm(params)``, ONE statistic (the L2 norm) for all tensors;
* ``x.sum()``: one reduction over a single buffer of the same bytes (a read-bandwidth reference),

and reports each one's time, achieved GB/s (bytes of the parameters read once), its fraction of the measured
device-to-device copy's read share (a copy of N bytes reads N bytes) and of the device's peak memory bandwidth
(from the device properties, or ``--peak-gbs``). It also checks that the fused call makes no host
synchronization (``torch.cuda.set_sync_debug_mode("error")``), that two calls are bitwise equal, and that the
figures agree with the fp64 reference.

Import-safe on a machine without a GPU; ``--device cpu`` runs the same harness on the CPU torch path (a dry run of
the script); :func:`run` returns the structured result (``bench/gpu_check.py`` calls it). Usage::

    python bench/gpu_stats.py                       # ~1.2B bf16 parameters on cuda:0
    python bench/gpu_stats.py --dtype float32 --width 2048 --blocks 24 --reps 50
    python bench/gpu_stats.py --device cpu --width 256 --blocks 4   # dry run without a GPU
    TRITON_INTERPRET=1 python bench/gpu_stats.py --device cpu --backend triton --width 64 --blocks 2 --reps 2
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _gpu import copy_bandwidth, device_name, free, gbs, time_ms, use_checkout  # noqa: E402
from _results import save_json  # noqa: E402

use_checkout()

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Fallback peaks (GB/s) when the device properties do not give the memory clock and bus width.
KNOWN_PEAKS = {"H200": 4800.0, "H100 SXM": 3350.0, "H100 PCIe": 2000.0, "H100": 3350.0, "A100-SXM4-80GB": 2039.0,
               "A100": 1555.0, "L40S": 864.0, "L4": 300.0, "A10": 600.0, "RTX 4090": 1008.0}  # fmt: skip
FUSED, LOOP, FOREACH, SUM = "layer_stats (fused)", "var_mean+item loop", "_foreach_norm (1 stat)", "x.sum() one buffer"


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


def check_no_sync(fn, device: torch.device) -> bool | None:
    """True if ``fn()`` makes no host synchronization (CUDA's sync debug mode "error"); None on CPU."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn()
        return True
    except RuntimeError:
        return False
    finally:
        torch.cuda.set_sync_debug_mode("default")


def run(
    device: str | torch.device = "cuda",
    dtype: str = "bfloat16",
    width: int = 2048,
    blocks: int = 24,
    reps: int = 20,
    loop_reps: int = 3,
    backend: str = "auto",
    peak: float | None = None,
    warmup: int = 2,
) -> dict:
    """Time the candidates and check the fused call (see the module docstring); returns a dict with ``device,
    dtype, tensors, elements, bytes, copy, peak_gbs, times`` (candidate -> seconds, the median), ``timing``
    (candidate -> :func:`_gpu.time_ms` result, ``gbs``, ``copy_fraction``, ``peak_fraction``), ``ratios``,
    ``no_host_sync``, ``bitwise_equal``, ``var_rel``, ``mean_err``, ``exact_fields_equal``. ``warmup``: untimed
    calls before the timed ones (compilation, caches)."""
    from depthinit.stats import ABSMAX, COUNT, M2, MAX, MEAN, MIN, NONFINITE, ZEROS, stats_reference, tensor_stats

    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("gpu_stats: no CUDA device (run on a GPU machine, or pass --device cpu for a dry run)")
    params = make_params(width, blocks, DTYPES[dtype], device)
    n = sum(p.numel() for p in params)
    nbytes = n * params[0].element_size()
    flat = torch.cat([p.reshape(-1) for p in params])
    peak = peak or peak_gbs(device)
    copy = copy_bandwidth(device, nbytes, reps)

    fused = lambda: tensor_stats(params, backend)  # noqa: E731  (auto: triton on CUDA, torch path on CPU)

    def var_mean_loop():
        for p in params:
            v, m = torch.var_mean(p)
            v.item(), m.item()

    timing = {
        FUSED: time_ms(fused, device, reps, warmup),
        LOOP: time_ms(var_mean_loop, device, loop_reps, min(warmup, 1)),
        FOREACH: time_ms(lambda: torch._foreach_norm(params), device, reps, warmup),
        SUM: time_ms(lambda: flat.sum(), device, reps, warmup),
    }
    flat = None  # noqa: F841  (free the copy before the checks)
    for t in timing.values():
        t["gbs"] = gbs(nbytes, t)
        t["copy_fraction"] = t["gbs"] / copy["share_gbs"]
        t["peak_fraction"] = t["gbs"] / peak if peak else None
    f = timing[FUSED]["median_ms"]
    ratios = {"vs_var_mean_loop": timing[LOOP]["median_ms"] / f, "vs_foreach_norm": timing[FOREACH]["median_ms"] / f,
              "vs_sum": timing[SUM]["median_ms"] / f}  # fmt: skip
    no_sync = check_no_sync(fused, device)
    a, b = fused(), fused()
    same = bool(torch.equal(a.nan_to_num(), b.nan_to_num()))
    ref = stats_reference(params)
    var, var_ref = a[:, M2] / a[:, COUNT], ref[:, M2] / ref[:, COUNT]
    res = {
        "device": device_name(device), "dtype": dtype, "tensors": len(params), "elements": n, "bytes": nbytes,
        "copy": copy, "peak_gbs": peak, "times": {k: t["median_ms"] * 1e-3 for k, t in timing.items()},
        "timing": timing, "ratios": ratios, "no_host_sync": no_sync, "bitwise_equal": same,
        "var_rel": ((var - var_ref).abs() / var_ref).max().item(),
        "mean_err": ((a[:, MEAN] - ref[:, MEAN]).abs() / var_ref.sqrt()).max().item(),
        "exact_fields_equal": all(bool(torch.equal(a[:, k], ref[:, k]))
                                  for k in (COUNT, MIN, MAX, ABSMAX, NONFINITE, ZEROS)),
    }  # fmt: skip
    free(device)
    return res


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description="Fused per-tensor statistics vs per-tensor loops, in GB/s.")
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a dry run")
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    ap.add_argument("--width", type=int, default=2048, help="model width d (12 d^2 parameters per block)")
    ap.add_argument("--blocks", type=int, default=24, help="number of blocks, 12 tensors each")
    ap.add_argument("--reps", type=int, default=20, help="timed repetitions (the median is reported)")
    ap.add_argument("--loop-reps", type=int, default=3, help="repetitions of the slow var_mean+item loop")
    ap.add_argument("--peak-gbs", type=float, default=None, help="override the device's peak bandwidth")
    ap.add_argument("--backend", default="auto", choices=("auto", "triton", "torch"),
                    help="auto: triton on CUDA; triton on CPU needs TRITON_INTERPRET=1 (a slow dry run)")  # fmt: skip
    ap.add_argument("--json", metavar="PATH", default=None, help="also save the result as JSON (- prints it)")
    args = ap.parse_args(argv)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --device cpu for a dry run")
    res = run(args.device, args.dtype, args.width, args.blocks, args.reps, args.loop_reps, args.backend, args.peak_gbs)
    peak = res["peak_gbs"]
    print(f"{res['device']}: {res['tensors']} tensors, {res['elements'] / 1e6:.1f}M {args.dtype} parameters, "
          f"{res['bytes'] / 1e9:.2f} GB, copy read share {res['copy']['share_gbs']:.0f} GB/s"
          + (f", peak {peak:.0f} GB/s" if peak else ""))  # fmt: skip
    for k, t in res["timing"].items():
        frac = f"  {100 * t['peak_fraction']:5.1f}% of peak" if t["peak_fraction"] else ""
        print(f"  {k:24s} {t['median_ms']:9.3f} ms  {t['gbs']:8.1f} GB/s  {100 * t['copy_fraction']:5.1f}% of copy"
              f"{frac}")  # fmt: skip
    r = res["ratios"]
    print(f"fused vs var_mean+item loop: {r['vs_var_mean_loop']:.1f}x faster")
    print(f"fused vs _foreach_norm:      {r['vs_foreach_norm']:.2f}x the speed")
    print(f"fused vs x.sum():            {r['vs_sum']:.2f}x the throughput")
    sync = {None: "n/a on CPU", True: "none (set_sync_debug_mode('error'))", False: "SYNCHRONIZES"}
    print(f"host synchronization in the fused call: {sync[res['no_host_sync']]}")
    print(f"two calls bitwise equal: {res['bitwise_equal']}")
    print(f"vs fp64 reference: variance rel. error {res['var_rel']:.1e}, mean error {res['mean_err']:.1e} std, "
          f"count/min/max/absmax/nonfinite/zeros equal: {res['exact_fields_equal']}")  # fmt: skip
    if args.json:
        save_json(res, args.json)
    return res


if __name__ == "__main__":
    main()
