"""The depth-aware family of arXiv 2509.05018: a variance multiplier m_l by depth, constant, increasing or
decreasing with K."""

from __future__ import annotations

import math
from typing import Any

from .core import (
    Draw,
    ParamInfo,
    calculate_gain,
    default_role_draw,
    register,
    variance_scaling,
)

# --------------------------------------------------------------------------------------------- depth-aware


SCHEDULES = ("constant", "ramp", "linear")
BASES = ("he", "xavier", "lecun")


def depth_multiplier(layer: int, n_layers: int, K: float, schedule: str = "ramp") -> float:
    """The depth multiplier ``m_l`` of the depth-aware family (l = 1..L).

    * constant: ``m_l = 1``;
    * ramp: ``m_l = exp(K · 2l / (L(L+1)))`` — end-to-end variance gain exactly ``e^K`` at any depth;
    * linear: ``m_l = 1 + K·l/L`` — needs K > −1; the product grows like ``e^{K(L+1)/2}``.
    """
    check_K(K, schedule)
    if schedule == "constant":
        return 1.0
    if not 1 <= layer <= n_layers:
        raise ValueError(f"layer must be in 1..{n_layers}, got {layer}")
    if schedule == "ramp":
        return math.exp(K * 2.0 * layer / (n_layers * (n_layers + 1)))
    return 1.0 + K * layer / n_layers


def check_K(K: float, schedule: str) -> None:
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    if isinstance(K, bool) or not isinstance(K, (int, float)) or not math.isfinite(K):
        raise ValueError(f"K must be a finite number, got {K!r}")
    if schedule == "ramp" and abs(K) > 700:
        raise ValueError(f"K={K} is out of range for the ramp schedule: |K| <= 700 (e^K must fit in float64)")
    if schedule == "linear" and K <= -1:
        raise ValueError(f"K={K} makes the deepest layer's variance 1 + K <= 0; the linear schedule needs K > -1")


def predicted_gain(n_layers: int, K: float, schedule: str = "ramp") -> float:
    """Predicted end-to-end activation-variance gain ``prod_l m_l`` of a schedule over L layers.

    Closed forms, O(1) at any L: constant 1, ramp ``e^K``; linear ``exp(sum_l log1p(K l / L))``, summed
    exactly up to L = 4096 and by Euler-Maclaurin beyond (``L·I(K) + log1p(K)/2`` and the first two
    derivative terms, ``I(K)`` the integral of ``log1p(K t)`` over [0, 1]; the remainder is O(L^-5)).
    Capped at e^709.
    """
    check_K(K, schedule)
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"n_layers must be an int >= 1, got {n_layers!r}")
    if schedule == "constant" or K == 0:
        return 1.0
    if schedule == "ramp":
        return math.exp(K)
    L = n_layers
    if L <= 4096:
        log = math.fsum(math.log1p(K * lyr / L) for lyr in range(1, L + 1))
    else:
        a = K / L
        integral = (((1.0 + K) * math.log1p(K) - K) / K if abs(K) > 1e-4
                    else math.fsum((-1) ** (n + 1) * K**n / (n * (n + 1)) for n in range(1, 8)))
        d1 = a / (1.0 + K) - a  # f'(L) - f'(0) for f(l) = log1p(a l)
        d3 = 2.0 * a**3 * ((1.0 + K) ** -3 - 1.0)  # f'''(L) - f'''(0)
        log = L * integral + 0.5 * math.log1p(K) + d1 / 12.0 - d3 / 720.0
    return math.exp(min(log, 709.0))


def _depth_gain(n_layers: int, options: dict[str, Any]) -> float:
    return predicted_gain(n_layers, options["K"], options["schedule"])


@register("depth_aware", "depth", gain=_depth_gain)
def depth_aware(
    p: ParamInfo,
    *,
    K: float = 1.0,
    schedule: str = "ramp",
    base: str = "he",
    distribution: str = "normal",
    nonlinearity: str = "relu",
) -> Draw:
    """Depth-aware initialization: ``Var(W_l) = v_base(fan_in, fan_out, gain) · m_l``.

    The method of arXiv 2509.05018 ("Depth-Aware Initialization for Stable and Efficient Neural Network
    Training"): each layer's variance depends on its depth through K; constant (``schedule="constant"`` or
    K=0), increasing (K > 0) and decreasing (K < 0) variance with depth. The paper's exact formula is not
    public, so depthinit defines the family (see :func:`depth_multiplier`): ``ramp`` (default) makes the
    end-to-end variance gain exactly e^K; ``linear`` is the literal 1 + K·l/L. ``v_base`` is He (gain²/fan_in,
    default), Xavier (2/(fan_in+fan_out)) or LeCun (1/fan_in). Parameters outside any depth stack
    (embeddings, heads outside blocks) get m = 1.
    """
    check_K(K, schedule)
    if base not in BASES:
        raise ValueError(f"unknown base {base!r}; valid: {', '.join(BASES)}")
    if (d := default_role_draw(p)) is not None:
        return d
    gain2 = calculate_gain(nonlinearity) ** 2
    scale, mode = {"he": (gain2, "fan_in"), "xavier": (1.0, "fan_avg"), "lecun": (1.0, "fan_in")}[base]
    m = 1.0 if p.layer is None or p.n_layers is None else depth_multiplier(p.layer, p.n_layers, K, schedule)
    return variance_scaling(p, scale * m, mode, distribution)
