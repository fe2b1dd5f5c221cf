"""Calibrate an initialization on the model itself: solve for K, or rescale layer by layer (LSUV).

Two modes, both returning an :class:`~depthinit.plan.InitPlan` whose ``apply()`` on a fresh copy of the
model reproduces the calibrated weights exactly (same seed, same streams, the calibrated stds):

* ``mode="K"``: the depth-aware K whose measured end-to-end activation-variance gain
  ``Var(out_L) / Var(out_1)`` (last probed module's output over the first's, on ``example_input``) equals
  ``target``. The ramp schedule multiplies the variance of layer l by ``exp(K·2l/(L(L+1)))``, so the
  gain is monotone in K (for a ReLU MLP with zero biases it is exactly ``e^K`` times the K=0 gain of this
  very draw: the same random numbers are only rescaled); the root of ``log gain(K) - log target`` is
  found by secant steps, with bracketing (regula falsi, Illinois variant) once the root is bracketed.
* ``mode="lsuv"``: data-dependent, in the spirit of LSUV (Mishkin & Matas, "All you need is a good init",
  ICLR 2016): layer by layer in forward order, rescale the layer's weights until the variance of its
  output on ``example_input`` is ``target`` (a number, one number per layer, or ``target(l, L)``), within
  ``tol``. Each measurement is one fused :func:`depthinit.layer_stats` call on that layer's output, and
  the whole calibration is ONE forward pass: a pre-hook on each layer takes its input (produced by the
  layers before it, already calibrated) and rescales the weight until ``layer(input)`` meets the target,
  so it costs that pass plus a few calls of each layer (not one pass per layer). The scale goes into the
  plan row (std and bounds times ``sqrt(target / var)``) and the model is refilled from the plan at the
  end, so it holds exactly what the plan draws.

Example:
    >>> plan = di.calibrate(model, x, target=1.0, mode="lsuv", scheme="he", distribution="uniform")
    >>> plan.apply(fresh_copy)          # the same weights as ``model`` now has
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from . import schemes as S
from .outputs import first_floating
from .plan import InitPlan, VarianceWarning
from .plan import plan as make_plan
from .probe.hooks import capture, check_input, resolve_modules, stats_host

MODES = ("K", "lsuv")
Target = float | Sequence[float] | Callable[[int, int], float]


def _forward_vars(model: nn.Module, x: Any, names: Sequence[str]) -> dict[str, float]:
    """Output variance of each module in ``names`` (forward only, one fused stats call)."""
    _, fwd, _, _ = capture(model, x, names)
    return {n: v for n, (v, _, nf) in stats_host(fwd).items()} if fwd else {}


def _end_to_end(model: nn.Module, x: Any, names: Sequence[str]) -> float:
    v = _forward_vars(model, x, names)
    ran = [n for n in names if n in v]
    if len(ran) < 2:
        raise ValueError("calibration mode 'K' needs at least two probed modules that run in the forward pass")
    first, last = v[ran[0]], v[ran[-1]]
    if not (first > 0 and math.isfinite(first)):
        raise ValueError(f"the output of {ran[0]!r} has variance {first}: nothing to calibrate against")
    return last / first if math.isfinite(last) else math.inf


def _check_positive(target: Any, what: str) -> float:
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not (math.isfinite(target) and target > 0):
        raise ValueError(f"{what} must be a finite number > 0, got {target!r}")
    return float(target)


def calibrate(
    model: nn.Module,
    example_input: Any,
    target: Target = 1.0,
    mode: str = "K",
    *,
    scheme: str = "depth_aware",
    seed: int = 0,
    modules: Sequence[str | nn.Module] | None = None,
    tol: float = 0.02,
    max_iter: int = 30,
    **options: Any,
) -> InitPlan:
    """Initialize ``model`` in place so its activation variance meets ``target``; return the plan.

    Args:
        model: the module to initialize (modified in place).
        example_input: a representative batch (``model(example_input)`` must run).
        target: mode ``"K"``: the end-to-end activation-variance gain ``Var(out_L) / Var(out_1)`` (default 1);
            mode ``"lsuv"``: the output variance of every layer (a number), of each layer (a sequence, one
            per probed module) or ``target(l, L)`` with l = 1..L.
        mode: ``"K"`` (solve the depth-aware K) or ``"lsuv"`` (rescale each layer).
        scheme: the scheme to start from (mode K needs one with a ``K`` option: ``depth_aware``).
        seed: the plan's seed.
        modules: the layers to measure / rescale (default: the weight-bearing leaf modules).
        tol: relative tolerance: ``|measured / target - 1| <= tol``.
        max_iter: K mode: gain evaluations; lsuv: rescaling rounds per layer.
        **options: the scheme's options (``schedule``, ``distribution``, ``nonlinearity``, ...; mode K
            ignores a given ``K`` as the starting point only).

    Returns:
        the :class:`InitPlan` bound to ``model``; ``plan.apply(copy)`` reproduces the calibrated weights.

    Raises:
        ValueError: bad arguments, a layer whose output has zero or non-finite variance.
        RuntimeError: no K reaches the target within ``max_iter`` evaluations (the message gives the best).

    Example:
        >>> plan = di.calibrate(model, x, target=math.e, mode="K", distribution="uniform")
        >>> plan.options["K"]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"calibrate() takes an nn.Module, got {type(model).__name__}")
    if mode not in MODES:
        raise ValueError(f"unknown calibration mode {mode!r}; valid: {', '.join(MODES)}")
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"tol must be in (0, 1), got {tol!r}")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"max_iter must be an int >= 1, got {max_iter!r}")
    check_input(example_input)
    names = resolve_modules(model, modules)
    if mode == "K":
        with warnings.catch_warnings():  # the gain is measured here: the plan's growth prediction is moot
            warnings.simplefilter("ignore", VarianceWarning)
            return _calibrate_K(model, example_input, _check_positive(target, "target gain"), scheme, seed, names,
                                tol, max_iter, options)
    return _calibrate_lsuv(model, example_input, target, scheme, seed, names, tol, max_iter, options)


