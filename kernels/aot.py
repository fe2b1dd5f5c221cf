"""Ahead-of-time compilation of every kernel of the package, with no GPU and no driver.

``python -m depthinit.kernels.aot --arch 80 90`` imports each module of ``KERNEL_MODULES``, compiles each
``AotSpec`` of its ``aot_specs()`` with ``triton.compile(ASTSource(fn, signature, constexprs),
target=GPUTarget("cuda", cc, 32))`` and prints one row per kernel x arch:

* registers, spill stores/loads (bytes) and shared memory: from ``ptxas -v`` on the generated PTX, run with the
  ptxas that ships inside the triton wheel (the compiled metadata holds registers and spills only after a driver
  has loaded the cubin; triton runs ``ptxas -v`` itself but drops its log). The cubin's own resource table,
  read with the wheel's ``cuobjdump -res-usage``, must agree;
* how global memory is accessed, counted in the PTX: vector (``st.global.v4`` / ``.v2``) and scalar stores and
  loads.

The exit status is non-zero when a kernel fails to compile or spills. A kernel module that does not exist yet is
skipped with a note; one that exists and fails to import or compile is an error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass

KERNEL_MODULES = ("fill", "stats")

_PACKAGE = __package__ or "depthinit.kernels"


@dataclass
class AotResult:
    """Compiled facts of one kernel specialization for one architecture."""

    module: str
    name: str
    arch: int
    registers: int
    spill_stores: int
    spill_loads: int
    shared: int
    stores: dict
    loads: dict
    ptx_bytes: int
    cubin_bytes: int

    @property
    def spills(self) -> bool:
        return self.spill_stores > 0 or self.spill_loads > 0


def collect_specs(modules=KERNEL_MODULES) -> tuple[list[tuple[str, object]], list[str]]:
    """``[(module name, AotSpec)]`` of every existing kernel module, and notes about the skipped ones."""
    specs, notes = [], []
    for name in modules:
        full = f"{_PACKAGE}.{name}"
        try:
            module = importlib.import_module(full)
        except ModuleNotFoundError as err:
            if err.name == full:
                notes.append(f"note: {full} does not exist yet; skipped")
                continue
            raise
        if not hasattr(module, "aot_specs"):
            raise AttributeError(f"{full} has no aot_specs(); every kernel module must expose one")
        specs += [(name, spec) for spec in module.aot_specs()]
    return specs, notes


def _access_counts(ptx: str, op: str) -> dict:
    """Number of ``op.global`` instructions by width in PTX: ``{"v4": n, "v2": n, "scalar": n}``."""
    counts = {"v4": 0, "v2": 0, "scalar": 0}
    for m in re.finditer(rf"\b{op}\.global(?:\.[a-zA-Z0-9_:]+)*", ptx):
        parts = m.group(0).split(".")
        width = "v4" if "v4" in parts else "v2" if "v2" in parts else "scalar"
        counts[width] += 1
    return counts


def _parse_ptxas_log(log: str) -> tuple[int, int, int, int]:
    """(registers, spill store bytes, spill load bytes, shared bytes) from a ``ptxas -v`` log."""
    regs = re.search(r"Used (\d+) registers", log)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    smem = re.search(r"(\d+) bytes smem", log)
    if not regs or not spill:
        raise RuntimeError(f"could not read the ptxas -v log:\n{log}")
    return int(regs.group(1)), int(spill.group(1)), int(spill.group(2)), int(smem.group(1)) if smem else 0


def _compile_with_ptxas_log(src, target, options):
    """``triton.compile`` with the ``ptxas -v`` log of the cubin it builds (triton passes ``-v`` and prints the log
    when ``knobs.nvidia.dump_ptxas_log`` is on), so the figures are those of the exact ptxas flags triton uses."""
    import contextlib
    import io

    import triton

    out = io.StringIO()
    with triton.knobs.nvidia.scope(), triton.knobs.compilation.scope(), contextlib.redirect_stdout(out):
        triton.knobs.nvidia.dump_ptxas_log = True
        triton.knobs.compilation.always_compile = True  # a cached cubin would come without a log
        compiled = triton.compile(src, target=target, options=options)
    return compiled, out.getvalue()


def _cubin_registers(cubin: bytes) -> int | None:
    """Registers from the cubin's resource table (``cuobjdump -res-usage``), or None if cuobjdump is missing."""
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(tool):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        out = subprocess.run([tool, "-res-usage", path], check=True, capture_output=True, text=True).stdout
    m = re.search(r"REG:(\d+)", out)
    return int(m.group(1)) if m else None


