"""``depthinit repro <study>``: the reproductions of the seed studies (see :mod:`depthinit.repro`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ._common import MATPLOTLIB, Parser, UsageError, output_dir, require

NAME = "repro"
HELP = "reproduce the seed papers' studies (deep-mlp, std-sweep, gpt2-variance)"


def setup(sp: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    from depthinit.repro import STUDIES, studies

    sub = sp.add_subparsers(dest="study", required=True, metavar="{" + ",".join(STUDIES) + "}", parser_class=Parser)
    runners: dict[str, Callable] = {}
    for name, (help_, study_setup) in studies().items():
        runners[name] = study_setup(sub.add_parser(name, help=help_, description=help_))

    def run(args: argparse.Namespace) -> int:
        require(MATPLOTLIB, f"depthinit repro {args.study}", "plots")
        output_dir(args.out, "--out")
        try:
            return runners[args.study](args)
        except FileNotFoundError as e:  # a missing data folder: one line
            raise UsageError(" ".join(str(e).split())) from None

    return run