# ---------------------------------------------------------------------------------------------- mode K


def _calibrate_K(model, x, target, scheme, seed, names, tol, max_iter, options) -> InitPlan:
    sch = S.get_scheme(scheme)
    if "K" not in sch.options:
        raise ValueError(f"calibration mode 'K' needs a scheme with a K option (depth_aware), got {sch.name!r}")
    opts = dict(options)
    K0 = float(opts.pop("K", 0.0))
    schedule = opts.get("schedule", sch.options.get("schedule", "ramp"))
    L = max(1, len(names))
    # d(log gain)/dK: 1 for the ramp (exact for ReLU); ~(L+1)/2 for linear near K = 0.
    slope = {"ramp": 1.0, "linear": (L + 1) / 2.0}.get(schedule)
    if slope is None:
        raise ValueError(f"calibration mode 'K' needs a schedule that depends on K (ramp or linear), got {schedule!r}")
    work = copy.deepcopy(model)
    base = make_plan(work, sch.name, seed=seed, K=K0, **opts)
    base.apply(work)  # one fill; every other K only rescales these values (see _rescaled)
    params = dict(work.named_parameters())
    saved = {r.name: params[r.name].detach().clone() for r in base.rows if r.name in params}
    cache: dict[float, float] = {}

    def f(K: float) -> float:
        """log(measured gain) - log(target); +inf when activations overflow."""
        if K not in cache:
            _rescaled(work, params, saved, base, make_plan(work, sch.name, seed=seed, K=K, **opts))
            g = _end_to_end(work, x, names)
            cache[K] = math.log(g) - math.log(target) if g > 0 else -math.inf
        return cache[K]

    lo_K = -1.0 + 1e-6 if schedule == "linear" else -700.0
    hi_K = 700.0
    tol_log = math.log1p(tol)
    a, fa = K0, f(K0)
    if abs(fa) <= tol_log:
        return _finish(model, sch.name, seed, dict(opts, K=a))
    b = min(max(a - fa / slope if math.isfinite(fa) else a - math.copysign(5.0, fa), lo_K), hi_K)
    bracket: tuple[float, float, float, float] | None = None
    side = 0
    for _ in range(max_iter - 1):
        fb = f(b)
        if abs(fb) <= tol_log:
            return _finish(model, sch.name, seed, dict(opts, K=b))
        if bracket is None and math.isfinite(fa) and math.isfinite(fb) and fa * fb < 0:
            bracket = (a, fa, b, fb) if a < b else (b, fb, a, fa)
        if bracket is not None:
            lo, flo, hi, fhi = bracket
            if fb < 0:
                lo, flo = b, fb
                if side == -1:
                    fhi /= 2  # Illinois: halve the stale end so regula falsi keeps converging fast
                side = -1
            else:
                hi, fhi = b, fb
                if side == 1:
                    flo /= 2
                side = 1
            bracket = (lo, flo, hi, fhi)
            if flo * fhi >= 0 or not (math.isfinite(flo) and math.isfinite(fhi)):
                nxt = (lo + hi) / 2
            else:
                nxt = hi - fhi * (hi - lo) / (fhi - flo)
        elif math.isfinite(fa) and math.isfinite(fb) and fb != fa:
            nxt = b - fb * (b - a) / (fb - fa)
            step = max(abs(b - a), 1.0) * 8  # a secant step far beyond the last one means a flat region
            nxt = min(max(nxt, b - step), b + step)
        else:  # overflow or underflow: step back towards moderate K
            nxt = b - math.copysign(max(abs(b - a), 1.0), fb if fb else 1.0)
        a, fa, b = b, fb, min(max(nxt, lo_K), hi_K)
    best = min(cache, key=lambda k: abs(cache[k]))
    raise RuntimeError(
        f"calibrate: no K reached the target gain {target:g} within {max_iter} evaluations; best K={best:.6g} "
        f"(gain {target * math.exp(cache[best]):.4g}). Raise max_iter or tol, or check that the scheme's gain "
        "depends on K"
    )


