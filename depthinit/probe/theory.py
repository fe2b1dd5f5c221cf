"""Mean-field theory of plain MLPs: detection, activation moments, the plan's weight second moments and the
predicted forward/backward variance per layer (see :mod:`depthinit.probe` for the equations)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..kernels.contract import norm_cdf, norm_pdf
from ..plan import InitPlan, PlanRow
from .hooks import stats_host

__all__ = ["ELEMENTWISE", "mlp_layers", "activation_moments", "row_second_moment", "mlp_theory", "plan_moments",
           "weight_moments"]

ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Identity, nn.GELU, nn.SiLU, nn.Sigmoid, nn.ELU, nn.SELU,
               nn.Softplus, nn.Hardtanh, nn.ReLU6, nn.Mish, nn.CELU, nn.Tanhshrink, nn.Softsign)
"""The element-wise activation modules a plain MLP may put after a Linear layer."""


def mlp_layers(model: nn.Module) -> list[tuple[str, nn.Linear, nn.Module | None]] | None:
    """``[(linear name, Linear, activation or None), ...]`` if ``model`` is a plain MLP (an ``nn.Sequential``
    of Linear layers each optionally followed by one element-wise activation), else None."""
    if not isinstance(model, nn.Sequential):
        return None
    layers: list[list] = []
    for name, m in model._modules.items():
        if isinstance(m, nn.Linear):
            layers.append([name, m, None])
        elif isinstance(m, ELEMENTWISE) and layers and layers[-1][2] is None:
            layers[-1][2] = m
        else:
            return None
    return [tuple(x) for x in layers] or None


_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(96)
_GH_WEIGHTS = _GH_WEIGHTS / math.sqrt(2 * math.pi)


def activation_moments(act: nn.Module | None, q: float) -> tuple[float, float, float]:
    """``(E[φ(h)²], E[φ(h)], E[φ'(h)²])`` for ``h ~ N(0, q)``.

    Closed forms for identity (``q, 0, 1``), ReLU (``q/2, sqrt(q/2π), 1/2``) and leaky ReLU with slope a
    (``q(1+a²)/2, (1-a)sqrt(q/2π), (1+a²)/2``); any other element-wise module by 96-point Gauss–Hermite
    quadrature in float64 (derivative by autograd), exact to ~1e-12 for smooth activations such as tanh.
    """
    if not (q >= 0 and math.isfinite(q)):
        return (math.nan, math.nan, math.nan)
    if act is None or isinstance(act, nn.Identity):
        return q, 0.0, 1.0
    if isinstance(act, (nn.ReLU, nn.LeakyReLU)):
        a = act.negative_slope if isinstance(act, nn.LeakyReLU) else 0.0
        return q * (1 + a * a) / 2, (1 - a) * math.sqrt(q / (2 * math.pi)), (1 + a * a) / 2
    z = torch.tensor(_GH_NODES * math.sqrt(q), dtype=torch.float64, requires_grad=True)
    w = torch.tensor(_GH_WEIGHTS, dtype=torch.float64)
    with torch.enable_grad():
        y = act(z)
        (dy,) = torch.autograd.grad(y.sum(), z)
    y = y.detach()
    return float((w * y * y).sum()), float((w * y).sum()), float((w * dy * dy).sum())


def row_second_moment(row: PlanRow) -> float | None:
    """``E[w²]`` of the distribution a plan row draws from (None for rows left as they are)."""
    d, m, s = row.distribution, row.mean, row.std
    if d == "normal":
        return m * m + s * s
    if d == "constant":
        return m * m
    if d == "uniform":
        lo, hi = row.low, row.high
        return (lo * lo + lo * hi + hi * hi) / 3.0
    if d == "trunc_normal":
        if s == 0:
            return m * m
        a, b = (row.low - m) / s, (row.high - m) / s
        mass = norm_cdf(b) - norm_cdf(a)
        mu = (norm_pdf(a) - norm_pdf(b)) / mass
        var = 1 + (a * norm_pdf(a) - b * norm_pdf(b)) / mass - mu * mu
        return (m + s * mu) ** 2 + s * s * var
    if d == "orthogonal":  # gain·Q: ||Qx|| = ||x|| (tall) or E||Qx||² = rows/cols·||x||² (wide)
        rows, cols = row.shape[0], math.prod(row.shape[1:])
        return s * s / max(rows, cols)
    return None


def mlp_theory(
    layers: Sequence[tuple[str, nn.Linear, nn.Module | None]],
    w2: Sequence[float],
    b2: Sequence[float],
    input_m2: float,
    last_grad_var: float,
) -> tuple[list[float], list[float | None], list[float]]:
    """Mean-field prediction for a plain MLP: ``(fwd, post, bwd)`` per Linear layer (see the module doc).

    ``w2[l]``/``b2[l]``: second moments of layer l's weight/bias entries; ``input_m2``: ``E[x²]`` of the
    input batch; ``last_grad_var``: the gradient variance at the last layer's output (the backward start).
    """
    fwd: list[float] = []
    post: list[float | None] = []
    m2 = input_m2
    for (_, lin, act), s, b in zip(layers, w2, b2):
        q = lin.in_features * s * m2 + b
        e2, e1, _ = activation_moments(act, q)
        fwd.append(q)
        post.append(None if act is None else e2 - e1 * e1)
        m2 = e2
    bwd = [math.nan] * len(layers)
    bwd[-1] = last_grad_var
    for i in range(len(layers) - 2, -1, -1):
        nxt = layers[i + 1][1]
        _, _, d2 = activation_moments(layers[i][2], fwd[i])
        bwd[i] = nxt.out_features * w2[i + 1] * bwd[i + 1] * d2
    return fwd, post, bwd


def plan_moments(p: InitPlan, layers: Sequence[tuple[str, nn.Linear, nn.Module | None]]
                 ) -> tuple[list[float], list[float]] | None:
    """``(E[w²] per layer, E[b²] per layer)`` from the rows of ``p`` (None when a row is missing or is left
    as it is)."""
    w2, b2 = [], []
    for lname, lin, _ in layers:
        try:
            w = row_second_moment(p[f"{lname}.weight"])
            b = 0.0 if lin.bias is None else row_second_moment(p[f"{lname}.bias"])
        except KeyError:
            return None
        if w is None or b is None:
            return None
        w2.append(w)
        b2.append(b)
    return w2, b2


def weight_moments(layers: Sequence[tuple[str, nn.Linear, nn.Module | None]]) -> tuple[list[float], list[float]]:
    """``(E[w²] per layer, E[b²] per layer)`` of the weights the layers hold now (one fused stats call)."""
    tensors: dict[str, torch.Tensor] = {}
    for lname, lin, _ in layers:
        tensors[lname + ".weight"] = lin.weight.detach()
        if lin.bias is not None:
            tensors[lname + ".bias"] = lin.bias.detach()
    m2 = {n: v + m * m for n, (v, m, _) in stats_host(tensors).items()}
    return [m2[f"{n}.weight"] for n, _, _ in layers], [m2.get(f"{n}.bias", 0.0) for n, _, _ in layers]
