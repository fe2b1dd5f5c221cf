"""CPU benchmark of the fill (``plan.apply()``, ``fill_tensors``) against what a user would run instead.

In ONE process, interleaving the candidates round by round (so that machine noise hits all of them alike), it
reports the median and the spread (min-max) of ``--reps`` rounds, and the ratio of medians:

1. **throughput**: ``fill_tensors`` vs ``Tensor.normal_`` / ``Tensor.uniform_`` on one 2**26-element fp32 tensor
   (target >= 1.2x for normal), and bf16;
2. **steady state**: ``plan.apply()`` again (tables cached) vs a ``torch.nn.init`` loop drawing the same
   distributions, for a 54-layer MLP of width 128 and 512, 2,000 tensors of 64x64, 10,000 tensors of 16x16
   and HF GPT-2 355M (``transformers.GPT2LMHeadModel`` from a config); target >= 1.5x each; also the host time
   of preparing the tables (``prepare_fill``) on a cold plan;
3. **first call** (``--first-call``): ``di.init_`` of a 4.2M-parameter MLP in a fresh process with an empty
   kernel cache directory (builds the C kernel): target <= 1 s;
4. **Llama 309M** (``--llama``): HF's own ``LlamaForCausalLM(config)`` construction (with its init) vs
   ``meta`` -> ``to_empty`` -> ``di.init_(model, "normal")``, each the first model of a fresh process (the first
   call included, no allocator state left by the other candidate); target >= 3x.

OpenMP: on an oversubscribed machine spin-waiting OpenMP threads slow multi-threaded torch ops by 10-30x; the
script sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it. Usage::

    .venv/bin/python bench/bench_init_cpu.py [--reps 5] [--threads 2] [--skip-gpt2] [--first-call] [--llama]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # the helpers beside this script
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))

from _results import print_rows, rounds, save_json, timing_row  # noqa: E402

import depthinit as di  # noqa: E402
from depthinit.fill import prepare_fill, warmup_cpu  # noqa: E402
from depthinit.kernels.contract import DIST_CONSTANT, DIST_NORMAL, DIST_TRUNC_NORMAL, DIST_UNIFORM, FillRow  # noqa: E402


def summary(times: list[float]) -> dict:
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def report(title: str, times: dict[str, list[float]], base: str, target: str, ratio_target: float) -> dict:
    """The comparison as data: ``title``, ``times`` (candidate -> median / min / max s), ``ratio``
    (``median(base) / median(target)``), ``target`` (the ratio's target), ``rows`` (one
    :func:`_results.timing_row` per candidate, its ratio against ``base``)."""
    out = {k: summary(v) for k, v in times.items()}
    base_s = out[base]["median"]
    rows = [timing_row(title, k, v, None if k == base else base, None if k == base else base_s) for k, v in
            times.items()]  # fmt: skip
    return {"title": title, "times": out, "ratio": base_s / out[target]["median"], "target": ratio_target,
            "baseline": base, "candidate": target, "rows": rows}


def print_report(res: dict) -> None:
    """Print one comparison of :func:`report` (and the steady-state extras) from its data."""
    print(f"\n[{res['title']}]")
    print_rows(res["rows"])
    verdict = "meets" if res["ratio"] >= res["target"] else "MISSES"
    print(f"  {res['candidate']} is {res['ratio']:.2f}x {res['baseline']} (target >= {res['target']}x: {verdict})")
    if "ratio_cached_fill" in res:
        p = res["prepare_s"]
        print(f"  the cached fill alone (what plan.apply() runs after its own per-call checks) is "
              f"{res['ratio_cached_fill']:.2f}x the loop")  # fmt: skip
        print(f"  preparing the tables (prepare_fill): median {p['median'] * 1e3:.1f} ms, "
              f"spread {p['min'] * 1e3:.1f} - {p['max'] * 1e3:.1f} ms")  # fmt: skip


def print_first_call(out: dict) -> None:
    print(f"\n[first di.init_ of a {out['empty cache']['params'] / 1e6:.1f}M-parameter MLP in a fresh process]")
    for label, r in out.items():
        print(f"  {label:<12} first call {r['first_call_s']:.2f} s (target <= 1 s), of which the C compiler used "
              f"{r['compiler_cpu_s']:.2f} s of CPU")  # fmt: skip


def print_results(results: dict) -> None:
    """The human report of :func:`run`'s result."""
    for key, entry in results.items():
        if key == "first_call":
            print_first_call(entry)
        elif "ratio" in entry:
            print_report(entry)
        else:  # the throughput comparisons
            for sub in entry.values():
                print_report(sub)


