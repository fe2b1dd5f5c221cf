"""What the benchmarks return, print and save: one row per timed candidate, one table, strict JSON.

Not a benchmark itself (``depthinit bench`` runs ``bench_*`` and ``gpu_*`` files only). Every benchmark's ``run``
function returns plain data holding a list of :func:`timing_row` dicts under ``"rows"``; its ``main`` prints
them with :func:`print_rows` and, given ``--json PATH``, saves the data with :func:`save_json`, which is what
``depthinit bench`` reads (never the printed text).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as ``python bench/x.py`` from a checkout: the package beside bench/ is the one
    sys.path.insert(0, ROOT)

from depthinit.report import aligned_table, strict_json, write_json  # noqa: E402

ROW_FIELDS = ("name", "implementation", "baseline", "median_ms", "min_ms", "max_ms", "reps", "ratio", "gbs", "note")


def timing_row(name: str, implementation: str, times_s: Sequence[float], baseline: str | None = None,
               baseline_median_s: float | None = None, nbytes: int | None = None, note: str = "") -> dict[str, Any]:
    """One timed candidate: ``name`` (what is measured), ``implementation``, median / min / max of ``times_s`` in
    ms, ``ratio`` (the baseline's median over this one's: a speed-up, None without a baseline), ``gbs`` (``nbytes``
    per median time, None without bytes)."""
    med = statistics.median(times_s)
    return {"name": name, "implementation": implementation, "baseline": baseline, "median_ms": med * 1e3,
            "min_ms": min(times_s) * 1e3, "max_ms": max(times_s) * 1e3, "reps": len(times_s),
            "ratio": baseline_median_s / med if baseline_median_s and med > 0 else None,
            "gbs": nbytes / med / 1e9 if nbytes and med > 0 else None, "note": note}


def _cell(v: Any, spec: str) -> str:
    return "" if v is None else format(v, spec)


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as an aligned table (median, spread, ratio vs baseline, GB/s)."""
    return aligned_table(
        ["measure", "implementation", "median ms", "min ms", "max ms", "vs baseline", "GB/s", "note"],
        [[r["name"], r["implementation"], _cell(r["median_ms"], ".2f"), _cell(r["min_ms"], ".2f"),
          _cell(r["max_ms"], ".2f"), "" if r["ratio"] is None else f"{r['ratio']:.2f}x ({r['baseline']})",
          _cell(r["gbs"], ".1f"), r["note"]] for r in rows])  # fmt: skip


def rounds(fns: Mapping[str, Callable[[], Any]], reps: int, timer: Callable[[], float] = time.perf_counter,
           max_reps: Mapping[str, int] | None = None) -> dict[str, list[float]]:
    """Times of each callable over ``reps`` interleaved rounds, after one warm-up call each (machine noise hits
    every candidate alike); ``max_reps`` caps the rounds of slow candidates."""
    for fn in fns.values():
        fn()
    cap = max_reps or {}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for rep in range(reps):
        for k, fn in fns.items():
            if rep >= cap.get(k, reps):
                continue
            t = timer()
            fn()
            times[k].append(timer() - t)
    return times


def print_rows(rows: Sequence[dict[str, Any]]) -> None:
    print(format_rows(rows))


def save_json(data: Any, path: str) -> None:
    """Save ``data`` as strict JSON (non-finite numbers as null); ``-`` prints it instead."""
    text = strict_json(data)
    if path == "-":
        print(text)
        return
    write_json(path, data)
