"""``depthinit schemes``: the init schemes, their aliases, what they do and their options."""

from __future__ import annotations

import argparse
import re
import textwrap
from collections.abc import Callable

NAME = "schemes"
HELP = "list the init schemes and their options"
WIDTH = 100


def setup(sp: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    return run


def plain(text: str) -> str:
    """RST markup as plain text: ``code`` -> code, :func:`name` -> name, `x` -> x."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "").replace("`", "")


def description(doc: str) -> str:
    """The first paragraph of a docstring (whole sentences, never cut at a line end), as plain text."""
    para = doc.strip().split("\n\n")[0]
    return plain(" ".join(para.split()))


def run(args: argparse.Namespace) -> int:
    from depthinit.schemes import SCHEMES

    for s in SCHEMES.values():
        opts = ", ".join(f"{k}={v!r}" for k, v in s.options.items())
        alias = f" (aliases: {', '.join(s.aliases)})" if s.aliases else ""
        print(f"{s.name}{alias}")
        print(textwrap.fill(description(s.doc), WIDTH, initial_indent="    ", subsequent_indent="    "))
        print(textwrap.fill(f"options: {opts or '-'}", WIDTH, initial_indent="    ", subsequent_indent="      "))
    return 0
