"""bench/gpu_check.py: its dry run (the CUDA tests and the GPU benchmarks on CPU under the Triton interpreter, tiny
sizes) passes as a user runs it, from the repository root with nothing installed; failures reach the table."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("_bench_gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # import-safe: no torch, no device
    return module


def _why_it_failed(proc: subprocess.CompletedProcess, res: dict) -> str:
    """The failed CUDA tests (names, messages, pytest's tail) and the parts that raised, then the table's head."""
    tests = res.get("tests", {})
    lines = [f"CUDA test failures: {tests.get('failures')}", f"pytest's tail: {tests.get('output_tail', '')[-2500:]}"]
    lines += [f"{part} raised: {res[part]['error'][-1500:]}" for part in ("init", "stats", "monitor")
              if isinstance(res.get(part), dict) and "error" in res[part]]  # fmt: skip
    return "\n".join(lines) + "\n" + proc.stdout[:1500] + proc.stderr[-1500:]


@pytest.mark.slow
def test_dry_run_passes_from_the_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRITON_INTERPRET")}
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--dry-run", "--out", str(tmp_path)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    saved = tmp_path / "gpu_check.json"
    res = json.loads(saved.read_text()) if saved.is_file() else {}
    assert proc.returncode == 0, _why_it_failed(proc, res)
    assert res["format"] == "depthinit.gpu_check/1" and res["dry_run"] is True
    tests = res["tests"]
    assert tests["ran"] and tests["failed"] == tests["errors"] == 0 and tests["passed"] >= 20, tests
    assert set(tests["skip_reasons"]) <= {"GPU only: a 4.3 GB tensor"}, tests["skip_reasons"]  # nothing else skipped
    init = res["init"]["rows"]
    for dtype in ("fp32", "bf16"):
        got = {(r["tensors"], r["candidate"]) for r in init if r["dtype"] == dtype}
        want = {(1, "Tensor.normal_"), (1, "fused"), (4, "fused"), (16, "torch_init"), (16, "fused_incl_prepare")}
        assert want <= got, got
    for dtype in ("bfloat16", "float32"):
        s = res["stats"][dtype]
        assert s["bitwise_equal"] and s["exact_fields_equal"] and s["var_rel"] < 1e-4, s
        assert s["ratios"]["vs_foreach_norm"] > 0
    assert set(res["monitor"]["overhead_pct"]) == {"depthinit", "watch"}
    assert res["optional_modules_loaded"] == []  # the GPU image has torch, triton, numpy and pytest only
    parts = {r["part"] for r in res["table"]}
    assert parts == {"tests", "init", "stats", "monitor"}
    assert all(r["met"] is None for r in res["table"] if r["part"] != "tests")  # no targets on CPU
    assert "fused fill, 16 tensors" in proc.stdout and "CUDA tests passed" in proc.stdout


def test_failures_reach_the_table(tmp_path):
    """A failed CUDA test and a part that raised are rows of the table (and make the check fail)."""
    gc = _gpu_check()
    xml = tmp_path / "junit.xml"
    xml.write_text(textwrap.dedent("""\
        <testsuites><testsuite>
          <testcase classname="tests.test_cuda" name="test_a"/>
          <testcase classname="tests.test_cuda" name="test_b"><failure message="assert 1 == 2">x</failure></testcase>
          <testcase classname="tests.test_cuda" name="test_c"><skipped message="GPU only: x"/></testcase>
        </testsuite></testsuites>
        """))
    counts = gc.junit_counts(str(xml))
    assert (counts["passed"], counts["failed"], counts["errors"], counts["skipped"]) == (1, 1, 0, 1)
    assert counts["failures"] == [{"test": "tests.test_cuda::test_b", "message": "assert 1 == 2"}]
    rows = gc.table_rows({"tests": {"ran": True, **counts}, "init": {"error": "Traceback\nRuntimeError: boom"}})
    assert rows[0]["met"] is False and "test_b" in rows[0]["note"]
    assert rows[1]["part"] == "init" and rows[1]["measure"] == "FAILED" and "RuntimeError: boom" in rows[1]["note"]
    text = gc.format_table(rows)
    assert "NO" in text.splitlines()[2] and "FAILED" in text
