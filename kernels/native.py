"""Native CPU kernels (``cpu_stats.c``; ``cpu_fill.c`` with ``cpu_random.c``): built with the system C compiler
on first use, loaded with ctypes.

One mechanism for every C kernel: :func:`build` compiles its sources (side by side when there are several)
once per sources / flags / compiler into the
cache directory (``$DEPTHINIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/depthinit``, else ``~/.cache/depthinit``;
well under a second), atomically (concurrent builders all end with a complete file); :func:`open_library`
builds and loads it, or logs one warning and returns None (no compiler, an unsupported platform, the kernel
turned off by its environment variable), so that callers use their exact torch path. :func:`use_torch_threads`
hands a loaded library the OpenMP runtime torch runs its operators on, so that the kernel's threads are torch's.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["cache_dir", "compile_flags", "build", "open_library", "openmp_runtime", "use_torch_threads"]


def cache_dir() -> Path:
    env = os.environ.get("DEPTHINIT_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "depthinit"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


AVX512 = ("avx512f", "avx512vl", "avx512dq", "avx512bw")  # what the kernels' AVX-512 paths use
AVX512_FLAGS = ["-mavx512f", "-mavx512vl", "-mavx512dq", "-mavx512bw", "-mprefer-vector-width=512"]


def compile_flags(avx512: bool = False) -> list[str]:
    """``-O3``, IEEE arithmetic as written (no contraction, no reassociation), plus AVX2 / FMA / F16C where this
    x86 CPU has them, and with ``avx512`` the AVX-512 F/VL/DQ/BW of :data:`AVX512_FLAGS` where it has those too
    (the kernels' 512-bit paths; the same IEEE operations, so the same values)."""
    flags = ["-O3", "-std=c11", "-fPIC", "-shared", "-pthread", "-fno-math-errno", "-fno-trapping-math",
             "-ffp-contract=off"]  # fmt: skip
    if platform.machine() in ("x86_64", "AMD64"):
        have = _cpu_flags()
        if {"avx2", "fma"} <= have:
            flags += ["-mavx2", "-mfma"] + (["-mf16c"] if "f16c" in have else [])
            if avx512 and set(AVX512) <= have:
                flags += AVX512_FLAGS
    return flags


def build(source: Path | Sequence[Path], flags: list[str], out_dir: Path | None = None) -> Path:
    """Compile ``source`` (one C file, or the translation units of one library) with ``flags`` into ``out_dir``
    (default: the cache) unless already there; its path. Each source compiles in its own compiler process, all
    side by side, then one link: the wall time of the largest one, not of the sum.

    Raises ``RuntimeError`` with the compiler's message when it cannot be built.
    """
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC, or install gcc / clang)")
    sources = _sources(source)
    headers = sorted(sources[0].parent.glob("*.h"))  # what ``#include "..."`` can pull in
    text = b"\0".join(p.read_bytes() for p in [*sources, *headers])
    key = hashlib.sha256(b"\0".join([text, " ".join(flags).encode(), cc.encode(), platform.machine().encode()]))
    out_dir = Path(out_dir) if out_dir is not None else cache_dir()
    path = out_dir / f"{sources[0].stem}-{key.hexdigest()[:16]}.so"
    if path.exists():
        return path
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:  # a failed build leaves nothing in the cache
        objects = [f"{tmp}/{i}.o" for i in range(len(sources))]
        compile_only = [f for f in flags if f != "-shared"]
        _run([[cc, *compile_only, "-c", "-o", o, str(s)] for o, s in zip(objects, sources)], cc)
        _run([[cc, *flags, "-o", f"{tmp}/lib.so", *objects, "-lm"]], cc)
        os.replace(f"{tmp}/lib.so", path)
    return path