def compile_spec(module: str, spec, arch: int) -> AotResult:
    """Compile one ``AotSpec`` for ``sm_<arch>`` and read its resource usage and memory access widths."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    pointer_args = [i for i, ty in enumerate(spec.signature.values()) if str(ty).startswith("*")]
    attrs = {(i,): [["tt.divisibility", 16]] for i in pointer_args}  # torch allocations are 16-byte aligned
    src = ASTSource(spec.fn, spec.signature, spec.constexprs, attrs)
    options = {"num_warps": spec.num_warps, **(getattr(spec, "options", None) or {})}
    compiled, log = _compile_with_ptxas_log(src, GPUTarget("cuda", arch, 32), options)
    ptx, cubin = compiled.asm["ptx"], compiled.asm["cubin"]
    if not ptx or not cubin:
        raise RuntimeError(f"{spec.name}: no PTX or cubin produced for sm_{arch}")
    regs, spill_st, spill_ld, smem = _parse_ptxas_log(log)
    cubin_regs = _cubin_registers(cubin)
    if cubin_regs is not None and cubin_regs != regs:
        raise RuntimeError(f"{spec.name} sm_{arch}: ptxas -v says {regs} registers, the cubin says {cubin_regs}")
    return AotResult(
        module=module,
        name=spec.name,
        arch=arch,
        registers=regs,
        spill_stores=spill_st,
        spill_loads=spill_ld,
        shared=max(smem, int(getattr(compiled.metadata, "shared", 0) or 0)),
        stores=_access_counts(ptx, "st"),
        loads=_access_counts(ptx, "ld"),
        ptx_bytes=len(ptx),
        cubin_bytes=len(cubin),
    )


def _fmt_access(counts: dict) -> str:
    return f"v4:{counts['v4']} v2:{counts['v2']} s:{counts['scalar']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m depthinit.kernels.aot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, nargs="+", default=[80, 90], help="compute capabilities (default 80 90)")
    parser.add_argument("--modules", nargs="+", default=list(KERNEL_MODULES), help="kernel modules to compile")
    args = parser.parse_args(argv)

    specs, notes = collect_specs(args.modules)
    for note in notes:
        print(note)
    header = (
        f"{'module':<8} {'kernel':<34} {'arch':<6} {'regs':>4} {'spill':>9} {'smem':>6}  "
        f"{'global stores':<18} {'global loads':<18}"
    )
    print(header)
    print("-" * len(header))
    failures = 0
    caught: dict[str, None] = {}  # compiler warnings, printed once after the table instead of inside it
    for module, spec in specs:
        for arch in args.arch:
            try:
                with warnings.catch_warnings(record=True) as w:
                    warnings.simplefilter("always")
                    r = compile_spec(module, spec, arch)
                caught.update((f"{x.category.__name__}: {x.message}", None) for x in w)
            except Exception as err:  # report every kernel, then fail
                failures += 1
                print(f"{module:<8} {spec.name:<34} sm_{arch:<3} FAILED: {type(err).__name__}: {err}")
                continue
            print(
                f"{module:<8} {r.name:<34} sm_{arch:<3} {r.registers:>4} {r.spill_stores:>4}/{r.spill_loads:<4} "
                f"{r.shared:>6}  {_fmt_access(r.stores):<18} {_fmt_access(r.loads):<18}"
            )
            if r.spills:
                failures += 1
                print(f"  SPILLS: {r.name} sm_{arch} spills registers")
    print(f"{len(specs)} kernel specializations x {len(args.arch)} archs, {failures} failure(s)")
    for text in caught:
        print(f"note: {text}")
    return 1 if failures or not specs else 0


if __name__ == "__main__":
    sys.exit(main())