def _rescaled(work: nn.Module, params: dict, saved: dict, base: InitPlan, p: InitPlan) -> None:
    """Set ``work``'s parameters to what ``p`` draws, as ``base``'s values times ``std_p / std_base`` per row.

    Same seed and streams, so this equals ``p.apply()`` up to rounding (a few ulp), without refilling; rows
    whose draw changes otherwise (distribution, mean) are refilled exactly.
    """
    refill = []
    with torch.no_grad():
        for rb, rp in zip(base.rows, p.rows):
            if rb.name not in saved:
                continue
            same = rb.distribution == rp.distribution and rb.mean == rp.mean and rb.mean == 0
            if same and rb.std > 0:
                torch.mul(saved[rb.name], rp.std / rb.std, out=params[rb.name].data)
            elif not (same and rp.std == rb.std):
                refill.append(rp)
    if refill:
        InitPlan(refill, p.scheme, p.options, p.seed).apply(work)


def _finish(model: nn.Module, scheme: str, seed: int, opts: dict) -> InitPlan:
    p = make_plan(model, scheme, seed=seed, **opts)
    p.apply(model)
    return p


# ---------------------------------------------------------------------------------------------- mode lsuv


def _targets(target: Target, n: int) -> list[float]:
    if callable(target):
        vals = [target(i + 1, n) for i in range(n)]
    elif isinstance(target, (int, float)) and not isinstance(target, bool):
        vals = [target] * n
    else:
        vals = list(target)
        if len(vals) != n:
            raise ValueError(f"target has {len(vals)} values for {n} calibrated layers; give one per layer")
    return [_check_positive(v, f"target of layer {i + 1}") for i, v in enumerate(vals)]


