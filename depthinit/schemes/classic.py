"""The classic schemes: He/Kaiming, Xavier/Glorot, LeCun, fixed normal, truncated normal, orthogonal, zeros."""

from __future__ import annotations

from .core import Draw, ParamInfo, calculate_gain, constant, default_role_draw, draw, register, variance_scaling

# --------------------------------------------------------------------------------------------- classic


@register("he", "kaiming", "kaiming_normal", "kaiming_uniform")
def he(
    p: ParamInfo, *, distribution: str = "normal", nonlinearity: str = "relu", a: float = 0.0, mode: str = "fan_in"
) -> Draw:
    """He / Kaiming: ``std = gain / sqrt(fan)``, gain = calculate_gain(nonlinearity, a) (√2 for ReLU).

    He et al., "Delving Deep into Rectifiers", ICCV 2015. Uniform bound √3·std (``kaiming_uniform_``).
    """
    if (d := default_role_draw(p)) is not None:
        return d
    gain = calculate_gain(nonlinearity, a if nonlinearity == "leaky_relu" else None)
    return variance_scaling(p, gain * gain, mode, distribution)


@register("xavier", "glorot", "xavier_normal", "xavier_uniform")
def xavier(p: ParamInfo, *, distribution: str = "normal", gain: float = 1.0) -> Draw:
    """Xavier / Glorot: ``std = gain · sqrt(2 / (fan_in + fan_out))``.

    Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural networks", AISTATS
    2010. Uniform bound √3·std = gain·sqrt(6 / (fan_in + fan_out)).
    """
    if (d := default_role_draw(p)) is not None:
        return d
    return variance_scaling(p, gain * gain, "fan_avg", distribution)


@register("lecun")
def lecun(p: ParamInfo, *, distribution: str = "normal") -> Draw:
    """LeCun: ``std = 1 / sqrt(fan_in)``.

    LeCun et al., "Efficient BackProp", 1998, §4.6; the variance for SELU self-normalizing networks.
    """
    if (d := default_role_draw(p)) is not None:
        return d
    return variance_scaling(p, 1.0, "fan_in", distribution)


@register("normal")
def normal(p: ParamInfo, *, distribution: str = "normal", std: float = 0.02) -> Draw:
    """Fixed std for every weight: ``W ~ N(0, std²)`` (or uniform with the same std)."""
    if (d := default_role_draw(p)) is not None:
        return d
    return draw(std, distribution)


@register("trunc_normal")
def trunc_normal(p: ParamInfo, *, std: float = 0.02, a: float | None = None, b: float | None = None) -> Draw:
    """Truncated normal with fixed std: ``W ~ N(0, std²)`` clamped to ``[a, b]`` (default ±2·std).

    As ``torch.nn.init.trunc_normal_`` (inverse-CDF sampling); ViT / timm ``trunc_normal_(std=.02)``.
    """
    if (d := default_role_draw(p)) is not None:
        return d
    lo = -2.0 * std if a is None else a
    hi = 2.0 * std if b is None else b
    if not lo < hi:
        raise ValueError(f"trunc_normal needs a < b, got a={lo}, b={hi}")
    return Draw("trunc_normal", 0.0, std, lo, hi)


@register("orthogonal")
def orthogonal(p: ParamInfo, *, gain: float = 1.0) -> Draw:
    """(Semi-)orthogonal weights scaled by ``gain`` (the matrix is the weight flattened to rows × rest).

    Saxe et al., "Exact solutions to the nonlinear dynamics of learning in deep linear neural networks",
    ICLR 2014. Drawn as torch's ``orthogonal_``: QR of a contract-normal matrix, signs fixed by diag(R).
    """
    if (d := default_role_draw(p)) is not None:
        return d
    return Draw("orthogonal", 0.0, float(gain))


@register("zeros")
def zeros(p: ParamInfo) -> Draw:
    """Every floating parameter set to zero (norm weights to one). Does not break symmetry: for heads and tests.

    Every unit of a layer computes the same function and gets the same gradient, so a network of zeros
    cannot learn distinct hidden features.
    """
    if p.role == "norm":
        return constant(1.0)
    return constant(0.0)