def _run(commands: list[list[str]], cc: str) -> None:
    """Run the compiler commands side by side; ``RuntimeError`` with the first failure's message."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    errors = [p.communicate()[1] for p in procs]
    for p, err in zip(procs, errors):
        if p.returncode != 0:
            raise RuntimeError(f"{cc} failed: {err.strip()[-2000:]}")


def build_widest(
    source: Path | Sequence[Path], flag_sets: list[list[str]], out_dir: Path | None, log: logging.Logger
) -> Path:
    """:func:`build` with the first of ``flag_sets`` the compiler takes (widest vectors first): a compiler that
    refuses AVX-512 gets the AVX2 build, logged at info level. Raises the last error when none builds."""
    if _compiler() is None:
        raise RuntimeError("no C compiler found (set CC, or install gcc / clang)")
    err: RuntimeError | None = None
    for i, flags in enumerate(flag_sets):
        if i and flags == flag_sets[i - 1]:
            continue
        try:
            return build(source, flags, out_dir)
        except RuntimeError as exc:
            err = exc
            log.info("%s: build with %s refused (%s); trying narrower vectors", _name(source), flags, exc)
    assert err is not None
    raise err


def _sources(source: Path | Sequence[Path]) -> list[Path]:
    """One C file, or the translation units of one library, as a list of paths."""
    return [Path(source)] if isinstance(source, (str, os.PathLike)) else [Path(s) for s in source]


def _name(source: Path | Sequence[Path]) -> str:
    return ", ".join(p.name for p in _sources(source))


def open_library(
    build_fn: Callable[[], Path], load_fn: Callable[[Path], ctypes.CDLL], env_var: str, what: str,
    log: logging.Logger,
) -> ctypes.CDLL | None:  # fmt: skip
    """``load_fn(build_fn())``, or None with one logged warning (callers cache the result: one warning per
    process). ``env_var=0`` turns the kernel off; ``what`` names the kernel and its fallback in the warning."""
    if os.environ.get(env_var, "1") == "0":
        return None
    if not sys.platform.startswith(("linux", "darwin")):
        log.warning("%s: the CPU kernel is built on Linux and macOS only; using the exact torch path", what)
        return None
    try:
        return load_fn(build_fn())
    except (OSError, RuntimeError) as exc:
        log.warning("%s: CPU kernel unavailable (%s); using the exact torch path", what, exc)
        return None


_OPENMP_NAMES = ("libgomp", "libiomp", "libomp")  # GNU, Intel, LLVM: all three export GOMP_parallel


@functools.cache
def openmp_runtime() -> tuple[int, int, int] | None:
    """Addresses of ``GOMP_parallel``, ``omp_get_thread_num`` and ``omp_get_num_threads`` of the OpenMP runtime
    torch runs its parallel regions on (found among the loaded libraries), or None: torch's parallel backend is
    not OpenMP, the runtime cannot be found (not Linux), ``DEPTHINIT_CPU_THREADS=own``, or
    ``OMP_WAIT_POLICY=passive``. Passive, torch's threads sleep as soon as a region ends, so there is no spinning
    thread to share the cores with, and a woken one tends to start on the core of the thread that woke it:
    measured on 2 cores, a fill of 100M fresh (page-faulting) elements took 160 ms on torch's team against 126 ms
    on threads of its own, the same 127-129 ms with the default policy."""
    if os.environ.get("DEPTHINIT_CPU_THREADS", "torch") == "own" or not sys.platform.startswith("linux"):
        return None
    if os.environ.get("OMP_WAIT_POLICY", "").strip().lower() == "passive":
        return None
    import torch

    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "/" in line}
    except OSError:
        return None
    torch_prefix = str(Path(torch.__file__).parent)  # torch/lib, torch.libs: the runtime of torch's wheel first
    for path in sorted(paths, key=lambda p: (not p.startswith(torch_prefix), p)):
        if Path(path).name.startswith(_OPENMP_NAMES):
            try:
                rt = ctypes.CDLL(path)  # loaded already: the same instance as torch's
                fns = (rt.GOMP_parallel, rt.omp_get_thread_num, rt.omp_get_num_threads)
            except (OSError, AttributeError):
                continue
            return tuple(ctypes.cast(fn, ctypes.c_void_p).value for fn in fns)
    return None


def use_torch_threads(lib: ctypes.CDLL) -> None:
    """Have a kernel library (one including ``cpu_parallel.h``) run its threads on torch's OpenMP team
    (:func:`openmp_runtime`) where there is one, else on threads of its own. A child process forked after a
    parallel region cannot use that team (GNU's runtime waits forever on the parent's threads, torch's operators
    too): there the library goes back to threads of its own."""
    fn = lib.depthinit_use_openmp
    fn.argtypes = [ctypes.c_void_p] * 3
    fn.restype = None
    rt = openmp_runtime()
    fn(*(rt or (None, None, None)))
    if rt is not None:
        if not _ON_TORCH_TEAM:
            os.register_at_fork(after_in_child=_own_threads_in_child)
        _ON_TORCH_TEAM.append(fn)


_ON_TORCH_TEAM: list = []  # the libraries' depthinit_use_openmp, of those on torch's team


def _own_threads_in_child() -> None:
    for fn in _ON_TORCH_TEAM:
        fn(None, None, None)
