"""GPU benchmark: one fused fill launch against per-tensor ``torch.nn.init`` and ``Tensor.normal_``, in GB/s.

For each dtype (fp32 and bf16 by default, 1 GiB of weights each) it times, with CUDA events (median of ``reps``):

* ``Tensor.normal_`` on one buffer of all the bytes (torch's own fastest random fill) against ``fused`` filling
  the same buffer (one launch, tables prepared once);
* synthetic models of 100, 1,000 and 10,000 parameter tensors holding those bytes (a mix of weight matrices and
  bias / norm vectors): ``torch_init``, a Python loop of ``torch.nn.init.normal_ / uniform_ / trunc_normal_ /
  zeros_`` per tensor; ``fused``, one launch of the fill kernel with its tables prepared once
  (``depthinit.kernels.fill.prepare_fill``, as a plan caches them); ``fused_incl_prepare``,
  ``depthinit.fill.fill_tensors`` including building the tables on the host;

and reports the write bandwidth achieved (bytes written / time), its fraction of the measured device-to-device
copy's write share (a copy of N bytes writes N bytes: the most a kernel that only writes can reach), of the data
sheet's peak where the device is known, and the speed-up over the per-tensor baseline.

Usage (a CUDA machine)::

    python bench/gpu_init.py [--tensors 100 1000 10000] [--dtype fp32 bf16] [--params N] [--json PATH]

``--dry-run`` runs the same code on CPU tensors at tiny sizes (the Triton interpreter, wall-clock times), to check
the script without a GPU. :func:`run` returns the structured result (``bench/gpu_check.py`` calls it). Importing
this module needs neither a GPU nor triton.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _gpu import copy_bandwidth, device_name, free, gbs, time_ms, use_checkout  # noqa: E402
from _results import save_json  # noqa: E402

use_checkout()

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
GIB = 1 << 30
DRY_RUN_ELEMENTS = 1 << 13


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

    from depthinit.kernels.contract import DIST_CONSTANT, DIST_NORMAL, DIST_TRUNC_NORMAL, DIST_UNIFORM, FillRow

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


def data_sheet_peak(device) -> float | None:
    """Peak HBM GB/s of a known device (vendor data sheet), else None."""
    if device.type != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name(device)
    return next((gbs_ for key, gbs_ in KNOWN_PEAKS_GBS if key in name), None)


def run(
    tensors=(100, 1000, 10000),
    dtypes=("fp32", "bf16"),
    params: int | None = None,
    seed: int = 0,
    reps: int = 10,
    dry_run: bool = False,
) -> dict:
    """Time the candidates (see the module docstring); returns ``{"device", "copy", "peak_gbs", "rows"}``.

    ``params``: elements per model (default: 1 GiB of each dtype). Each row: ``dtype, tensors, candidate,
    baseline, bytes, median_ms, min_ms, max_ms, gbs, copy_fraction, peak_fraction, speedup`` (the baseline's
    median time over the candidate's). ``dry_run``: CPU tensors, models of 4 and 16 tensors, one timed call each.
    """
    import torch

    from depthinit.fill import fill_tensors
    from depthinit.kernels.contract import DIST_NORMAL, FillRow
    from depthinit.kernels.fill import prepare_fill

    warmup = 2
    if dry_run:  # every program of the interpreter runs in NumPy: a few tensors, one timed call each
        device, reps, warmup = torch.device("cpu"), 1, 0
        tensors = sorted({min(n, 4 ** (i + 1)) for i, n in enumerate(tensors[:2])})
    elif not torch.cuda.is_available():
        raise RuntimeError("gpu_init: no CUDA device (use --dry-run to check the script on CPU)")
    else:
        device = torch.device("cuda")
    itemsize = {k: getattr(torch, v).itemsize for k, v in DTYPES.items()}
    totals = {d: DRY_RUN_ELEMENTS if dry_run else (params or GIB // itemsize[d]) for d in dtypes}
    copy = copy_bandwidth(device, max(totals[d] * itemsize[d] for d in dtypes), reps)
    peak = data_sheet_peak(device)
    rows = []

    def add(dtype, n, candidate, baseline, nbytes, t, base_t):
        g = gbs(nbytes, t)
        rows.append(dict(dtype=dtype, tensors=n, candidate=candidate, baseline=baseline, bytes=nbytes, **t, gbs=g,
                         copy_fraction=g / copy["share_gbs"], peak_fraction=g / peak if peak else None,
                         speedup=base_t["median_ms"] / t["median_ms"]))  # fmt: skip

    for d in dtypes:
        dtype = getattr(torch, DTYPES[d])
        flat = torch.empty(totals[d], dtype=dtype, device=device)
        launch = prepare_fill([flat], [FillRow(DIST_NORMAL, std=0.02, stream=1)])
        t_normal = time_ms(lambda flat=flat: flat.normal_(0.0, 0.02), device, reps, warmup)
        t_fused = time_ms(lambda launch=launch: launch(seed), device, reps, warmup)
        nbytes = flat.numel() * flat.element_size()
        add(d, 1, "Tensor.normal_", "Tensor.normal_", nbytes, t_normal, t_normal)
        add(d, 1, "fused", "Tensor.normal_", nbytes, t_fused, t_normal)
        del flat, launch
        free(device)
        for n in tensors:
            ts, frows, inits = make_model(model_shapes(n, totals[d]), dtype, device)
            nbytes = sum(t.numel() * t.element_size() for t in ts)
            launch = prepare_fill(ts, frows)

            def torch_init(inits=inits):
                with torch.no_grad():
                    for f in inits:
                        f()

            t_loop = time_ms(torch_init, device, reps, warmup)
            add(d, n, "torch_init", "torch_init", nbytes, t_loop, t_loop)
            fused = time_ms(lambda launch=launch: launch(seed), device, reps, warmup)
            add(d, n, "fused", "torch_init", nbytes, fused, t_loop)
            incl = time_ms(lambda ts=ts, frows=frows: fill_tensors(ts, frows, seed, "triton"), device, reps, warmup)
            add(d, n, "fused_incl_prepare", "torch_init", nbytes, incl, t_loop)
            del ts, launch
            free(device)
    return {"device": device_name(device), "dry_run": dry_run, "copy": copy, "peak_gbs": peak, "rows": rows}


def print_rows(res: dict) -> None:
    copy = res["copy"]
    print(f"{res['device']}: copy {copy['copy_gbs']:.0f} GB/s (write share {copy['share_gbs']:.0f} GB/s)"
          + (f", data-sheet peak {res['peak_gbs']:.0f} GB/s" if res["peak_gbs"] else ""))  # fmt: skip
    print(f"{'dtype':>5} {'tensors':>8} {'candidate':<20} {'ms':>9} {'GB/s':>8} {'% copy':>7} {'speed-up':>9}")
    for r in res["rows"]:
        print(f"{r['dtype']:>5} {r['tensors']:>8} {r['candidate']:<20} {r['median_ms']:9.3f} {r['gbs']:8.1f} "
              f"{100 * r['copy_fraction']:6.1f}% {r['speedup']:8.1f}x")  # fmt: skip


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tensors", type=int, nargs="+", default=[100, 1000, 10000], help="tensors per model")
    ap.add_argument("--params", type=int, default=None, help="elements per model (default: 1 GiB of each dtype)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--reps", type=int, default=10, help="timed calls per candidate (the median is reported)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, Triton interpreter: check the script")
    ap.add_argument("--json", metavar="PATH", default=None, help="also save run()'s result as JSON (- prints it)")
    args = ap.parse_args(argv)

    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: nothing to time (use --dry-run to check the script on CPU)")
        res = {"device": "CPU", "dry_run": False, "copy": None, "peak_gbs": None, "rows": []}
    else:
        res = run(args.tensors, args.dtype, args.params, args.seed, args.reps, args.dry_run)
        print_rows(res)
    if args.json:
        save_json(res, args.json)
    return [r for r in res["rows"] if r["tensors"] > 1]  # the per-model rows


if __name__ == "__main__":
    main()
