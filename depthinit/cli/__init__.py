"""``depthinit`` command line: ``plan | stats | schemes | probe | plot | demo | bench | repro``.

One module per command, registered from the explicit list :data:`COMMANDS`; each module has ``NAME``,
``HELP`` and ``setup(parser) -> run(args) -> exit status``. Every user error (a bad option, a missing
input, an output path that cannot be written, a device this torch cannot use, a missing optional package)
is found before the work starts and printed as one line ``depthinit: error: ...`` with exit status 2,
never a traceback; Ctrl-C exits with status 130.

Neither the library nor :mod:`depthinit.applications` imports this package: they raise ``ValueError`` (bad
values), :class:`depthinit.errors.MissingDependency` (an optional package) or ``NotImplementedError``, which
:func:`main` prints the same way.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..errors import MissingDependency
from . import bench, demo, plan, plot, probe, repro, schemes, stats
from ._common import Parser, UsageError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

COMMANDS = (plan, stats, schemes, probe, plot, demo, bench, repro)

__all__ = ["COMMANDS", "EXIT_USAGE", "UsageError", "build_parser", "main"]


def _user_errors() -> tuple[type[BaseException], ...]:
    from ..applications.bench import BenchError

    return UsageError, ValueError, NotImplementedError, MissingDependency, BenchError


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="depthinit", description="Depth-aware initialization and variance monitoring.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for cmd in COMMANDS:
        sp = sub.add_parser(cmd.NAME, help=cmd.HELP, description=cmd.HELP)
        sp.set_defaults(_run=cmd.setup(sp))
    return parser


def _error(message: str) -> int:
    print(f"depthinit: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (the ``depthinit`` console script)."""
    try:
        args = build_parser().parse_args(argv)
        return int(args._run(args) or 0)
    except _user_errors() as e:
        text = str(e).strip()
        return _error(" ".join(text.split()) if text else type(e).__name__)
    except KeyboardInterrupt:
        print("\ndepthinit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `depthinit schemes | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
