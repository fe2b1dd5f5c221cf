"""``depthinit bench``: the harness on a bench/ folder written here (scripts, a pytest-benchmark module, a
failing and a slow-only script), locating bench/, errors, and a real --quick run of one repository benchmark."""

import json
import os
import textwrap

import pytest

from depthinit.applications import bench as B
from depthinit.cli import main

FAKE = '''
import argparse

def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    print("  fused        2.000 ms     50.0 GB/s")
    print("  loop        20.000 ms      5.0 GB/s")
    return {"speedup": 10.0, "quick": args.quick, "times": {"fused": 0.002, "loop": 0.02}}
'''

BROKEN = '''
def main(argv=None):  # accepts "--quick"
    raise RuntimeError("this benchmark is broken")
'''

NO_QUICK = '''
def main(argv=None):
    return {"x": 1.0}
'''

PYTEST_BENCH = '''
def work(n):
    s = 0
    for i in range(n):
        s += i
    return s

def test_loop_baseline(benchmark):
    benchmark.extra_info["baseline"] = True
    benchmark(work, 20000)

def test_fast(benchmark):
    benchmark.extra_info["bytes"] = 8000
    benchmark(work, 200)
'''


@pytest.fixture()
def bench_dir(tmp_path):
    d = tmp_path / "bench"
    d.mkdir()
    for name, src in (("bench_fake.py", FAKE), ("bench_broken.py", BROKEN), ("bench_noquick.py", NO_QUICK),
                      ("bench_pb.py", PYTEST_BENCH), ("helper_not_a_bench.py", "x = 1\n")):
        (d / name).write_text(textwrap.dedent(src))
    return d


def test_harness_on_a_written_bench_folder(bench_dir, tmp_path, capsys):
    out = tmp_path / "res" / "bench.json"
    rc = main(["bench", "--quick", "--bench-dir", str(bench_dir), "--json", str(out)])
    assert rc == 1  # bench_broken failed: the exit status says so, the table still shows the others
    text = capsys.readouterr().out
    lines = text.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("benchmark "))
    assert lines[header].split()[:5] == ["benchmark", "measure", "value", "target", "met"]
    assert "GB/s" not in lines[header]  # no GPU here: the table has no GB/s column
    res = json.loads(out.read_text())
    assert res["format"] == B.FORMAT and res["quick"] is True and res["gpu"] is False
    by = {b["name"]: b for b in res["benchmarks"]}
    assert set(by) == {"bench_fake.py", "bench_broken.py", "bench_noquick.py", "bench_pb.py"}
    assert by["bench_fake.py"]["argv"] == ["--quick"] and by["bench_fake.py"]["data"]["quick"] is True
    broken = by["bench_broken.py"]
    assert broken["returncode"] == 1 and "this benchmark is broken" in broken["stderr_tail"]
    assert by["bench_noquick.py"]["skipped"].startswith("no quick configuration")
    rows = {(r["bench"], r["what"]): r for r in res["rows"]}
    assert rows[("bench_fake.py", "speedup")]["value"] == 10.0
    assert rows[("bench_fake.py", "times.fused")]["gbs"] == 50.0  # GB/s read from the printed line
    assert rows[("bench_broken.py", "failed")]["note"].startswith("exit status 1: RuntimeError")
    pb = [r for r in res["rows"] if r["bench"] == "bench_pb.py"]
    assert len(pb) == 1 and pb[0]["what"] == "test_fast vs test_loop_baseline"
    # 20000 vs 200 loop iterations: the speed-up is ~100x; anything above 10x shows the baseline was found
    assert pb[0]["value"] > 10 and pb[0]["gbs"] > 0


def test_list_and_only(bench_dir, capsys):
    assert main(["bench", "--list", "--bench-dir", str(bench_dir)]) == 0
    listed = capsys.readouterr().out
    assert "bench_pb" in listed and "pytest-benchmark" in listed and "helper_not_a_bench" not in listed
    assert main(["bench", "--quick", "--bench-dir", str(bench_dir), "--only", "bench_fake"]) == 0
    assert "bench_broken" not in capsys.readouterr().out


@pytest.mark.parametrize("args,match", [
    (["--only", "bench_nope"], "no benchmark named bench_nope"),
    (["--threads", "0"], "--threads must be >= 1"),
])
def test_bad_input_one_line(bench_dir, args, match, capsys):
    assert main(["bench", "--quick", "--bench-dir", str(bench_dir), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err


def test_missing_bench_dir_says_how_to_fix(tmp_path, capsys):
    assert main(["bench", "--bench-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no bench/ folder" in err and "--bench-dir" in err


def test_bench_dir_search_order(bench_dir, monkeypatch):
    monkeypatch.setenv(B.ENV_DIR, str(bench_dir))
    assert B.find_bench_dir() == str(bench_dir)
    monkeypatch.delenv(B.ENV_DIR)
    repo_bench = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(B.__file__)))), "bench")
    if os.path.isdir(repo_bench):  # a source checkout: found beside the package
        assert B.find_bench_dir() == repo_bench


def test_printed_gbs():
    out = "x\n  layer_stats (fused)      1.250 ms    812.3 GB/s   40.1% of peak\n  loop  3 ms  1 GB/s\n"
    assert B.printed_gbs(out) == {"layer_stats (fused)": 812.3, "loop": 1.0}


REPO_BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


@pytest.mark.skipif(not os.path.isfile(os.path.join(REPO_BENCH, "bench_monitor_overhead.py")),
                    reason="the repository's monitor benchmark is not there")
def test_real_quick_run_prints_the_ratio_table(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", "--quick", "--only", "bench_monitor_overhead", "--threads", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "every ratio is against a baseline measured in the same run" in text
    assert "VarianceMonitor step overhead vs no monitoring" in text and "<= 1%" in text
    res = json.loads(out.read_text())
    rows = {r["what"]: r for r in res["rows"]}
    ov = rows["VarianceMonitor step overhead vs no monitoring (paired steps)"]  # the verdict's estimate
    assert ov["unit"] == "%" and isinstance(ov["value"], float)
    # met left blank (None) exactly when the median's 90 % interval straddles 1 %: the run cannot tell
    assert ov["met"] in (True, False, None) and (ov["met"] is None) == ("(undecided)" in ov["note"])
    assert "interval of the median" in ov["note"]
    rounds = rows["  the same, median of interleaved rounds"]
    assert rounds["unit"] == "%" and isinstance(rounds["value"], float) and rounds["met"] is None
    parts = rows["  the same, one monitoring cycle timed by parts"]
    assert parts["unit"] == "%" and isinstance(parts["value"], float) and parts["met"] == (parts["value"] <= 1.0)
    assert rows["monitor overhead / wandb.watch-like overhead"]["value"] is not None


def test_the_gpu_check_suite_is_not_discovered_as_a_benchmark():
    # bench/gpu_check.py runs the CUDA tests and the gpu_* benchmarks itself; `depthinit bench` on a GPU would
    # otherwise run the whole check again as one "benchmark"
    repo_bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
    if not os.path.isfile(os.path.join(repo_bench, "gpu_check.py")):
        pytest.skip("the repository's bench/ folder is not there")
    found = B.discover(repo_bench)
    assert "gpu_check.py" not in found and "gpu_init.py" in found and "bench_init_cpu.py" in found
