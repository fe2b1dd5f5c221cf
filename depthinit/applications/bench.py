"""``depthinit bench``: run the micro-benchmarks of ``bench/`` and print ONE table of ratios.

Every benchmark measures its candidate against a baseline **in the same run** (a per-tensor loop, an
unmonitored training step, a plain ``x.sum()`` over the same bytes...); this command runs them all, one
subprocess each, and gathers their ratios (and GB/s when a GPU is present) into one table, saved as JSON::

    depthinit bench --quick --json bench.json      # CI-sized inputs, well under a minute
    depthinit bench                                 # the benchmarks' own default sizes

Where the benchmarks come from: the ``bench/`` folder of the source repository. It is not installed with
the package, and on purpose: the benchmarks belong to the kernels they measure (their authors keep them
beside the code, as scripts and pytest-benchmark files), they compare against baselines that are no part of
the API, and DESIGN.md keeps the import direction ``bench → depthinit`` only. So the command *locates*
``bench/``: ``--bench-dir``, then ``$DEPTHINIT_BENCH_DIR``, then the checkout this package was imported from
(an editable install or the source tree), then ``./bench``; if none exists it says so and how to fix it.

Each benchmark runs in its own process (its thread settings, compile caches and failures stay its own) and
hands back data, never text to parse: a known benchmark (:data:`ADAPTERS`: its ``--quick`` arguments and its
rows of the table) runs as ``python bench/X.py ... --json TMP`` and the JSON it saves is read; any other
``bench/bench_*.py`` or ``bench/gpu_*.py`` has its ``main(argv)`` called by a small wrapper that saves the
returned value as JSON, and its top-level numbers are listed; a pytest-benchmark module is run with
``pytest --benchmark-json``. GPU benchmarks (``gpu_*``) run only when CUDA is available.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..report import aligned_table, json_safe, write_json

FORMAT = "depthinit.bench/1"
ENV_DIR = "DEPTHINIT_BENCH_DIR"

# a benchmark without a --json option: call its main(argv), save what it returns (argv[2]: the JSON file)
_CHILD = r"""
import importlib.util, inspect, json, sys
path, out, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
spec = importlib.util.spec_from_file_location("_depthinit_bench_target", path)
mod = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = mod
spec.loader.exec_module(mod)
sys.argv = [path, *argv]
main = mod.main
res = main(argv) if inspect.signature(main).parameters else main()
with open(out, "w", encoding="utf-8") as f:
    json.dump(res, f, default=str)
