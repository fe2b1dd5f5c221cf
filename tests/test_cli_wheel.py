"""The package as a user gets it: build the wheel, install it in a fresh virtual environment, run the demo
from outside the checkout.

The venv has no system site packages. It gets torch==2.13.0 (the pinned CPU build, from pip's local wheels
and cache, as CI installs it), the wheel's own requirements and those of its ``[demo]`` extra, read from the
wheel's METADATA, and the wheel itself. triton is left out on purpose: its marker limits it to Linux x86-64,
and running the demo without it is what a macOS or ARM user gets (it also saves a 1 GB install); the marker
itself is checked in the metadata.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRITON = 'triton>=3.0; sys_platform == "linux" and platform_machine == "x86_64"'
SKIP = {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"}


CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}  # no checkout on the path


def _sh(*cmd, cwd=None, env=None, timeout=900):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env or CLEAN_ENV, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"{cmd}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _requirements(metadata: str) -> tuple[list[str], dict[str, list[str]]]:
    """``(Requires-Dist without extra, {extra: [requirement, ...]})`` of a METADATA file."""
    base, extras = [], {}
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist: "):
            continue
        req = line.removeprefix("Requires-Dist: ")
        if "extra ==" in req:
            name, _, extra = req.partition(";")
            extras.setdefault(extra.split("==")[1].strip().strip("'\""), []).append(name.strip())
        else:
            base.append(req)
    return base, extras


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy: building writes build/ and *.egg-info into the source folder
    shutil.copytree(ROOT, src, ignore=lambda d, names: [n for n in names if n in SKIP or n.endswith(".egg-info")])
    # setuptools of this environment when it has one (no index needed), else pip's isolated build
    isolation = ["--no-build-isolation"] if _has_setuptools() else []
    _sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", tmp / "dist", src, env=os.environ)
    (whl,) = (tmp / "dist").glob("depthinit-*.whl")
    return whl


def _has_setuptools() -> bool:
    try:
        import setuptools  # noqa: F401
    except ImportError:
        return False
    return True


def test_wheel_metadata_marks_triton_and_names_the_demo_extra(wheel):
    assert wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    base, extras = _requirements(meta)
    assert TRITON in base, base  # an environment marker, not a build-time decision
    assert not any(r.startswith("triton") and r != TRITON for r in base)
    assert set(extras["demo"]) == {"matplotlib", "scikit-learn"}
    for path in ("depthinit/cli/__init__.py", "depthinit/cli/demo.py", "depthinit/kernels/cpu_stats.c",
                 "depthinit/applications/repro/common.py", "depthinit/applications/training.py",
                 "depthinit/applications/models.py", "depthinit/applications/data.py"):
        assert path in names, path
    assert "depthinit/kernels/cpu_parallel.h" in names  # included by both C kernels
    assert "depthinit/schemes/transformer.py" in names  # subpackages are found, not listed


@pytest.mark.slow
def test_installed_wheel_runs_the_quick_demo_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    _sh(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    py = venv / "bin" / "python"
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    base, extras = _requirements(meta)
    reqs = [r for r in base if not r.startswith(("torch", "triton"))] + extras["demo"]
    # cwd outside the checkout: `python -m` puts the cwd on sys.path, where an editable install's
    # depthinit.egg-info would make pip think the package is installed already
    _sh(py, "-m", "pip", "install", "-q", "torch==2.13.0", *reqs, cwd=tmp_path)
    _sh(py, "-m", "pip", "install", "-q", "--no-deps", wheel, cwd=tmp_path)

    env = dict(CLEAN_ENV)
    env["DEPTHINIT_CACHE_DIR"] = str(tmp_path / "cache")  # the C kernel is built as on a first use
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _sh(py, "-c", "import depthinit; print(depthinit.__file__)", cwd=work, env=env).stdout.strip()
    assert where.startswith(str(venv)), where  # the installed package, not the checkout
    exe = venv / "bin" / "depthinit"
    r = _sh(exe, "demo", "--quick", "--out", "report", cwd=work, env=env, timeout=600)
    assert "report:" in r.stdout
    for name in ("report.md", "summary.json", "probe.png", "training.png", "monitor.png", "gradients.png"):
        assert (work / "report" / name).is_file(), name
    assert any((tmp_path / "cache").glob("cpu_stats-*")), "the C statistics kernel was not built into the cache"
    report = (work / "report" / "report.md").read_text()
    assert "1 thread)" in report and "1 threads" not in report  # the demo's default: one thread
    assert "Split(" not in report and "digits: 1,347 training and 450 test samples" in report
    bad = subprocess.run([exe, "plan", "--model", "mlp:in=0"], cwd=work, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("depthinit: error: in=0") and bad.stderr.count("\n") == 1
