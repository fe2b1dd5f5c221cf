"""The benchmarks return their results as data (``bench/_results.py`` timing rows) and ``depthinit bench`` builds
its table from the JSON they save, not from what they print."""

from __future__ import annotations

import importlib.util
import json
import os
import textwrap

import pytest

from depthinit.applications import bench as B
from depthinit.cli import main

REPO_BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
STATS_CPU = os.path.join(REPO_BENCH, "bench_stats_cpu.py")

pytestmark = pytest.mark.skipif(not os.path.isfile(STATS_CPU), reason="the repository's bench/ folder is not there")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", os.path.join(REPO_BENCH, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_stats_cpu_run_returns_timing_rows(one_thread):
    mod = _load("bench_stats_cpu")
    res = mod.run(reps=2, loop_reps=1, width=32, blocks=2)
    rows = {r["implementation"]: r for r in res["rows"]}
    assert set(rows) == {"layer_stats", "var_mean+item loop", "x.sum() one tensor", "p.sum() loop",
                         "tiny: layer_stats", "tiny: var_mean+item loop", "host: 10,000 x 1 element"}
    fields = set(_load("_results").ROW_FIELDS)
    assert all(set(r) == fields for r in res["rows"])
    ls, loop = rows["layer_stats"], rows["var_mean+item loop"]
    assert ls["reps"] == 2 and loop["reps"] == 1
    assert 0 < ls["min_ms"] <= ls["median_ms"] <= ls["max_ms"]
    assert ls["baseline"] == "var_mean+item loop" and ls["ratio"] == pytest.approx(loop["median_ms"] / ls["median_ms"])
    assert res["summary"]["speedup_vs_var_mean"] == pytest.approx(ls["ratio"])
    nbytes = res["config"]["bytes"]
    assert nbytes == 4 * res["config"]["elements"] and ls["gbs"] == pytest.approx(nbytes / ls["median_ms"] / 1e6)
    assert rows["tiny: layer_stats"]["gbs"] is None and rows["x.sum() one tensor"]["ratio"] is None
    json.dumps(res, allow_nan=False)  # plain data


def test_json_options_of_the_benchmarks():
    mod = _load("bench_monitor_overhead")
    ap = mod.parser()
    assert ap.parse_args([]).json is None
    assert ap.parse_args(["--json"]).json == "-"  # the old flag: print the JSON
    assert ap.parse_args(["--layers", "2", "--json", "r.json"]).json == "r.json"


SILENT = '''
import importlib.util, sys
sys.path.insert(0, {bench!r})
spec = importlib.util.spec_from_file_location("real_bench_stats_cpu", {path!r})
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
import _results
quiet = lambda *a, **k: None
mod.print = _results.print = quiet  # the benchmark prints nothing: the runner has only its JSON to go on
if __name__ == "__main__":
    mod.main()
'''


def test_runner_table_is_built_from_the_saved_json(tmp_path, capsys):
    d = tmp_path / "bench"
    d.mkdir()
    (d / "bench_stats_cpu.py").write_text(textwrap.dedent(SILENT.format(bench=REPO_BENCH, path=STATS_CPU)))
    out = tmp_path / "b.json"
    assert main(["bench", "--quick", "--bench-dir", str(d), "--threads", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    res = json.loads(out.read_text())
    (b,) = res["benchmarks"]
    assert b["name"] == "bench_stats_cpu.py" and b["returncode"] == 0 and b["stdout_tail"] == ""
    assert b["argv"] == list(B.ADAPTERS["bench_stats_cpu.py"].quick)
    data = b["data"]
    assert set(data) == {"config", "first_call_s", "rows", "summary", "targets"}
    assert data["config"]["width"] == 256 and data["config"]["reps"] == 3  # the adapter's quick arguments
    rows = [r for r in res["rows"] if r["bench"] == "bench_stats_cpu.py"]
    assert [r["value"] for r in rows] == [data["summary"][k] for k in
                                          ("speedup_vs_var_mean", "ratio_vs_sum", "tiny_speedup_vs_var_mean")]
    by_impl = {r["implementation"]: r for r in data["rows"]}
    assert rows[0]["gbs"] == by_impl["layer_stats"]["gbs"] > 0
    assert rows[1]["gbs"] == by_impl["x.sum() one tensor"]["gbs"] > 0
    assert f"{rows[0]['value']:.3g}x" in text and "layer_stats speed-up vs var_mean+.item() loop" in text


def test_a_known_benchmark_that_saves_nothing_says_so(tmp_path):
    d = tmp_path / "bench"
    d.mkdir()
    (d / "materialize_memory.py").write_text("print('ratio = 1.05x the parameter bytes')\n")
    res = B.run_all(str(d), quick=True)
    (row,) = res["rows"]
    assert row["what"] == "no result saved" and row["value"] is None


def test_runner_table_uses_the_one_renderer():
    rows = [B.Row("bench_x.py", "speed-up", 12.5, "x", ">= 10x", True, 812.34, "n"), B.Row("b.py", "m", None)]
    from depthinit.report import aligned_table

    want = aligned_table(["benchmark", "measure", "value", "target", "met", "GB/s", "note"],
                         [["bench_x", "speed-up", "12.5x", ">= 10x", "yes", "812.3", "n"],
                          ["b", "m", "—", "", "", "—", ""]])
    assert B.table(rows, show_gbs=True) == want