"""


class BenchError(ValueError):
    """The benchmarks cannot be run (no bench/ folder, an unknown name...): one line for the user."""


@dataclass
class Row:
    """One line of the table: ``value`` of ``what`` (a ratio ``x`` or a percentage ``%``) for ``bench``."""

    bench: str
    what: str
    value: float | None
    unit: str = "x"
    target: str = ""
    met: bool | None = None
    gbs: float | None = None
    note: str = ""


@dataclass
class Result:
    """What one benchmark process gave back."""

    name: str
    kind: str  # script | pytest-benchmark
    argv: list[str]
    returncode: int | None
    seconds: float
    data: Any = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    rows: list[Row] = field(default_factory=list)
    skipped: str = ""


# ------------------------------------------------------------------------------------------------ locating


def find_bench_dir(explicit: str | None = None) -> str:
    """The ``bench/`` folder to run (see the module docstring for the search order)."""
    tried = []
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # above depthinit/
    for label, cand in (("--bench-dir", explicit), (f"${ENV_DIR}", os.environ.get(ENV_DIR)),
                        ("the source checkout", os.path.join(checkout, "bench")),
                        ("the current folder", os.path.join(os.getcwd(), "bench"))):
        if not cand:
            continue
        if os.path.isdir(cand) and any(_is_bench(f) for f in os.listdir(cand)):
            return os.path.abspath(cand)
        tried.append(f"{label}: {cand}")
        if label == "--bench-dir":
            break
    raise BenchError(
        "no bench/ folder with benchmarks found (tried " + "; ".join(tried) + "). The benchmarks live in the "
        "source repository, not in the installed package: run from a checkout of depthinit, or pass "
        f"--bench-dir PATH/TO/depthinit/bench (or set {ENV_DIR})")


# bench/gpu_check.py runs the CUDA tests and the gpu_* benchmarks itself: a suite, not one benchmark
NOT_BENCHMARKS = ("gpu_check.py",)


def _is_bench(filename: str) -> bool:
    return (filename.endswith(".py") and filename not in NOT_BENCHMARKS
            and (filename.startswith(("bench_", "gpu_")) or filename in ADAPTERS))


def discover(bench_dir: str) -> list[str]:
    """Benchmark files of ``bench_dir`` in a fixed order: known ones first, then the others by name."""
    files = sorted(f for f in os.listdir(bench_dir) if _is_bench(f))
    known = [f for f in ADAPTERS if f in files]
    return known + [f for f in files if f not in known]


def is_pytest_benchmark(path: str) -> bool:
    with open(path, encoding="utf-8", errors="replace") as f:
        src = f.read()
    return re.search(r"def test_\w+\([^)]*\bbenchmark\b", src) is not None


def accepts_quick(path: str) -> bool:
    with open(path, encoding="utf-8", errors="replace") as f:
        return '"--quick"' in f.read()


# ------------------------------------------------------------------------------------------------ adapters


def _num(d: Any, *keys: str) -> float | None:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return float(d) if isinstance(d, (int, float)) and not isinstance(d, bool) else None


_GBS = re.compile(r"^\s*(?P<name>\S.*?)\s+(?P<ms>[\d.]+)\s*ms\s+(?P<gbs>[\d.]+)\s*GB/s", re.M)


def printed_gbs(stdout: str) -> dict[str, float]:
    """``{candidate: GB/s}`` from printed lines ``  NAME  1.23 ms  456.7 GB/s``: only for a benchmark from
    elsewhere whose returned value has no GB/s (the repository's benchmarks return theirs as data)."""
    return {m["name"].strip(): float(m["gbs"]) for m in _GBS.finditer(stdout)}


def timing_rows(d: Any) -> dict[str, dict]:
    """``{implementation: row}`` of the ``rows`` a benchmark returned (``bench/_results.py``'s timing rows)."""
    rows = d.get("rows") if isinstance(d, dict) else None
    return {r["implementation"]: r for r in rows if isinstance(r, dict) and "implementation" in r} if isinstance(
        rows, list) else {}


def _ratio_row(bench: str, what: str, value: float | None, target: float | None, gbs: float | None = None,
               higher_is_better: bool = True, note: str = "") -> Row:
    met = None
    if value is not None and target is not None:
        met = value >= target if higher_is_better else value <= target
    tgt = "" if target is None else (f">= {target:g}x" if higher_is_better else f"<= {target:g}x")
    return Row(bench, what, value, "x", tgt, met, gbs, note)


def _stats_cpu(res: Result) -> list[Row]:
    d, t = res.data, timing_rows(res.data)
    g = {k: _num(r, "gbs") for k, r in t.items()}
    return [_ratio_row(res.name, "layer_stats speed-up vs var_mean+.item() loop",
                       _num(d, "summary", "speedup_vs_var_mean"), 10.0, g.get("layer_stats")),
            _ratio_row(res.name, "layer_stats throughput / x.sum() (memory-read limit)",
                       _num(d, "summary", "ratio_vs_sum"), 0.8, g.get("x.sum() one tensor")),
            _ratio_row(res.name, "layer_stats speed-up vs var_mean+.item() loop, 10,000 x 256",
                       _num(d, "summary", "tiny_speedup_vs_var_mean"), 10.0)]


def _monitor(res: Result) -> list[Row]:
    d = res.data
    paired = d.get("paired") if isinstance(d, dict) else None
    od = _num(d, "overhead_pct", "depthinit")
    verdict = d.get("target") if isinstance(d, dict) else None  # met / NOT met / undecided (the median's interval)
    met = {"met": True, "NOT met": False, "undecided": None}.get(verdict, None if od is None else od <= 1.0)
    note = f"watch-like baseline: {_fmt(_num(d, 'overhead_pct', 'watch'), '.1f')}%"
    if paired:  # the verdict's estimate: paired steps of two identical models
        iv = paired["interval"]
        undecided = " (undecided)" if met is None else ""
        rows = [Row(res.name, "VarianceMonitor step overhead vs no monitoring (paired steps)",
                    paired["overhead_pct"], "%", "<= 1%", met,
                    note=f"90% interval of the median {iv[0]:+.2f}..{iv[1]:+.2f}%{undecided}; {note}")]
        rows.append(Row(res.name, "  the same, median of interleaved rounds", od, "%", "", None))
    else:
        iv = d.get("overhead_pct_interval", {}).get("depthinit") if isinstance(d, dict) else None
        if iv:
            note += f"; 90% interval of the median {iv[0]:+.1f}..{iv[1]:+.1f}%"
            note += " (undecided)" if met is None else ""
        rows = [Row(res.name, "VarianceMonitor step overhead vs no monitoring", od, "%", "<= 1%", met, note=note)]
    parts = _num(d, "overhead_pct_from_parts")
    if parts is not None:
        rows.append(Row(res.name, "  the same, one monitoring cycle timed by parts", parts, "%", "<= 1%", parts <= 1.0))
    rows.append(_ratio_row(res.name, "monitor overhead / wandb.watch-like overhead", _num(d, "depthinit_over_watch"),
                           1.0, higher_is_better=False))
    return rows


def _gpu_stats(res: Result) -> list[Row]:
    t = res.data.get("times", {}) if isinstance(res.data, dict) else {}
    fused_gbs = _num(res.data, "timing", "layer_stats (fused)", "gbs")
    f = t.get("layer_stats (fused)")
    rows = []
    for base, what, target in (("var_mean+item loop", "fused stats speed-up vs var_mean+.item() loop", 10.0),
                               ("_foreach_norm (1 stat)", "fused stats (9 fields) speed vs _foreach_norm (1 field)",
                                None),
                               ("x.sum() one buffer", "fused stats throughput / x.sum() (read bandwidth)", 0.5)):
        v = t.get(base) / f if f and t.get(base) else None
        rows.append(_ratio_row(res.name, what, v, target, fused_gbs))
    return rows


def _materialize(res: Result) -> list[Row]:
    target = _num(res.data, "target") or 1.1
    return [_ratio_row(res.name, "materialize peak host memory / parameter bytes", _num(res.data, "ratio"), target,
                       higher_is_better=False)]


def _init_cpu(res: Result) -> list[Row]:
    """One row per comparison of bench_init_cpu.py: entries with a ``ratio`` (of medians) and a ``target``."""
    rows, d = [], res.data if isinstance(res.data, dict) else {}
    for key, entry in d.items():
        for sub, r in ({key: entry} if "ratio" in entry else entry).items() if isinstance(entry, dict) else ():
            if isinstance(r, dict) and "ratio" in r:
                rows.append(_ratio_row(res.name, f"{sub}: depthinit vs baseline (ratio of medians)", r["ratio"],
                                       r.get("target")))
    return rows


def _gpu_init(res: Result) -> list[Row]:
    rows = []
    for r in res.data.get("rows", []) if isinstance(res.data, dict) else []:
        if r.get("candidate") == "torch_init" or r.get("tensors", 0) <= 1:
            continue
        rows.append(_ratio_row(res.name, f"{r['candidate']} vs torch.nn.init loop ({r['tensors']} tensors)",
                               r.get("speedup"), None, r.get("gbs"),
                               note=f"{100 * r['peak_fraction']:.0f}% of peak" if r.get("peak_fraction") else ""))
    return rows or [Row(res.name, "no results (no CUDA device?)", None, "")]


def _generic(res: Result) -> list[Row]:
    """Any benchmark: its timing rows (``bench/_results.py``'s format) or its top-level numbers (and one level
    down), as they come."""
    rows, d = [], res.data
    for r in timing_rows(d).values():
        ratio = _num(r, "ratio")
        what = f"{r.get('name', '')}: {r['implementation']}" + (f" vs {r.get('baseline')}" if ratio else " (ms)")
        rows.append(Row(res.name, what, ratio if ratio is not None else _num(r, "median_ms"), "x" if ratio else "",
                        gbs=_num(r, "gbs"), note=str(r.get("note") or "")))
    if rows:
        return rows
    g = printed_gbs(res.stdout_tail)
    if isinstance(d, dict):
        for k, v in d.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                rows.append(Row(res.name, k, float(v), ""))
            elif isinstance(v, dict):
                for k2, v2 in v.items():
                    if isinstance(v2, (int, float)) and not isinstance(v2, bool):
                        rows.append(Row(res.name, f"{k}.{k2}", float(v2), "", gbs=g.get(k2)))
    if not rows:
        rows.append(Row(res.name, "ran (no numbers returned)", None, "", note="see the JSON for its output"))
    return rows


@dataclass(frozen=True)
class Adapter:
    """How to run one known benchmark: quick arguments, full arguments, rows from its result (the JSON it saves
    with ``--json PATH``, which the runner adds)."""

    quick: tuple[str, ...]
    full: tuple[str, ...]
    rows: Callable[[Result], list[Row]]
    gpu: bool = False


_MONITOR_QUICK = ("--layers", "2", "--width", "64", "--heads", "2", "--vocab", "256", "--seq", "32", "--batch", "2",
                  "--every", "5", "--rounds", "3", "--cycles", "3")
ADAPTERS: dict[str, Adapter] = {
    "bench_init_cpu.py": Adapter(("--reps", "2", "--skip-gpt2"), (), _init_cpu),
    "bench_stats_cpu.py": Adapter(("--reps", "3", "--width", "256", "--blocks", "8"), (), _stats_cpu),
    "bench_monitor_overhead.py": Adapter(_MONITOR_QUICK, (), _monitor),
    "materialize_memory.py": Adapter(("--model", "gpt2:n_layer=2,n_embd=256,n_head=4,vocab=16384,block=128"), (),
                                     _materialize),
    "gpu_init.py": Adapter(("--tensors", "100", "1000", "--params", str(1 << 26)), (), _gpu_init, gpu=True),
    "gpu_stats.py": Adapter(("--width", "1024", "--blocks", "8", "--reps", "5", "--loop-reps", "1"), (), _gpu_stats,
                            gpu=True),
    "gpu_monitor_overhead.py": Adapter(("--layers", "4", "--width", "256", "--heads", "4", "--vocab", "8192", "--seq",
                                        "256", "--batch", "4", "--rounds", "3"), (), _monitor, gpu=True),
}


# ------------------------------------------------------------------------------------------------ running


def _child_env(bench_dir: str, threads: int | None, quick: bool) -> dict[str, str]:
    env = dict(os.environ)
    root = os.path.dirname(bench_dir)
    if os.path.isfile(os.path.join(root, "depthinit", "__init__.py")):  # a source checkout: use its package
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    if quick:
        env["DEPTHINIT_BENCH_QUICK"] = "1"
    return env


def _tail(text: str, n: int = 4000) -> str:
    return text[-n:]


def run_one(path: str, quick: bool, threads: int | None, timeout: float, extra: Sequence[str] = ()) -> Result:
    """Run one benchmark in its own process and read back the data it saves (see the module docstring);
    ``Result.argv`` is the benchmark's arguments, without the runner's ``--json`` file."""
    name = os.path.basename(path)
    adapter = ADAPTERS.get(name)
    env = _child_env(os.path.dirname(path), threads, quick)
    t0 = time.perf_counter()
    if is_pytest_benchmark(path):
        return _run_pytest(path, name, quick, env, timeout, t0)
    if adapter is not None:
        argv = list(adapter.quick if quick else adapter.full)
    else:
        argv = ["--quick"] if quick and accepts_quick(path) else []
        if quick and not argv:
            return Result(name, "script", [], None, 0.0, skipped="no quick configuration known (not run with --quick)")
    argv += list(extra)
    with tempfile.TemporaryDirectory() as tmp:
        js = os.path.join(tmp, "result.json")
        cmd = [sys.executable, path, *argv, "--json", js] if adapter else [sys.executable, "-c", _CHILD, path, js,
                                                                           *argv]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                               cwd=os.path.dirname(os.path.dirname(path)))
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            return Result(name, "script", argv, None, time.perf_counter() - t0, stdout_tail=_tail(out),
                          skipped=f"timed out after {timeout:g} s")
        data = _read_json(js)
    res = Result(name, "script", argv, p.returncode, time.perf_counter() - t0, data, _tail(p.stdout), _tail(p.stderr))
    res.rows = _rows_of(res, adapter)
    return res


