"""``python -m depthinit.kernels.aot``: every kernel compiles for sm_80 and sm_90 without a GPU, no spills.

The command runs once (module-scoped fixture, a subprocess as a user would run it); the tests read its table.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from depthinit.kernels import aot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROW = re.compile(
    r"^(?P<module>\w+)\s+(?P<kernel>\S+)\s+sm_(?P<arch>\d+)\s+(?P<regs>\d+)\s+(?P<sst>\d+)/(?P<sld>\d+)\s+"
    r"(?P<smem>\d+)\s+v4:(?P<st4>\d+) v2:(?P<st2>\d+) s:(?P<st1>\d+)\s+v4:(?P<ld4>\d+) v2:(?P<ld2>\d+) s:(?P<ld1>\d+)"
)


@pytest.fixture(scope="module")
def aot_run():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run(
        [sys.executable, "-m", "depthinit.kernels.aot", "--arch", "80", "90"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    rows = [m.groupdict() for m in map(ROW.match, res.stdout.splitlines()) if m]
    return res, rows


def test_every_kernel_compiles_without_spills(aot_run):
    res, rows = aot_run
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert "0 failure(s)" in res.stdout
    for r in rows:
        assert int(r["sst"]) == 0 and int(r["sld"]) == 0, r
        assert 0 < int(r["regs"]) <= 255, r
    # one row per kernel specialization and arch, for every kernel module that exists
    modules = {r["module"] for r in rows}
    assert "fill" in modules
    for name in aot.KERNEL_MODULES:
        exists = os.path.exists(os.path.join(ROOT, "kernels", f"{name}.py"))
        assert (name in modules) == exists, (name, modules)
    archs = {(r["module"], r["kernel"]): set() for r in rows}
    for r in rows:
        archs[(r["module"], r["kernel"])].add(r["arch"])
    assert all(a == {"80", "90"} for a in archs.values()), archs


def test_fill_kernel_stores_are_vectorized_when_aligned(aot_run):
    _, rows = aot_run
    fill = {(r["kernel"], r["arch"]): r for r in rows if r["module"] == "fill"}
    assert fill, "no fill rows in the AOT table"
    for (kernel, arch), r in fill.items():
        vector = int(r["st4"]) + int(r["st2"])
        if kernel.endswith("_aligned"):
            # fp32: st.global.v4.b32; fp16 and bf16: st.global.v2.b32 (4 halves per thread)
            assert int(r["st4"]) >= 1 and int(r["st2"]) >= 2, (kernel, arch, r)
        else:
            assert vector == 0, (kernel, arch, r)  # no alignment hint: scalar stores only


def test_access_counts_and_missing_module_note():
    ptx = "st.global.v4.b32 [%rd1], {%r1, %r2, %r3, %r4};\nst.global.b16 [%rd2], %rs1;\nld.global.v2.u32 {%r5, %r6}"
    assert aot._access_counts(ptx, "st") == {"v4": 1, "v2": 0, "scalar": 1}
    assert aot._access_counts(ptx, "ld") == {"v4": 0, "v2": 1, "scalar": 0}
    specs, notes = aot.collect_specs(("fill", "no_such_kernel_module"))
    assert specs and all(module == "fill" for module, _ in specs)
    assert notes == ["note: depthinit.kernels.no_such_kernel_module does not exist yet; skipped"]
