"""CPU benchmark of the fused fill (``depthinit.fill.fill_tensors``) against torch's own initialization.

In ONE run, interleaving the candidates (so machine noise hits all of them alike) and keeping the best of
``--reps``, it prints:

1. **throughput**: ``fill_tensors`` (normal) vs ``Tensor.normal_`` on one 2**26-element fp32 tensor, as a ratio
   (target >= 1.0x); the first call, which compiles the CPU block function (or loads it from inductor's
   on-disk cache), is timed and reported separately. Also uniform and bf16.
2. **models**: a 54-layer MLP (width 512, 14M parameters) and a GPT-2-style model (24 layers, d=1024,
   355M parameters, ``depthinit.models.gpt2``): default module construction (allocation + torch's default
   init), a ``torch.nn.init`` loop over the allocated parameters drawing the same distributions as the fill,
   the fused fill (tables prepared once, then run), and meta-device construction + ``to_empty`` + fused fill
   (the drop-in for default construction).

``--compile-cache`` additionally measures the first-call time in two fresh processes sharing a new, empty
inductor cache directory: cold compile, then the warm on-disk cache.

OpenMP: on an oversubscribed machine (other processes on the same cores) spin-waiting OpenMP threads slow
multi-threaded torch ops by 10-30x; the script sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets
it (``Tensor.normal_`` is single-threaded either way). Usage::

    .venv/bin/python bench/bench_init_cpu.py [--reps 5] [--threads N] [--skip-gpt2] [--compile-cache]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from depthinit import rng  # noqa: E402
from depthinit.fill import fill_tensors, prepare_fill  # noqa: E402
from depthinit.kernels._tables import DIST_CONSTANT, DIST_NORMAL, DIST_UNIFORM, FillRow  # noqa: E402


def best_of(fns: dict, reps: int) -> dict:
    """Best wall time of each callable, interleaved over ``reps`` rounds."""
    best = {k: math.inf for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t)
    return best


# ------------------------------------------------------------------------------------------------ throughput


def throughput(reps: int) -> dict:
    n = 1 << 26
    x = torch.empty(n)
    xb = torch.empty(n, dtype=torch.bfloat16)
    normal = FillRow(DIST_NORMAL, std=0.02, stream=1)
    uniform = FillRow(DIST_UNIFORM, low=-0.05, high=0.05, stream=2)
    first = {}
    for name, row in (("normal", normal), ("uniform", uniform)):
        t = time.perf_counter()
        fill_tensors([x], [row], 0)  # compiles the block function (or loads it from the on-disk cache)
        first[name] = time.perf_counter() - t
    fill_n, fill_u, fill_b = (prepare_fill([t], [r]) for t, r in ((x, normal), (x, uniform), (xb, normal)))
    t = best_of(
        {
            "fill_normal": lambda: fill_n(0),
            "torch_normal_": lambda: x.normal_(0.0, 0.02),
            "fill_uniform": lambda: fill_u(0),
            "torch_uniform_": lambda: x.uniform_(-0.05, 0.05),
            "fill_normal_bf16": lambda: fill_b(0),
            "torch_normal_bf16": lambda: xb.normal_(0.0, 0.02),
        },
        reps,
    )
    print(f"\n[throughput] one tensor of 2**26 elements, {torch.get_num_threads()} threads")
    for name in ("normal", "uniform", "normal_bf16"):
        f, b = t[f"fill_{name}"], t[f"torch_{name}" + ("_" if "bf16" not in name else "")]
        print(f"  {name:<12} fill {n / f / 1e6:7.0f} M/s   torch {n / b / 1e6:7.0f} M/s   ratio {b / f:5.2f}x")
    print(f"  first call (compile or on-disk cache load): normal {first['normal']:.1f} s, "
          f"uniform {first['uniform']:.1f} s")  # fmt: skip
    return {"times": t, "first_call_s": first, "numel": n}


# ------------------------------------------------------------------------------------------------ models


def model_rows(model: nn.Module, std_of) -> tuple[list, list]:
    """Parameters (tied ones once) and the FillRows the fused path draws: weights normal(0, std_of(p)),
    biases 0, LayerNorm weights 1."""
    params, rows = [], []
    for name, p in model.named_parameters():  # named_parameters() skips tied duplicates
        if name.endswith("bias"):
            row = FillRow(DIST_CONSTANT, mean=0.0)
        elif p.ndim == 1:
            row = FillRow(DIST_CONSTANT, mean=1.0)
        else:
            row = FillRow(DIST_NORMAL, std=std_of(p))
        params.append(p)
        rows.append(row._replace(stream=rng.stream_id(name)))
    return params, rows


def torch_init_loop(params, rows) -> None:
    with torch.no_grad():
        for p, r in zip(params, rows):
            if r.dist == DIST_CONSTANT:
                nn.init.constant_(p, r.mean)
            else:
                nn.init.normal_(p, r.mean, r.std)


def bench_model(name: str, build, std_of, reps: int) -> dict:
    t = time.perf_counter()
    model = build()
    first_build = time.perf_counter() - t
    params, rows = model_rows(model, std_of)
    n = sum(p.numel() for p in params)
    prepared = prepare_fill(params, rows)
    t = time.perf_counter()
    prepared(0)  # warm-up (compiles or loads the CPU block function if this call is large enough)
    first_fill = time.perf_counter() - t

    def meta_build_and_fill():
        with torch.device("meta"):
            m = build()
        m.to_empty(device="cpu")
        fill_tensors(*model_rows(m, std_of), seed=0)

    t = best_of(
        {
            "default_construction": build,
            "torch_init_loop": lambda: torch_init_loop(params, rows),
            "fused_fill": lambda: prepared(0),
            "fused_fill_incl_prepare": lambda: fill_tensors(params, rows, 0),
            "meta_construct_and_fill": meta_build_and_fill,
        },
        reps,
    )
    print(f"\n[{name}] {len(params)} tensors, {n / 1e6:.1f}M parameters, {torch.get_num_threads()} threads "
          f"(first build {first_build:.2f} s, first fill {first_fill:.2f} s)")  # fmt: skip
    base = t["fused_fill"]
    for k, v in t.items():
        print(f"  {k:<26} {v * 1e3:9.1f} ms   {n / v / 1e6:7.0f} M params/s   fused fill is {v / base:5.2f}x faster")
    return {"times": t, "numel": n, "tensors": len(params), "first_fill_s": first_fill}


def compile_cache_check() -> dict:
    """First-call time in two fresh processes sharing a new, empty inductor cache directory."""
    code = (
        "import time, torch; from depthinit.fill import fill_tensors; from depthinit.kernels._tables import FillRow;"
        "x = torch.empty(1 << 22); t = time.perf_counter();"
        "fill_tensors([x], [FillRow(0, std=0.02, stream=1)], 0); print(time.perf_counter() - t)"
    )
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache, PYTHONPATH=ROOT)
        for label in ("cold", "warm"):
            t = time.perf_counter()
            res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            out[label] = {"first_call_s": float(res.stdout.split()[-1]), "process_s": time.perf_counter() - t}
    print(f"\n[compile cache] fresh inductor cache dir: first call cold {out['cold']['first_call_s']:.1f} s, "
          f"then in a new process (warm on-disk cache) {out['warm']['first_call_s']:.1f} s")  # fmt: skip
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions of each candidate (best is kept)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--skip-gpt2", action="store_true", help="skip the 355M-parameter GPT-2 model")
    ap.add_argument("--gpt2-layers", type=int, default=24, help="GPT-2 layers (24 with d=1024: 355M params)")
    ap.add_argument("--compile-cache", action="store_true", help="also time cold vs warm compile in subprocesses")
    ap.add_argument("--json", default=None, help="write the numbers to this JSON file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")  # fmt: skip
    results = {"throughput": throughput(args.reps)}
    from depthinit.models import gpt2, mlp

    results["mlp54x512"] = bench_model(
        "MLP 54 x 512", lambda: mlp(depth=54, width=512), lambda p: math.sqrt(2.0 / p.shape[1]), args.reps
    )
    if not args.skip_gpt2:
        results["gpt2"] = bench_model(
            f"GPT-2 {args.gpt2_layers} x 1024",
            lambda: gpt2(n_layer=args.gpt2_layers, n_embd=1024, n_head=16),
            lambda p: 0.02,
            max(2, args.reps // 2),
        )
    if args.compile_cache:
        results["compile_cache"] = compile_cache_check()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=float)
    return results


if __name__ == "__main__":
    main()