# ------------------------------------------------------------------------------------------------ throughput


def throughput(reps: int) -> dict:
    n = 1 << 26
    x = torch.empty(n)
    xb = torch.empty(n, dtype=torch.bfloat16)
    fill_n = prepare_fill([x], [FillRow(DIST_NORMAL, std=0.02, stream=1)])
    fill_u = prepare_fill([x], [FillRow(DIST_UNIFORM, low=-0.05, high=0.05, stream=2)])
    fill_b = prepare_fill([xb], [FillRow(DIST_NORMAL, std=0.02, stream=3)])
    t = rounds(
        {
            "fill normal": lambda: fill_n(0),
            "Tensor.normal_": lambda: x.normal_(0.0, 0.02),
            "fill uniform": lambda: fill_u(0),
            "Tensor.uniform_": lambda: x.uniform_(-0.05, 0.05),
            "fill normal bf16": lambda: fill_b(0),
            "Tensor.normal_ bf16": lambda: xb.normal_(0.0, 0.02),
        },
        reps,
    )
    res = {"normal": report("2**26 fp32, normal", {k: t[k] for k in ("fill normal", "Tensor.normal_")},
                            "Tensor.normal_", "fill normal", 1.2)}  # fmt: skip
    res["uniform"] = report("2**26 fp32, uniform", {k: t[k] for k in ("fill uniform", "Tensor.uniform_")},
                            "Tensor.uniform_", "fill uniform", 1.2)  # fmt: skip
    res["bf16"] = report("2**26 bf16, normal", {k: t[k] for k in ("fill normal bf16", "Tensor.normal_ bf16")},
                         "Tensor.normal_ bf16", "fill normal bf16", 1.2)  # fmt: skip
    return res


# ------------------------------------------------------------------------------------------------ models


class Tensors(nn.Module):
    """``count`` bias-free square Linear layers (a model of many small tensors)."""

    def __init__(self, count: int, size: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(size, size, bias=False) for _ in range(count))


def hf_gpt2_355m() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(n_layer=24, n_embd=1024, n_head=16))


def torch_init_loop(tensors, rows) -> None:
    """What a user runs instead: one ``torch.nn.init`` call per tensor, same distributions."""
    with torch.no_grad():
        for p, r in zip(tensors, rows):
            if r.dist == DIST_CONSTANT:
                nn.init.constant_(p, r.mean)
            elif r.dist == DIST_NORMAL:
                nn.init.normal_(p, r.mean, r.std)
            elif r.dist == DIST_UNIFORM:
                nn.init.uniform_(p, r.low, r.high)
            elif r.dist == DIST_TRUNC_NORMAL:
                nn.init.trunc_normal_(p, r.mean, r.std, r.low, r.high)


def steady_state(name: str, build, scheme: str, reps: int) -> dict:
    model = build()
    plan = di.plan(model, scheme, seed=0)
    plan.apply()  # builds and caches the tables
    tensors, rows, _ = plan._targets(model)
    prepare_s = []
    for _ in range(3):
        t0 = time.perf_counter()
        prepared = prepare_fill(tensors, rows)
        prepare_s.append(time.perf_counter() - t0)
    n = sum(t.numel() for t in tensors)
    times = rounds({"torch.nn.init loop": lambda: torch_init_loop(tensors, rows), "plan.apply()": plan.apply,
                    "cached fill (PreparedFill)": lambda: prepared(0)}, reps)  # fmt: skip
    res = report(f"{name}: {len(tensors)} tensors, {n / 1e6:.1f}M elements, scheme {scheme!r}", times,
                 "torch.nn.init loop", "plan.apply()", 1.5)  # fmt: skip
    fill = res["times"]["cached fill (PreparedFill)"]["median"]
    res["ratio_cached_fill"] = res["times"]["torch.nn.init loop"]["median"] / fill
    res["prepare_s"] = summary(prepare_s)
    return res