def _scale_row(row, c: float):
    return dataclasses.replace(
        row,
        std=row.std * c,
        low=None if row.low is None else row.low * c,
        high=None if row.high is None else row.high * c,
    )


def _calibrate_lsuv(model, x, target, scheme, seed, names, tol, max_iter, options) -> InitPlan:
    """LSUV in ONE forward pass: a pre-hook on each layer (in the order the pass reaches them) takes the
    layer's input, which the layers before it already produce calibrated, rescales the layer's weight until
    ``layer(input)`` has the target variance, then lets the pass go on."""
    p = make_plan(model, scheme, seed=seed, **options)
    p.apply(model)
    targets = _targets(target, len(names))
    index = {n: i for i, r in enumerate(p.rows) for n in (r.name, *r.tied)}  # tied names: the shared row
    mods = dict(model.named_modules())
    done: list[str] = []
    rescaled: dict[int, str] = {}  # plan row -> the layer that calibrated it (a tied tensor is rescaled once)

    def calibrate_layer(name: str, mod: nn.Module, args: tuple, kwargs: dict) -> None:
        wname = f"{name}.weight" if name else "weight"
        weight = mod._parameters.get("weight")
        if wname not in index or weight is None:
            raise ValueError(f"module {name!r} has no planned parameter {wname!r} to rescale")
        if index[wname] in rescaled:  # shares its weight with a layer calibrated before: keep that scale
            warnings.warn(f"lsuv: {name!r} shares its weight with {rescaled[index[wname]]!r}, calibrated first; "
                          "the shared tensor is rescaled once", RuntimeWarning, stacklevel=4)
            return
        rescaled[index[wname]] = name
        row, tgt = p.rows[index[wname]], targets[len(done) - 1]
        total, converged = 1.0, False
        for _ in range(max_iter):
            out = first_floating(mod.forward(*args, **kwargs))  # forward() itself: no hooks run again
            var = math.nan if out is None else stats_host({name: out})[name][0]  # one fused stats call
            if not (math.isfinite(var) and var > 0):
                raise ValueError(
                    f"lsuv: the output of {name!r} has variance {var} (zero or non-finite) under {p.scheme!r}; "
                    "rescaling cannot fix it: start from a scheme that gives it a non-zero, finite output"
                )
            if abs(var / tgt - 1) <= tol:
                converged = True
                break
            if row.distribution not in ("normal", "uniform", "trunc_normal", "orthogonal") or row.mean != 0:
                raise ValueError(f"lsuv: cannot rescale {wname!r}, drawn as {row.distribution!r} (mean {row.mean})")
            c = math.sqrt(tgt / var)
            total *= c
            weight.mul_(c)  # = a refill with std * c, up to rounding; the exact refill is at the end
        if not converged:
            warnings.warn(f"lsuv: {name!r} did not reach variance {tgt:g} within tol={tol} in {max_iter} rounds",
                          RuntimeWarning, stacklevel=4)
        note = (row.note + " " if row.note else "") + f"lsuv x{total:.4g} (target var {tgt:g})"
        p.rows[index[wname]] = dataclasses.replace(_scale_row(row, total), note=note)

    def pre_hook(name: str):
        def hook(mod, args, kwargs):
            if name not in done:
                done.append(name)
                calibrate_layer(name, mod, args, kwargs)

        return hook

    handles = [mods[n].register_forward_pre_hook(pre_hook(n), with_kwargs=True) for n in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    if not done:
        raise ValueError("none of the calibrated modules ran during the forward pass")
    if len(done) < len(names) and not isinstance(target, (int, float)):
        missing = [n for n in names if n not in done]
        raise ValueError(f"lsuv: modules {missing[:4]} did not run, so the per-layer targets do not line up")
    p.apply(model)  # the model now holds exactly what the plan draws
    return p
