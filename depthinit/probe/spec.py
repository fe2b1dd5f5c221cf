"""The scheme-spec grammar: ``name[:key=value[+key=value...]]`` and comma-separated lists of them.

One grammar for every place a scheme is written as text: :func:`depthinit.probe` (``schemes=``), the CLI's
``--schemes`` and ``--option KEY=VALUE``, and the demo's scheme list.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["SchemeSpec", "parse_value", "parse_scheme", "parse_schemes", "scheme_label"]

SchemeSpec = str | tuple[str, dict]


def parse_value(text: str) -> Any:
    """One option value of a spec: an int, else a float, else ``true``/``false`` (any case) as a bool, else
    the stripped string.

    Example:
        >>> [parse_value(t) for t in ("3", " -0.5 ", "1e-3", "True", "uniform")]
        [3, -0.5, 0.001, True, 'uniform']
    """
    t = text.strip()
    for conv in (int, float):
        try:
            return conv(t)
        except ValueError:
            pass
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    return t


def parse_scheme(spec: SchemeSpec) -> tuple[str, dict]:
    """One scheme spec -> ``(name, options)``.

    Accepts a name (``"he"``), a ``(name, options)`` pair, or ``"name:key=value<sep>key=value"`` where
    ``<sep>`` is ``+``, ``;`` or ``,`` (a single spec has no ambiguity): ``"depth_aware:K=1,distribution=uniform"``.
    Values are read by :func:`parse_value`. Names and options are checked by :func:`depthinit.plan`.
    """
    if isinstance(spec, tuple):
        if len(spec) != 2 or not isinstance(spec[0], str) or not isinstance(spec[1], dict):
            raise ValueError(f"a scheme pair must be (name, options dict), got {spec!r}")
        return spec[0], dict(spec[1])
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"bad scheme spec {spec!r}: expected e.g. 'he' or 'depth_aware:K=1+distribution=uniform'")
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    if not name or "=" in name:
        raise ValueError(f"bad scheme spec {spec!r}: expected 'name' or 'name:key=value+key=value'")
    opts: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in re.split(r"[+;,]", rest))):
        key, eq, val = item.partition("=")
        if not eq or not key.strip() or not val.strip():
            raise ValueError(f"bad option {item!r} in scheme spec {spec!r}: expected key=value")
        opts[key.strip()] = parse_value(val)
    return name, opts


def parse_schemes(text: str) -> list[tuple[str, dict]]:
    """A comma-separated list of scheme specs (the CLI's ``--schemes``) -> ``[(name, options), ...]``.

    Syntax: ``scheme[:key=value[+key=value...]][,scheme...]``. Schemes are separated by ``,``; the options
    of one scheme follow ``:`` and are separated by ``+`` (or ``;``, which needs shell quoting). A comma
    item that holds ``=`` but no ``:`` is not a scheme name (names never contain ``=``): it continues the
    options of the scheme before it, so ``depth_aware:K=1,distribution=uniform`` also reads as one scheme.

    Example:
        >>> parse_schemes("he,xavier:distribution=uniform,depth_aware:K=1+distribution=uniform")
        [('he', {}), ('xavier', {'distribution': 'uniform'}), ('depth_aware', {'K': 1, 'distribution': 'uniform'})]
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty scheme list; expected e.g. he,xavier,depth_aware:K=1")
    out: list[tuple[str, dict]] = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            raise ValueError(f"empty item in scheme list {text!r}")
        if "=" in item and ":" not in item:
            if not out:
                raise ValueError(f"scheme list {text!r} starts with an option {item!r}: expected a scheme name first")
            out[-1][1].update(parse_scheme("x:" + item)[1])
        else:
            out.append(parse_scheme(item))
    return out


def scheme_label(name: str, options: dict) -> str:
    """Canonical spec string, e.g. ``depth_aware:K=1+distribution=uniform`` (readable by :func:`parse_scheme`)."""
    return name if not options else name + ":" + "+".join(f"{k}={v}" for k, v in options.items())
