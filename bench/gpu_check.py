"""The prepared GPU check: the CUDA tests, then the GPU benchmarks; one table, one JSON.

    python bench/gpu_check.py --out DIR             # one H100/H200-class GPU: about 4 minutes (sized for < 8)
    python bench/gpu_check.py --dry-run --out DIR   # CPU: the same code paths, Triton interpreter, tiny sizes

Run it from the root of a source checkout: nothing needs to be installed (the checkout's ``depthinit`` is
imported). It needs Python >= 3.10, torch (a CUDA build), triton >= 3.6, numpy, and pytest for the CUDA tests
(without pytest they are reported as not run). Nothing else is imported on any path: no scipy, matplotlib,
transformers, tensorboard or wandb. A GPU machine without network access that lacks numpy or pytest gets them
from wheels downloaded elsewhere and carried along::

    pip download --only-binary=:all: --python-version 3.12 --platform manylinux_2_17_x86_64 -d .gpu-wheels numpy pytest
    pip install --no-index --find-links .gpu-wheels numpy pytest      # on the GPU machine

Parts, in order (a part that raises is reported and the next one still runs; the JSON is rewritten after each):

1. ``tests``: ``pytest -m cuda tests/test_cuda.py`` in a subprocess, results read back from its JUnit XML;
2. ``init``: :func:`gpu_init.run`: one fused fill launch against ``Tensor.normal_`` on one 1 GiB buffer and against
   per-tensor ``torch.nn.init`` loops on models of 100, 1,000 and 10,000 tensors (1 GiB each), fp32 and bf16;
3. ``stats``: :func:`gpu_stats.run`: the fused statistics (nine per tensor) of a 288-tensor GPT-like stack (bf16
   2.4 GB, fp32 4.8 GB) against ``torch._foreach_norm`` (one statistic), a ``var_mean + .item()`` loop and
   ``x.sum()``; no host sync; bitwise repeatable; the fp64 reference;
4. ``monitor``: :func:`gpu_monitor_overhead.run`: GPT-2 small (8 x 1024 tokens, bf16 autocast) with
   ``VarianceMonitor`` every 10 steps, without monitoring, and with a ``wandb.watch``-like baseline.

The table gives GB/s and the fraction of the measured device-to-device copy's write share (fills) or read share
(statistics), ratios against the baselines measured in the same run, and the targets of the issue that asked for
this check: init >= 90 % of the copy's write share on >= 1 GB of fp32 and bf16 weights, >= 10x a per-tensor
``torch.nn.init`` loop on 10,000-tensor models; statistics >= 90 % of the read share, >= 1x ``torch._foreach_norm``
while computing nine statistics; no host sync inside a monitor step (the CUDA tests check it).

Exit status: 0 when every selected CUDA test passed and every part ran, 1 otherwise (a missed target is a
measurement, not a failure; the table says "NO").
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
FORMAT = "depthinit.gpu_check/1"
TEST_FILES = ("tests/test_cuda.py",)
OPTIONAL = ("scipy", "matplotlib", "transformers", "sklearn", "tensorboard", "wandb", "hypothesis", "pandas")


# ------------------------------------------------------------------------------------------------ the parts


def run_tests(dry_run: bool, timeout: float) -> dict:
    """``pytest -m cuda`` on :data:`TEST_FILES` in a subprocess: counts, failures (name and message), seconds."""
    if importlib.util.find_spec("pytest") is None:
        return {"ran": False, "reason": "pytest is not installed"}
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if dry_run:
        env.update(DEPTHINIT_CUDA_TESTS_ON_CPU="1", TRITON_INTERPRET="1")
    with tempfile.TemporaryDirectory() as tmp:
        xml = os.path.join(tmp, "junit.xml")
        # -o addopts=: the project's addopts name a plugin (pytest-benchmark) that the GPU image may lack
        cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-o", "addopts=", "-p", "no:cacheprovider", "-q",
               "-rfEs", f"--junitxml={xml}", *TEST_FILES]  # fmt: skip
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            return {"ran": False, "reason": f"timed out after {timeout:g} s", "output_tail": out[-3000:]}
        res = {"ran": True, "returncode": proc.returncode, "seconds": time.perf_counter() - t0,
               "output_tail": (proc.stdout + proc.stderr)[-3000:]}  # fmt: skip
        res.update(junit_counts(xml) if os.path.isfile(xml) else {"passed": 0, "failed": 0, "errors": 1,
                                                                    "skipped": 0, "failures": []})  # fmt: skip
    return res


def junit_counts(path: str) -> dict:
    """Passed / failed / errors / skipped counts and the failures (test id, first line of the message)."""
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures, skipped = [], {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        kinds = {child.tag: child for child in case}
        if "failure" in kinds or "error" in kinds:
            kind = "failed" if "failure" in kinds else "errors"
            counts[kind] += 1
            el = kinds.get("failure", kinds.get("error"))
            failures.append({"test": name, "message": (el.get("message") or el.text or "")[:500]})
        elif "skipped" in kinds:
            counts["skipped"] += 1
            reason = kinds["skipped"].get("message", "")
            skipped[reason] = skipped.get(reason, 0) + 1
        else:
            counts["passed"] += 1
    return {**counts, "failures": failures, "skip_reasons": skipped}


def _bench_module(name: str):
    if BENCH not in sys.path:
        sys.path.insert(0, BENCH)
    return importlib.import_module(name)


def run_init(dry_run: bool) -> dict:
    return _bench_module("gpu_init").run(tensors=(100, 1000, 10000), dtypes=("fp32", "bf16"), dry_run=dry_run)


def run_stats(dry_run: bool) -> dict:
    gpu_stats = _bench_module("gpu_stats")
    if dry_run:  # the Triton kernels on CPU tensors (this process runs the interpreter)
        return {d: gpu_stats.run("cpu", d, width=32, blocks=2, reps=1, loop_reps=1, backend="triton", warmup=0)
                for d in ("bfloat16", "float32")}  # fmt: skip
    return {d: gpu_stats.run("cuda", d, width=2048, blocks=24, reps=20, loop_reps=3) for d in ("bfloat16", "float32")}


def run_monitor(dry_run: bool) -> dict:
    return _bench_module("gpu_monitor_overhead").run(dry_run=dry_run)


def interpreter_problem() -> str | None:
    """Why this process's Triton interpreter cannot run the statistics kernels, or None (dry run only).

    triton 3.6's interpreter converts a loaded scalar (a shape-(1,) array) with ``int()``, which NumPy >= 2.4
    refuses, so a loop over a loaded bound fails (triton-lang/triton#9171, fixed in later triton). A probe kernel
    with such a loop says so up front instead of a TypeError deep inside the statistics kernels.
    """
    import torch
    import triton
    import triton.language as tl

    @triton.jit
    def _loop_over_loaded_bound(n_ptr, out_ptr):
        n = tl.load(n_ptr)
        acc = 0
        for _ in range(0, n):
            acc += 1
        tl.store(out_ptr, acc)

    out = torch.zeros(1, dtype=torch.int32)
    try:
        _loop_over_loaded_bound[(1,)](torch.tensor([3], dtype=torch.int32), out)
    except Exception as e:  # noqa: BLE001 - any failure of the probe is the answer
        import numpy

        return (f"the Triton interpreter of triton {triton.__version__} with NumPy {numpy.__version__} cannot run "
                f"a loop over a loaded bound ({type(e).__name__}: {e}); triton 3.6 needs NumPy < 2.4 "
                "(triton-lang/triton#9171)")  # fmt: skip
    return None if int(out) == 3 else f"the Triton interpreter counted {int(out)} iterations of 3"


# ------------------------------------------------------------------------------------------------ the table


def _row(part, measure, value, unit="", gbs=None, pct=None, target="", met=None, note="") -> dict:
    return dict(part=part, measure=measure, value=value, unit=unit, gbs=gbs, pct_copy=pct, target=target, met=met,
                note=note)  # fmt: skip


def table_rows(res: dict) -> list[dict]:
    """The rows of the summary table from the parts' results (missing parts give no rows)."""
    rows = []
    t = res.get("tests")
    if t is not None:
        if t.get("ran"):
            bad = t["failed"] + t["errors"]
            note = "; ".join(f["test"].split("::")[-1] for f in t["failures"][:4])
            rows.append(_row("tests", f"CUDA tests passed ({t['skipped']} skipped)", t["passed"], "", target="0 failed",
                             met=bad == 0, note=f"{bad} failed: {note}" if bad else ""))  # fmt: skip
        else:
            rows.append(_row("tests", "CUDA tests", None, note=f"not run: {t.get('reason')}"))
    init = res.get("init")
    if isinstance(init, dict) and "rows" in init:
        c = init["copy"]
        rows.append(_row("init", "device-to-device copy (read + write)", c["copy_gbs"], "GB/s", gbs=c["copy_gbs"],
                         note=f"write share {c['share_gbs']:.0f} GB/s, {c['bytes'] / 2**30:.2f} GiB"))  # fmt: skip
        for r in init["rows"]:
            size = f"{r['bytes'] / 2**30:.2f} GiB {r['dtype']}"
            if r["candidate"] == "fused":
                where = "one buffer" if r["tensors"] == 1 else f"{r['tensors']} tensors"
                rows.append(_row("init", f"fused fill, {where}, {size}", r["median_ms"], "ms", r["gbs"],
                                 r["copy_fraction"], ">= 90% copy", r["copy_fraction"] >= 0.9))  # fmt: skip
                target = ">= 10x" if r["tensors"] >= 10000 else ""
                rows.append(_row("init", f"  speed-up vs {r['baseline']} ({where})", r["speedup"], "x", target=target,
                                 met=r["speedup"] >= 10 if target else None))  # fmt: skip
            elif r["candidate"] == "fused_incl_prepare":
                rows.append(_row("init", f"  incl. table build vs torch.nn.init loop ({r['tensors']} tensors)",
                                 r["speedup"], "x", r["gbs"], r["copy_fraction"]))  # fmt: skip
    stats = res.get("stats")
    if isinstance(stats, dict):
        for dtype, s in stats.items():
            if not isinstance(s, dict) or "timing" not in s:
                continue
            f = s["timing"]["layer_stats (fused)"]
            what = f"{s['tensors']} tensors, {s['bytes'] / 1e9:.2f} GB {dtype}"
            rows.append(_row("stats", f"fused statistics (9 fields), {what}", f["median_ms"], "ms", f["gbs"],
                             f["copy_fraction"], ">= 90% copy", f["copy_fraction"] >= 0.9))  # fmt: skip
            rows.append(_row("stats", "  speed vs torch._foreach_norm (1 field)", s["ratios"]["vs_foreach_norm"], "x",
                             s["timing"]["_foreach_norm (1 stat)"]["gbs"],
                             s["timing"]["_foreach_norm (1 stat)"]["copy_fraction"], ">= 1x",
                             s["ratios"]["vs_foreach_norm"] >= 1))  # fmt: skip
            rows.append(_row("stats", "  speed-up vs var_mean + .item() loop", s["ratios"]["vs_var_mean_loop"], "x"))
            x = s["timing"]["x.sum() one buffer"]
            rows.append(_row("stats", "  x.sum() of one buffer (read reference)", x["median_ms"], "ms", x["gbs"],
                             x["copy_fraction"]))  # fmt: skip
            sync = s["no_host_sync"]
            rows.append(_row("stats", "  no host sync; bitwise repeatable; variance rel. error vs fp64",
                             s["var_rel"], "", target="none; yes; < 1e-4",
                             met=None if sync is None else (sync and s["bitwise_equal"] and s["var_rel"] < 1e-4),
                             note=f"sync-free: {'n/a' if sync is None else sync}, bitwise: {s['bitwise_equal']}"))
    mon = res.get("monitor")
    if isinstance(mon, dict) and "overhead_pct" in mon:
        c = mon["config"]
        model = f"L={c['layers']} d={c['width']}, {c['batch']}x{c['seq']} tokens, every {c['every']}"
        rows.append(_row("monitor", f"VarianceMonitor step overhead ({model})", mon["overhead_pct"]["depthinit"], "%",
                         note=f"step {mon['step_ms']['none']:.1f} ms unmonitored"))  # fmt: skip
        rows.append(_row("monitor", "  wandb.watch-like baseline overhead", mon["overhead_pct"]["watch"], "%"))
        rows.append(_row("monitor", "  monitor overhead / baseline overhead", mon["depthinit_over_watch"], "x"))
    for part in ("init", "stats", "monitor"):
        err = res.get(part, {}).get("error") if isinstance(res.get(part), dict) else None
        if err:
            rows.append(_row(part, "FAILED", None, note=err.strip().splitlines()[-1][:160]))
    if res.get("dry_run"):  # CPU times of tiny sizes under the interpreter: the targets do not apply
        for r in rows:
            if r["part"] != "tests":
                r["met"] = None
    return rows


def format_table(rows: list[dict]) -> str:
    """The rows aligned as ``depthinit bench`` prints its table (the fraction of the copy leads the note)."""
    from depthinit.applications.bench import Row, table

    def note(r: dict) -> str:
        pct = "" if r["pct_copy"] is None else f"{100 * r['pct_copy']:.1f}% of copy"
        return "; ".join(x for x in (pct, r["note"]) if x)

    return table([Row(r["part"], r["measure"], r["value"], r["unit"], r["target"], r["met"], r["gbs"], note(r))
                  for r in rows], show_gbs=True)  # fmt: skip


# ------------------------------------------------------------------------------------------------ main


def environment() -> dict:
    import numpy
    import torch
    import triton

    env = {"python": platform.python_version(), "torch": torch.__version__, "triton": triton.__version__,
           "numpy": numpy.__version__, "cuda": torch.version.cuda, "device": "CPU"}  # fmt: skip
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(device=p.name, memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}")
    return env


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="gpu-check", help="folder of gpu_check.json (created)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, Triton interpreter, tiny sizes: check the script")
    ap.add_argument("--parts", default="tests,init,stats,monitor", help="comma-separated subset of the parts")
    ap.add_argument("--test-timeout", type=float, default=None, help="seconds for the CUDA tests (300; dry run 240)")
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - {"tests", "init", "stats", "monitor"})
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}; choose from tests, init, stats, monitor")
    if args.dry_run:  # before triton is first imported: the statistics kernels then run on CPU tensors
        os.environ["TRITON_INTERPRET"] = "1"
        os.environ.setdefault("OMP_NUM_THREADS", "2")
    sys.path.insert(0, ROOT)

    import torch

    from depthinit.report import write_json

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a GPU machine, or pass --dry-run", file=sys.stderr)
        return 2
    problem = interpreter_problem() if args.dry_run else None
    if problem:
        print(f"gpu_check --dry-run: {problem}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "gpu_check.json")
    res = {"format": FORMAT, "dry_run": args.dry_run, "argv": sys.argv[1:] if argv is None else list(argv),
           "environment": environment(), "seconds": {}}  # fmt: skip
    runners = {"tests": lambda: run_tests(args.dry_run, args.test_timeout or (240 if args.dry_run else 300)),
               "init": lambda: run_init(args.dry_run), "stats": lambda: run_stats(args.dry_run),
               "monitor": lambda: run_monitor(args.dry_run)}  # fmt: skip
    t_all = time.perf_counter()
    ok = True
    for part in parts:
        print(f"gpu_check: {part} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            res[part] = runners[part]()
        except Exception:  # noqa: BLE001 - one failing part must not hide the others
            res[part] = {"error": traceback.format_exc()}
            ok = False
            print(res[part]["error"], file=sys.stderr)
        res["seconds"][part] = round(time.perf_counter() - t0, 1)
        print(f"gpu_check: {part} done in {res['seconds'][part]:.0f} s", file=sys.stderr, flush=True)
        if part == "tests":
            t = res[part]
            ok = ok and t.get("ran", False) and t.get("failed", 1) + t.get("errors", 1) == 0
        res["table"] = table_rows(res)
        write_json(path, res)
    res["seconds"]["total"] = round(time.perf_counter() - t_all, 1)
    res["optional_modules_loaded"] = sorted(m for m in OPTIONAL if m in sys.modules)
    write_json(path, res)
    env = res["environment"]
    dry = " (DRY RUN: CPU, Triton interpreter, tiny sizes)" if args.dry_run else ""
    print(f"depthinit gpu check{dry}: {env['device']}, torch {env['torch']}, triton {env['triton']}, "
          f"{res['seconds']['total']:.0f} s")
    print(format_table(res["table"]))
    print(f"saved {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
