"""What the GPU benchmarks share: timing (median and spread), the measured copy bandwidth, the device's name.

Not a benchmark itself (``depthinit bench`` runs ``bench_*`` and ``gpu_*`` files only). Needs torch only; on a CPU
device (the scripts' ``--dry-run``) times are wall-clock times, so the same code paths run without a GPU.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def use_checkout() -> None:
    """Make the source checkout's ``depthinit`` importable (scripts run as ``python bench/x.py``)."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def time_ms(fn: Callable[[], object], device: torch.device, reps: int = 10, warmup: int = 2) -> dict:
    """``{"median_ms", "min_ms", "max_ms", "reps"}`` of ``reps`` calls of ``fn`` after ``warmup`` calls.

    On CUDA each call is timed by a pair of events, with no host synchronization between calls (the device
    is synchronized before the first and after the last); on CPU by ``time.perf_counter``.
    """
    for _ in range(warmup):
        fn()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for start, end in events:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(device)
        times = [start.elapsed_time(end) for start, end in events]
    else:
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "reps": reps}


def copy_bandwidth(device: torch.device, nbytes: int, reps: int = 10) -> dict:
    """The measured device-to-device copy of ``nbytes``: total GB/s (read + write) and its write (= read) share.

    The share is what a kernel that only writes (a fill) or only reads (statistics) can reach at best.
    """
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    src.fill_(1)
    dst = torch.empty_like(src)
    t = time_ms(lambda: dst.copy_(src), device, reps)
    share = nbytes / (t["median_ms"] * 1e-3) / 1e9
    return {"bytes": nbytes, **t, "copy_gbs": 2 * share, "share_gbs": share}


def gbs(nbytes: int, t: dict) -> float:
    """GB/s of moving ``nbytes`` in the median time of ``t`` (a :func:`time_ms` result)."""
    return nbytes / (t["median_ms"] * 1e-3) / 1e9


def free(device: torch.device) -> None:
    """Return cached device memory between benchmarks (large buffers of one do not crowd the next)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
