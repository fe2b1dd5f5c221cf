"""One place that decides whether a plan can be filled: finite weights in the target dtype, and saved plans
that are complete.

:class:`~depthinit.plan.InitPlan` calls :func:`check_plan` when it is built (by :func:`depthinit.plan` from
a scheme's draws, or by ``InitPlan.from_dict`` from a file) and again before it fills (rows may be edited
in between). Every error is one ``ValueError`` line that names the row and the valid range.

The range follows the random-number contract (:mod:`depthinit.rng`): parameters are rounded to fp32 and
every value is computed in fp32 (fp64 parameters and arithmetic for fp64 targets), then rounded once to the
output dtype. A normal draw is ``mean + std·z`` with ``|z| <= Z_MAX`` (Box-Muller on uniforms no smaller
than 2**-24), so ``|mean| + Z_MAX·std`` must overflow neither the compute dtype nor the target dtype;
uniform bounds, truncation bounds and constants must fit both as well.
Orthogonal rows are a QR in fp64 scaled by the gain (entries of magnitude <= 1), so ``|gain|`` must fit the
target dtype, and the parameter needs two or more dimensions (as ``torch.nn.init.orthogonal_``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch

Z_MAX = math.sqrt(-2.0 * math.log(2.0**-24))  # 5.77: the largest |z| of the contract's Box-Muller
FP32_MAX = float(torch.finfo(torch.float32).max)


@functools.cache
def dtype_max(dtype: str) -> float:
    """The largest finite value of ``dtype`` (``"torch.float16"`` ...)."""
    return float(torch.finfo(getattr(torch, dtype.replace("torch.", ""))).max)


def _real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_row(r: Any) -> None:
    """ValueError unless the plan row ``r`` (a :class:`~depthinit.plan.PlanRow`) fills finite values."""
    dist, name, dt = r.distribution, r.name, r.dtype.replace("torch.", "")
    if dist == "keep":
        return
    if dist == "orthogonal":
        lim = dtype_max(r.dtype)
        if len(r.shape) < 2:
            raise ValueError(f"plan row {name!r}: orthogonal needs a parameter of 2 or more dimensions, got shape "
                             f"{tuple(r.shape)}; use another distribution for it")
        if not (_real(r.std) and abs(r.std) <= lim):
            raise ValueError(f"plan row {name!r}: orthogonal gain={r.std!r} does not give finite {dt} weights; "
                             f"valid: a finite gain with |gain| <= {lim:.4g}")
        return
    # the fill computes in fp32, in fp64 for fp64 targets
    cdt, cmax = ("fp64", dtype_max(r.dtype)) if dt == "float64" else ("fp32", FP32_MAX)
    lim = min(cmax, dtype_max(r.dtype))
    for k in ("mean", "std", "low", "high"):
        v = getattr(r, k)
        if v is not None and not (_real(v) and abs(v) <= cmax):
            raise ValueError(f"plan row {name!r}: {k}={v!r} is not a finite {cdt} number (the fill computes in "
                             f"{cdt}); valid: |{k}| <= {cmax:.4g}")
    if not r.std >= 0:
        raise ValueError(f"plan row {name!r}: std={r.std!r} must be >= 0")
    if dist == "constant":
        if abs(r.mean) > lim:
            raise ValueError(f"plan row {name!r}: constant {r.mean:g} overflows {dt}; valid: |value| <= {lim:.4g}")
    elif dist == "normal":
        if abs(r.mean) + Z_MAX * r.std > lim:
            room = max(lim - abs(r.mean), 0.0) / Z_MAX
            raise ValueError(f"plan row {name!r}: normal(mean={r.mean:g}, std={r.std:g}) overflows {dt} (draws reach "
                             f"|mean| + {Z_MAX:.2f}·std); valid: |mean| + {Z_MAX:.2f}·std <= {lim:.4g}, here "
                             f"std <= {room:.4g}")
    elif dist in ("uniform", "trunc_normal"):
        lo, hi = r.low, r.high
        if lo is None or hi is None:
            raise ValueError(f"plan row {name!r}: {dist} needs low and high")
        if max(abs(lo), abs(hi)) > lim:
            raise ValueError(f"plan row {name!r}: {dist} bounds [{lo:g}, {hi:g}] overflow {dt}; valid: bounds "
                             f"within ±{lim:.4g}")
        if dist == "uniform" and hi - lo > cmax:
            raise ValueError(f"plan row {name!r}: uniform width {hi - lo:g} overflows {cdt}; valid: high - low <= "
                             f"{cmax:.4g}")
        if dist == "trunc_normal" and not (r.std > 0 and lo < hi):
            raise ValueError(f"plan row {name!r}: trunc_normal needs std > 0 and low < high, got std={r.std:g}, "
                             f"[{lo:g}, {hi:g}]")


def check_constants(constants: Any) -> dict[str, float]:
    """A plan's ``constants``: an object of finite numbers (e.g. DeepNorm's ``alpha``)."""
    if not isinstance(constants, Mapping):
        raise ValueError(f"plan 'constants' must be an object of numbers, got {type(constants).__name__}")
    for k, v in constants.items():
        if not (isinstance(k, str) and _real(v)):
            raise ValueError(f"plan constant {k!r}={v!r} must be a finite number")
    return dict(constants)


def check_saved_options(scheme: str, options: Any) -> dict[str, Any]:
    """The ``options`` of a saved plan: every option of its scheme, each valid (a registered scheme's
    options are checked as the scheme checks them; an unregistered scheme's are kept as they are)."""
    from . import schemes as S

    if not isinstance(options, Mapping):
        raise ValueError(f"plan 'options' must be an object, got {type(options).__name__}")
    try:
        sch = S.get_scheme(scheme)
    except ValueError:
        return dict(options)  # a user-registered scheme not registered in this process
    missing = sorted(set(sch.options) - set(options))
    if missing:
        raise ValueError(f"plan options lack {', '.join(missing)} of scheme {sch.name!r}: a saved plan lists every "
                         f"option (as InitPlan.to_json writes them)")
    opts = S.check_options(sch, dict(options))
    probe = S.ParamInfo("w", (2, 2), "other", 1, 1, 2, 2)
    try:
        sch.fn(probe, **opts)
    except (TypeError, ArithmeticError) as e:
        raise ValueError(f"plan options of scheme {sch.name!r} are invalid: {e}") from None
    return opts


def check_plan(rows: Iterable[Any], constants: Any = None) -> None:
    """Every row fills finite values (:func:`check_row`) and the constants are finite numbers."""
    for r in rows:
        check_row(r)
    if constants is not None:
        check_constants(constants)
