"""What every command shares: the one-line usage error, the parser, argument types and up-front checks.

Every check here runs before a command starts its work, so a typo costs nothing. Output paths follow one
policy everywhere: missing parent folders are created (as ``mkdir -p``); a file where a folder is expected,
or a folder where a file is expected, is an error.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from ..errors import check_installed
from ..kernels.contract import check_seed
from ..probe import parse_value  # the value grammar of `probe --schemes`


class UsageError(Exception):
    """A user error: printed as one line ``depthinit: error: ...``, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument raises :class:`UsageError` (one line, no usage dump)."""

    def error(self, message: str):
        raise UsageError(message)


# ------------------------------------------------------------------------------------------ argument types


def number(text: str) -> float:
    """A float (NaN and infinities reach the option's own check, which names the valid range)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def seed(text: str) -> int:
    """A seed: an integer in [0, 2**64)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    try:
        return check_seed(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**64), got {v}") from None


def positive_number(text: str) -> float:
    """A finite float > 0."""
    v = number(text)
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return v


# ------------------------------------------------------------------------------------------ scheme options

SCHEME_FLAGS = ("K", "schedule", "distribution", "nonlinearity", "std")


def add_scheme_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--scheme", default="depth_aware", help="init scheme (default depth_aware; all of them: "
                                                             "`depthinit schemes`)")
    sp.add_argument("--K", type=number, help="depth-aware hyperparameter K (default 1)")
    sp.add_argument("--schedule", help="depth schedule of depth_aware: constant, ramp (default) or linear")
    sp.add_argument("--distribution", help="normal (default), uniform or trunc_normal")
    sp.add_argument("--nonlinearity", help="activation the gain is computed for: relu (default), gelu, tanh, ...")
    sp.add_argument("--std", type=number, help="fixed std of gpt2, normal and trunc_normal (their defaults: "
                                               "`depthinit schemes`)")
    sp.add_argument("--option", action="append", metavar="KEY=VALUE",
                    help="any other scheme option, repeatable (e.g. --option gain=2); see `depthinit schemes`")
    sp.add_argument("--seed", type=seed, default=0, help="64-bit seed of the counter-based RNG (default 0)")


def scheme_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options given by ``--K`` ... and ``--option KEY=VALUE``; a key given twice is an error."""
    opts: dict[str, Any] = {}
    for key in SCHEME_FLAGS:
        v = getattr(args, key, None)
        if v is not None:
            opts[key] = v
    for item in getattr(args, "option", None) or []:
        k, eq, v = item.partition("=")
        k = k.strip()
        if not eq or not k:
            raise UsageError(f"--option takes key=value, got {item!r}")
        if k in opts:
            raise UsageError(f"scheme option {k!r} is given twice: keep one")
        opts[k] = parse_value(v.strip())
    return opts


# ------------------------------------------------------------------------------------------ up-front checks


def _mkdir(folder: str, flag: str, path: str) -> None:
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot create the folder {folder}: {e.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{flag} {path}: the folder {folder} is not writable")
    try:  # os.access says yes to root everywhere; a real file says whether the folder takes one
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot write in the folder {folder}: {e.strerror}") from None


# what matplotlib's savefig writes
FIGURE_SUFFIXES = ("png", "pdf", "svg", "svgz", "jpg", "jpeg", "webp", "tif", "tiff", "eps", "ps", "pgf")


def output_file(path: str, flag: str, suffixes: Sequence[str] = ()) -> str:
    """Check an output file before the work: a name, not a folder, one of ``suffixes`` (when given), in a
    folder that takes files; its parent folders are created now."""
    if not path:
        raise UsageError(f"{flag} needs a file name")
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path} is a folder: give a file name inside it")
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if suffixes and ext not in suffixes:
        raise UsageError(f"{flag} {path}: unknown file type {ext or '(none)'!r}; use one of {', '.join(suffixes)}")
    _mkdir(os.path.dirname(os.path.abspath(path)), flag, path)
    return path


def output_dir(path: str, flag: str) -> str:
    """Check an output folder before the work: not an existing file; created now if missing."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{flag} {path} is a file, not a folder: give a folder name (it is created)")
    _mkdir(path, flag, path)
    return path


def input_file(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise UsageError(f"no such file: {path} ({what})" if not os.path.exists(path) else
                         f"{path} is not a file ({what})")
    return path


def check_device(text: str) -> str:
    """A device this torch build can use (cpu, cuda, cuda:N, mps), else a one-line error naming the fix."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {text!r} is not a device: use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise UsageError(f"--device {text}: {why}; use --device cpu (or install a CUDA build of torch)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"--device {text}: there are {torch.cuda.device_count()} CUDA device(s), "
                             f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError(f"--device {text}: MPS is not available here; use --device cpu")
    elif dev.type != "cpu":
        raise UsageError(f"--device {text}: only cpu, cuda and mps are supported")
    return text


MATPLOTLIB = {"matplotlib": "matplotlib"}
DEMO_PACKAGES = {"matplotlib": "matplotlib", "sklearn": "scikit-learn"}  # the [demo] extra


def require(packages: dict[str, str], purpose: str, extra: str) -> None:
    """Optional packages a command needs, checked before the work (every missing one named at once)."""
    check_installed(packages, purpose, extra)
