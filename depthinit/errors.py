"""Errors a user can fix, raised by the library and shown by the command line as one line (exit status 2).

Bad values raise ``ValueError`` with the valid range in the message; a missing optional package raises
:class:`MissingDependency` (an ``ImportError``) whose message is the install command. The library never
imports the command line: ``depthinit.cli`` maps these to its one-line errors.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType


class MissingDependency(ImportError):
    """An optional package is not installed; the message says what needs it and how to install it."""


def missing_message(packages: dict[str, str], purpose: str, extra: str) -> str | None:
    """The install hint for those of ``packages`` (import name -> pip name) that are absent, or None.

    Found with ``importlib.util.find_spec``: nothing is imported, so the check is cheap enough to run
    before any work (in constructors and at the start of a command).
    """
    absent = [pip for mod, pip in packages.items() if not _installed(mod)]
    if not absent:
        return None
    return f"{purpose} needs {' and '.join(absent)}: pip install 'depthinit[{extra}]' (or {' '.join(absent)})"


def _installed(module: str) -> bool:
    if module in sys.modules:  # imported already (or a module object put there, as tests do)
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def check_installed(packages: dict[str, str], purpose: str, extra: str) -> None:
    """Raise :class:`MissingDependency` naming every absent package of ``packages`` at once."""
    msg = missing_message(packages, purpose, extra)
    if msg:
        raise MissingDependency(msg)


def require(module: str, purpose: str, extra: str, pip_name: str | None = None) -> ModuleType:
    """Import an optional package, or raise :class:`MissingDependency` with the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pip = pip_name or module
        raise MissingDependency(f"{purpose} needs {pip}: pip install 'depthinit[{extra}]' (or {pip})") from e
