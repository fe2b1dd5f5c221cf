"""The entry point :func:`probe`: measure each initialization's forward and backward variance profile."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..outputs import residual_blocks
from ..plan import InitPlan
from ..plan import plan as make_plan
from .hooks import capture, check_input, first_tensor, resolve_modules, stats_host
from .results import BACKWARD_DOC, DEFAULT_THRESHOLD, LayerProbe, ProbeReport, SchemeProbe, describe_model
from .spec import SchemeSpec, parse_scheme, scheme_label
from .theory import mlp_layers, mlp_theory, plan_moments, weight_moments

__all__ = ["probe"]


def _measure(model: nn.Module, x: Any, names: list[str], layers, loss_fn, seed: int,
             w2: list[float] | None, b2: list[float] | None) -> tuple[list[LayerProbe], float]:
    inputs_of = [lname for lname, _, _ in layers[1:]] if layers else []
    order, fwd, grads, out = capture(model, x, names, inputs_of=inputs_of, backward=True, loss_fn=loss_fn, seed=seed)
    if layers and isinstance(out, torch.Tensor) and layers[-1][2] is not None:
        fwd[layers[-1][0] + ":post"] = out.detach()  # the model output is the last activation's output
    missing = [n for n in names if n not in fwd]
    if len(missing) == len(names):
        raise ValueError("none of the probed modules ran during the forward pass")
    fs = stats_host(fwd)  # one fused call for every captured activation
    gs = stats_host(grads)  # one fused call for every captured gradient
    post: dict[str, float] = {}
    if layers:
        for i, (lname, _, act) in enumerate(layers):
            if act is None:
                continue
            key = layers[i + 1][0] + ":in" if i + 1 < len(layers) else lname + ":post"
            if key in fs:
                post[lname] = fs[key][0]
    recs = []
    for i, n in enumerate(order):
        v, _, nf = fs[n]
        gv, _, gnf = gs.get(n, (math.nan, 0.0, 0.0))
        recs.append(LayerProbe(i + 1, n, v, gv, post.get(n), nonfinite=int(nf + gnf)))
    xt = first_tensor(x)
    input_m2 = float(xt.detach().double().pow(2).mean()) if xt is not None and xt.is_floating_point() else math.nan
    if layers and len(recs) == len(layers) and w2 is not None:
        tf, tp, tb = mlp_theory(layers, w2, b2, input_m2, recs[-1].bwd)
        for r, a, b, c in zip(recs, tf, tp, tb):
            r.theory_fwd, r.theory_post, r.theory_bwd = a, b, c
    return recs, input_m2


def probe(
    model: nn.Module,
    example_input: Any,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
    schemes: Sequence[SchemeSpec] | None = None,
    seed: int = 0,
    modules: Sequence[str | nn.Module] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    plan: InitPlan | None = None,
    label: str | None = None,
) -> ProbeReport:
    """Measure the forward and backward variance profile of ``model`` at initialization.

    With ``schemes=None`` the model is probed as it is: the theory takes each weight's second moment from
    ``plan`` (the plan the model was just initialized with) when given, else from the weights themselves.
    With ``schemes=[...]`` each scheme initializes a deep copy of the model with the same ``seed`` (the model
    itself is untouched) and the initializations are compared side by side. A scheme is a name
    (``"he"``), a ``(name, options)`` pair or a spec string (``"depth_aware:K=1+distribution=uniform"``, see
    :func:`parse_scheme`).

    Args:
        model: the module; ``model(example_input)`` must run.
        example_input: one batch (a tensor, or a tuple/dict passed as the single argument).
        loss_fn: ``loss_fn(output) -> scalar``; default: the standard-normal backward (the gradient of
            the output is i.i.d. N(0, 1) from ``seed``, so the backward profile does not depend on the
            output's scale).
        schemes: initializations to compare (None: the model as it is).
        seed: init seed of every scheme and seed of the backward noise.
        modules: names (or submodules) to measure; default the weight-bearing leaf modules.
        threshold: variance ratio beyond which a profile is ``exploding`` (``1/threshold``: ``vanishing``).
        plan: with ``schemes=None``: the plan that initialized ``model`` (theory from its rows, no refill).
        label: the result's label with ``schemes=None`` (default ``"as-is"``, or the plan's scheme).

    Returns:
        a :class:`ProbeReport` (``.table()``, ``.plot(path)``, ``.verdicts``, ``.to_json()``).

    Example:
        >>> report = di.probe(model, torch.randn(256, 256), schemes=["he", "xavier"])
        >>> print(report.table()); report.plot("probe.png")
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"probe() takes an nn.Module, got {type(model).__name__}")
    if not (isinstance(threshold, (int, float)) and threshold > 1):
        raise ValueError(f"threshold must be a number > 1, got {threshold!r}")
    check_input(example_input)
    names = resolve_modules(model, modules)
    blocks = [] if modules is not None else residual_blocks(model, None if plan is None else {
        n: r.role for r in plan.rows for n in (r.name, *r.tied)})
    stream = "residual" if blocks else "layers"
    names = blocks or names  # a residual network: follow the residual stream (block outputs)
    specs = None if schemes is None else [parse_scheme(s) for s in schemes]
    if specs is not None and not specs:
        raise ValueError("schemes= is empty; pass None to probe the model as it is")
    mlp = mlp_layers(model)
    layers = mlp if mlp is not None and names == [n for n, _, _ in mlp] else None
    if plan is not None and specs is not None:
        raise ValueError("give schemes= (initializations to compare) or plan= (how model was initialized), not both")
    results = []
    if specs is None:
        moments = None
        if layers and plan is not None:
            moments = plan_moments(plan, layers)
        if layers and moments is None:
            moments = weight_moments(layers)
        w2, b2 = moments if moments else (None, None)
        recs, m2 = _measure(model, example_input, names, layers, loss_fn, seed, w2, b2)
        name = None if plan is None else plan.scheme
        results.append(SchemeProbe(label or name or "as-is", name, {} if plan is None else dict(plan.options), recs,
                                   m2, threshold, plan, stream))
    else:
        for name, opts in specs:
            m = copy.deepcopy(model)
            p = make_plan(m, name, seed=seed, **opts)
            p.apply(m)
            moments = plan_moments(p, mlp_layers(m)) if layers else None
            w2, b2 = moments if moments else (None, None)
            recs, m2 = _measure(m, example_input, names, mlp_layers(m) if layers else None, loss_fn, seed, w2, b2)
            results.append(SchemeProbe(scheme_label(name, opts), p.scheme, dict(opts), recs, m2, threshold, p, stream))
            del m
    return ProbeReport(results, describe_model(model), BACKWARD_DOC if loss_fn is None else "loss_fn", threshold)