def _read_json(path: str) -> Any:
    """The JSON a benchmark saved, or None where it saved none (it failed, or it has nothing to say)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _rows_of(res: Result, adapter: Adapter | None) -> list[Row]:
    if res.returncode != 0:
        last = (res.stderr_tail.strip().splitlines() or ["?"])[-1]
        return [Row(res.name, "failed", None, "", note=f"exit status {res.returncode}: {last[:160]}")]
    if adapter is not None and res.data is None:
        return [Row(res.name, "no result saved", None, "", note="it exited 0 without writing its --json file")]
    try:
        return (adapter.rows if adapter else _generic)(res)
    except Exception as e:  # noqa: BLE001 - a changed result format must not hide the others
        return [Row(res.name, "result not understood", None, "", note=f"{type(e).__name__}: {e}")]


def _run_pytest(path: str, name: str, quick: bool, env: dict, timeout: float, t0: float) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        js = os.path.join(tmp, "bench.json")
        argv = ["-q", "-p", "no:cacheprovider", f"--benchmark-json={js}", "--benchmark-only"]
        if quick:
            argv += ["--benchmark-min-rounds=1", "--benchmark-max-time=0.2", "--benchmark-warmup=off"]
        cmd = [sys.executable, "-m", "pytest", path, *argv]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                               cwd=os.path.dirname(os.path.dirname(path)))
        except subprocess.TimeoutExpired:
            return Result(name, "pytest-benchmark", argv, None, time.perf_counter() - t0,
                          skipped=f"timed out after {timeout:g} s")
        data = _read_json(js)
    res = Result(name, "pytest-benchmark", argv, p.returncode, time.perf_counter() - t0, data, _tail(p.stdout),
                 _tail(p.stderr))
    res.rows = pytest_rows(res) if data else _rows_of(res, None)
    return res


_BASELINE = re.compile(r"baseline|loop|reference|torch_init|eager", re.I)


def pytest_rows(res: Result) -> list[Row]:
    """Rows of a pytest-benchmark JSON: in each group, speed-up of every benchmark over the group's
    baseline (``extra_info["baseline"]`` true, or a name with baseline / loop / reference / eager)."""
    benches = res.data.get("benchmarks", [])
    groups: dict[str, list[dict]] = {}
    for b in benches:
        groups.setdefault(b.get("group") or "", []).append(b)
    rows = []
    for group, bs in groups.items():
        base = next((b for b in bs if b.get("extra_info", {}).get("baseline")), None) or next(
            (b for b in bs if _BASELINE.search(b["name"])), None)
        for b in bs:
            if b is base:
                continue
            t = b["stats"]["min"]
            nbytes = b.get("extra_info", {}).get("bytes")
            gbs = nbytes / t / 1e9 if nbytes and t else None
            tgt = b.get("extra_info", {}).get("target")
            ratio = base["stats"]["min"] / t if base and t else None
            label = f"{b['name']} vs {base['name']}" if base else f"{b['name']} ({t * 1e3:.3f} ms)"
            rows.append(_ratio_row(res.name, (f"[{group}] " if group else "") + label, ratio,
                                   float(tgt) if isinstance(tgt, (int, float)) else None, gbs))
    return rows or [Row(res.name, "no benchmarks in the JSON", None, "")]


# ------------------------------------------------------------------------------------------------ table


def _fmt(v: float | None, spec: str = ".2f") -> str:
    v = json_safe(v)
    return "—" if v is None else format(v, spec)


def table(rows: Sequence[Row], show_gbs: bool) -> str:
    """The rows as one aligned table (a GB/s column where ``show_gbs``)."""
    head = ["benchmark", "measure", "value", "target", "met"] + (["GB/s"] if show_gbs else []) + ["note"]
    lines = []
    for r in rows:
        val = "—" if r.value is None else (f"{r.value:.3g}{r.unit}" if r.unit else f"{r.value:.4g}")
        met = "" if r.met is None else ("yes" if r.met else "NO")
        lines.append([r.bench.removesuffix(".py"), r.what, val, r.target, met]
                     + ([_fmt(r.gbs, ".1f")] if show_gbs else []) + [r.note])
    return aligned_table(head, lines)


def _cuda() -> tuple[bool, str]:
    try:
        import torch

        if torch.cuda.is_available():
            return True, torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    return False, "CPU"


def run_all(bench_dir: str, quick: bool = False, only: Sequence[str] | None = None, threads: int | None = None,
            timeout: float | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every benchmark of ``bench_dir`` (or those named in ``only``); returns the JSON-ready result."""
    has_gpu, device = _cuda()
    files = discover(bench_dir)
    if only:
        unknown = [o for o in only if not any(f.removesuffix(".py") == o.removesuffix(".py") for f in files)]
        if unknown:
            raise BenchError(f"no benchmark named {', '.join(unknown)} in {bench_dir}; available: "
                             f"{', '.join(f.removesuffix('.py') for f in files)}")
        files = [f for f in files if f.removesuffix(".py") in {o.removesuffix(".py") for o in only}]
    timeout = timeout or (120.0 if quick else 900.0)
    results: list[Result] = []
    t0 = time.perf_counter()
    for f in files:
        adapter = ADAPTERS.get(f)
        gpu = (adapter.gpu if adapter else f.startswith("gpu_"))
        if gpu and not has_gpu:
            results.append(Result(f, "script", [], None, 0.0, skipped="no CUDA device"))
            continue
        if log:
            log(f"running {f}{' (quick)' if quick else ''} ...")
        r = run_one(os.path.join(bench_dir, f), quick, threads, timeout)
        if r.skipped and not r.rows:
            r.rows = [Row(f, "not run", None, "", note=r.skipped)]
        results.append(r)
        if log:
            log(f"  {f}: {r.seconds:.1f} s" + (f" ({r.skipped})" if r.skipped else ""))
    rows = [row for r in results for row in r.rows]
    return {"format": FORMAT, "quick": quick, "bench_dir": bench_dir, "device": device, "gpu": has_gpu,
            "threads": threads, "wall_s": round(time.perf_counter() - t0, 1),
            "rows": [asdict(r) for r in rows],
            "benchmarks": [{k: v for k, v in asdict(r).items() if k != "rows"} for r in results],
            "skipped": {r.name: r.skipped for r in results if r.skipped}}


def save_json(res: dict[str, Any], path: str) -> None:
    """Write the results of :func:`run_all` as strict JSON (non-finite numbers as null)."""
    write_json(path, res)