FIRST_CALL = """
import os, resource, time, torch
t0 = time.perf_counter()
import depthinit as di
from depthinit.applications.models import mlp
model = mlp(depth=16, width=512)  # 4.2M parameters
t1 = time.perf_counter()
di.init_(model, "he", seed=0)
t2 = time.perf_counter()
cc = resource.getrusage(resource.RUSAGE_CHILDREN)
print(t2 - t1, t1 - t0, sum(p.numel() for p in model.parameters()), cc.ru_utime + cc.ru_stime)
"""


def first_call() -> dict:
    """``di.init_`` of a 4.2M-parameter MLP in fresh processes with a new, empty kernel cache directory."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, DEPTHINIT_CACHE_DIR=cache, PYTHONPATH=ROOT)
        for label in ("empty cache", "warm cache"):
            cmd = [sys.executable, "-c", FIRST_CALL]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            call, imports, n, cc = res.stdout.split()
            out[label] = {"first_call_s": float(call), "import_and_build_model_s": float(imports), "params": int(n),
                          "compiler_cpu_s": float(cc)}  # fmt: skip
    return out


LLAMA = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
import depthinit as di
from transformers import LlamaConfig, LlamaForCausalLM
config = LlamaConfig(hidden_size=1024, num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=16,
                     intermediate_size=3584, vocab_size=32000, tie_word_embeddings=False)
t0 = time.perf_counter()
if sys.argv[1] == "hf":
    model = LlamaForCausalLM(config)
else:
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model.to_empty(device="cpu")
    di.init_(model, "normal", seed=0)
print(time.perf_counter() - t0, sum(p.numel() for p in model.parameters()))
"""


def llama_309m(reps: int) -> dict:
    """HF's ``LlamaForCausalLM(config)`` (its own init) against meta -> ``to_empty`` -> ``di.init_``, each the
    first model of a fresh process (imports done before the clock starts), ``reps`` rounds in alternating order:
    what a user's script pays, with no allocator state left by an earlier candidate."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    names = {"hf": "HF construction + init", "di": "meta -> to_empty -> di.init_"}
    times: dict[str, list[float]] = {v: [] for v in names.values()}
    n = 0
    for r in range(reps):
        for key in ("hf", "di") if r % 2 == 0 else ("di", "hf"):
            cmd = [sys.executable, "-c", LLAMA, key, str(torch.get_num_threads())]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.split()
            times[names[key]].append(float(out[0]))
            n = int(out[1])
    return report(f"HF Llama {n / 1e6:.0f}M (hidden 1024, 16 layers), first model of a fresh process", times,
                  "HF construction + init", "meta -> to_empty -> di.init_", 3.0)  # fmt: skip


def run(reps: int = 5, skip_gpt2: bool = False, with_first_call: bool = False, llama: bool = False) -> dict:
    """Every comparison (see the module docstring) as data: case -> :func:`report` result (``throughput``: one
    per distribution, ``first_call``: :func:`first_call`)."""
    from depthinit.applications.models import mlp

    results = {"throughput": throughput(reps)}
    results["mlp54x128"] = steady_state("MLP 54 x 128", lambda: mlp(depth=54, width=128), "he", reps)
    results["mlp54x512"] = steady_state("MLP 54 x 512", lambda: mlp(depth=54, width=512), "he", reps)
    results["2000x64x64"] = steady_state("2,000 tensors of 64x64", lambda: Tensors(2000, 64), "normal", reps)
    results["10000x16x16"] = steady_state("10,000 tensors of 16x16", lambda: Tensors(10000, 16), "normal", reps)
    if not skip_gpt2:
        results["gpt2_355m"] = steady_state("HF GPT-2 355M", hf_gpt2_355m, "gpt2", max(3, reps // 2))
    if with_first_call:
        results["first_call"] = first_call()
    if llama:
        results["llama_309m"] = llama_309m(max(4, reps))
    return results


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="interleaved rounds of each candidate")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--skip-gpt2", action="store_true", help="skip HF GPT-2 355M")
    ap.add_argument("--first-call", action="store_true", help="also time the first call in fresh processes")
    ap.add_argument("--llama", action="store_true", help="also HF Llama 309M construction vs meta + di.init_")
    ap.add_argument("--json", default=None, help="write the numbers to this JSON file (- prints them)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY')}; C kernel built or loaded in {warmup_cpu():.2f} s")  # fmt: skip
    results = run(args.reps, args.skip_gpt2, args.first_call, args.llama)
    print_results(results)
    if args.json:
        save_json(results, args.json)
    return results


if __name__ == "__main__":
    main()
