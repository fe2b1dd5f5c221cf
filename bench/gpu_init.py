"""GPU benchmark: per-tensor ``torch.nn.init`` against one fused fill launch, in achieved GB/s vs the peak.

For synthetic models of 100, 1,000 and 10,000 parameter tensors (``--params`` elements in all, a realistic mix
of weight matrices and bias / norm vectors), it times with ``triton.testing.do_bench``:

* ``torch_init``: a Python loop of ``torch.nn.init.normal_ / uniform_ / trunc_normal_ / zeros_`` per tensor;
* ``fused``: one launch of the fill kernel, tables prepared once (``depthinit.kernels.fill.prepare_fill``)
  as a plan caches them;
* ``fused_incl_prepare``: ``depthinit.fill.fill_tensors`` including building the tables on the host.

and prints the time, the write bandwidth achieved (bytes written / time) and its fraction of the device's peak
memory bandwidth: a table of known peaks (A100, H100, H200), else a measured device-to-device copy.

Usage (a CUDA machine)::

    python bench/gpu_init.py [--tensors 100 1000 10000] [--params 268435456] [--dtype bf16]

``--dry-run`` runs the same code on CPU with tiny sizes (the Triton interpreter and a wall clock instead of
``do_bench``), to check the script without a GPU. Importing this module needs neither a GPU nor triton.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Peak HBM bandwidth in GB/s (vendor data sheets), matched against torch.cuda.get_device_name().
KNOWN_PEAKS_GBS = [
    ("H200", 4800.0),
    ("H100 PCIe", 2000.0),
    ("H100 NVL", 3900.0),
    ("H100", 3350.0),  # SXM5
    ("A100-SXM4-80GB", 2039.0),
    ("A100 80GB PCIe", 1935.0),
    ("A100-PCIE-40GB", 1555.0),
    ("A100", 1555.0),
]
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def model_shapes(n_tensors: int, total: int) -> list[tuple[int, ...]]:
    """``n_tensors`` shapes holding about ``total`` elements: every 4th a vector (bias / norm), the rest
    matrices of width 1024 whose heights vary by up to 2x."""
    n_vec = n_tensors // 4
    n_mat = n_tensors - n_vec
    vec = 1024
    per_mat = max(1024, (total - n_vec * vec) // max(n_mat, 1))
    shapes = []
    for i in range(n_tensors):
        if i % 4 == 3:
            shapes.append((vec,))
        else:
            rows = max(1, int(per_mat / 1024 * (0.5 + (i % 7) / 6.0)))
            shapes.append((rows, 1024))
    return shapes


def make_model(shapes, dtype, device):
    """Tensors and the FillRows / torch.nn.init calls that draw the same distributions."""
    import torch

    from depthinit.kernels._tables import DIST_CONSTANT, DIST_NORMAL, DIST_TRUNC_NORMAL, DIST_UNIFORM, FillRow

    tensors, rows, inits = [], [], []
    for i, s in enumerate(shapes):
        t = torch.empty(s, dtype=dtype, device=device)
        kind = "vector" if len(s) == 1 else ("normal", "uniform", "trunc_normal")[i % 3]
        if kind == "vector":
            rows.append(FillRow(DIST_CONSTANT, mean=0.0, stream=i))
            inits.append(lambda t=t: torch.nn.init.zeros_(t))
        elif kind == "normal":
            rows.append(FillRow(DIST_NORMAL, std=0.02, stream=i))
            inits.append(lambda t=t: torch.nn.init.normal_(t, 0.0, 0.02))
        elif kind == "uniform":
            rows.append(FillRow(DIST_UNIFORM, low=-0.03, high=0.03, stream=i))
            inits.append(lambda t=t: torch.nn.init.uniform_(t, -0.03, 0.03))
        else:
            rows.append(FillRow(DIST_TRUNC_NORMAL, std=0.02, low=-0.04, high=0.04, stream=i))
            inits.append(lambda t=t: torch.nn.init.trunc_normal_(t, 0.0, 0.02, -0.04, 0.04))
        tensors.append(t)
    return tensors, rows, inits


def peak_bandwidth(device) -> tuple[float, str]:
    """(GB/s, source): the data-sheet peak of a known device, else a measured device-to-device copy."""
    import torch

    name = torch.cuda.get_device_name(device)
    for key, gbs in KNOWN_PEAKS_GBS:
        if key in name:
            return gbs, f"data sheet ({name})"
    from triton.testing import do_bench

    src = torch.empty(1 << 28, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src))
    return 2 * src.numel() / (ms * 1e-3) / 1e9, f"measured copy ({name})"


def timer(dry_run: bool):
    if not dry_run:
        from triton.testing import do_bench

        return lambda fn: do_bench(fn, warmup=5, rep=50)

    def wall_ms(fn, reps: int = 2) -> float:
        fn()
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best * 1e3

    return wall_ms


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tensors", type=int, nargs="+", default=[100, 1000, 10000], help="tensors per model")
    ap.add_argument("--params", type=int, default=1 << 28, help="elements per model (default 2**28)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, Triton interpreter: check the script")
    args = ap.parse_args(argv)

    import torch

    from depthinit.fill import fill_tensors
    from depthinit.kernels.fill import prepare_fill

    if args.dry_run:
        device, sizes, total = torch.device("cpu"), [t for t in args.tensors if t <= 100] or [10], 1 << 14
        peak, source = float("nan"), "dry run (CPU, Triton interpreter)"
    else:
        if not torch.cuda.is_available():
            print("no CUDA device: nothing to time (use --dry-run to check the script on CPU)")
            return []
        device, sizes, total = torch.device("cuda"), args.tensors, args.params
        peak, source = peak_bandwidth(device)
    dtype = getattr(torch, DTYPES[args.dtype])
    backend = "triton"  # on CPU tensors (dry run): the interpreter, like the prepared launch
    bench = timer(args.dry_run)
    print(f"peak bandwidth {peak:.0f} GB/s ({source}); dtype {args.dtype}; {total:,} elements per model")
    print(f"{'tensors':>8} {'candidate':<20} {'ms':>9} {'GB/s':>8} {'% peak':>7} {'vs torch':>9}")
    results = []
    for n in sizes:
        tensors, rows, inits = make_model(model_shapes(n, total), dtype, device)
        nbytes = sum(t.numel() * t.element_size() for t in tensors)
        launch = prepare_fill(tensors, rows)

        def torch_init(inits=inits):
            with torch.no_grad():
                for f in inits:
                    f()

        candidates = {
            "torch_init": torch_init,
            "fused": lambda launch=launch: launch(args.seed),
            "fused_incl_prepare": lambda tensors=tensors, rows=rows: fill_tensors(tensors, rows, args.seed, backend),
        }
        times = {k: bench(fn) for k, fn in candidates.items()}
        for k, ms in times.items():
            gbs = nbytes / (ms * 1e-3) / 1e9
            speedup = times["torch_init"] / ms
            row = dict(tensors=n, candidate=k, ms=ms, gbs=gbs, peak_fraction=gbs / peak, speedup=speedup)
            results.append(row)
            print(f"{n:>8} {k:<20} {ms:9.3f} {gbs:8.1f} {100 * gbs / peak:6.1f}% {row['speedup']:8.1f}x")
    return results


if __name__ == "__main__":
    main()
