"""Reproductions of the seed studies: ``depthinit repro deep-mlp | std-sweep | gpt2-variance``.

* ``deep-mlp`` — arXiv 2509.05018: a 54-layer ReLU MLP with He, Xavier and depth-aware init (K constant,
  increasing, decreasing), normal and uniform weights, several seeds (:mod:`.deep_mlp`).
* ``std-sweep`` — arXiv 2510.09423: a log sweep of the initial std (1e-4 .. 1) on compact ReLU MLPs on
  digits and wine, and Kaiming (fan-in) vs Xavier under ReLU (:mod:`.std_sweep`).
* ``gpt2-variance`` — arXiv 2510.09423: per-layer Q/K/V weight std of a 12-layer GPT-2-style model trained
  from scratch, byte-level, on Python's own standard-library sources (:mod:`.gpt2_variance`).

Each writes ``report.md`` (with the exact command and a plain agree / disagree statement per claim),
``results.json`` and PNG figures into ``--out``; ``--quick`` runs a CI-sized version in well under a minute.

Example::

    depthinit repro deep-mlp --out results/deep-mlp
    depthinit repro std-sweep --quick --out /tmp/sweep
"""

from __future__ import annotations

from collections.abc import Callable

STUDIES = ("deep-mlp", "std-sweep", "gpt2-variance")


def studies() -> dict[str, tuple[str, Callable]]:
    """``{study: (help, run)}``: ``run(args, parser)`` runs the study on the parsed options of its ``parser``
    (declared by :mod:`depthinit.cli.repro`) and returns the exit status; bad values raise ValueError."""
    from . import deep_mlp, gpt2_variance, std_sweep

    out: dict[str, tuple[str, Callable]] = {}
    for m in (deep_mlp, std_sweep, gpt2_variance):
        m.register(out)
    return out
