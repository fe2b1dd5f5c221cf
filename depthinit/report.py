"""Plain-text and JSON output shared by every report: aligned tables, markdown tables, strict JSON values.

One renderer each, used by the plan table, the probe report, the benchmark runner, the demo and the
reproductions.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Container, Iterable, Sequence
from typing import Any

__all__ = ["align", "aligned_table", "md_table", "json_safe", "strict_json", "write_json"]


def align(rows: Sequence[Sequence[str]], right: Container[int] = (), rule: bool = True) -> list[str]:
    """Rows of strings as aligned columns: left-aligned, except the columns in ``right`` (numbers); a dashed
    rule under the first (header) row unless ``rule`` is False."""
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for i, r in enumerate(rows):
        out.append("  ".join(c.rjust(w) if j in right else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths)))
                   .rstrip())
        if i == 0 and rule:
            out.append("  ".join("-" * w for w in widths))
    return out


def aligned_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """:func:`align` of a header and rows (cells turned to ``str``), as one string."""
    return "\n".join(align([tuple(map(str, headers)), *(tuple(map(str, r)) for r in rows)]))


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    out = ["| " + " | ".join(map(str, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None, recursively (strict JSON has no NaN or inf).

    Objects with a ``to_dict()`` are converted first; tuples become lists.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "to_dict"):
        return json_safe(obj.to_dict())
    return obj


def strict_json(obj: Any, indent: int | None = 1) -> str:
    """``obj`` as strict JSON text: non-finite floats as null (:func:`json_safe`), other unknown values as ``str``."""
    return json.dumps(json_safe(obj), indent=indent, default=str, allow_nan=False)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Save ``obj`` to ``path`` as :func:`strict_json`."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(strict_json(obj) + "\n")
