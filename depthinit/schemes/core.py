"""The scheme core: fans, gains, the parameter and draw types, one ``variance_scaling`` and the registry.

Roles (set by ``depthinit.plan`` from module types and names): ``embedding``, ``attn_q``, ``attn_k``,
``attn_v``, ``attn_qkv``, ``attn_out``, ``mlp_in``, ``mlp_out``, ``norm``, ``bias``, ``head``,
``residual_scale``, ``other``. Every scheme zeroes biases and sets norm weights to one unless it says
otherwise.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..kernels.contract import norm_cdf, norm_pdf

DISTRIBUTIONS = ("normal", "uniform", "trunc_normal")
ROLES = (
    "embedding",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_qkv",
    "attn_out",
    "mlp_in",
    "mlp_out",
    "norm",
    "bias",
    "head",
    "residual_scale",
    "other",
)
RESIDUAL_OUT_ROLES = ("attn_out", "mlp_out")
SQRT3 = math.sqrt(3.0)
_SHAPE_SUFFIX = re.compile(r"_[A-Z]+$")  # torchtitan's shape-suffixed names: ``w3_EFD``


# --------------------------------------------------------------------------------------------- fans, gains


def compute_fans(shape: Sequence[int]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` exactly as ``torch.nn.init._calculate_fan_in_and_fan_out``.

    ``fan_in = shape[1] * receptive_field``, ``fan_out = shape[0] * receptive_field`` where the receptive
    field is the product of ``shape[2:]`` (convolution kernels).

    Raises:
        ValueError: for fewer than 2 dimensions (torch's message).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions")
    receptive = 1
    for s in shape[2:]:
        receptive *= s
    return shape[1] * receptive, shape[0] * receptive


def select_fan(fan_in: int, fan_out: int, mode: str) -> float:
    """``fan_in``, ``fan_out`` or ``fan_avg`` = (fan_in + fan_out) / 2."""
    if mode == "fan_in":
        return float(fan_in)
    if mode == "fan_out":
        return float(fan_out)
    if mode == "fan_avg":
        return (fan_in + fan_out) / 2.0
    raise ValueError(f"Mode {mode} not supported, please use one of ['fan_in', 'fan_out', 'fan_avg']")


# Second-moment-preserving gains 1/sqrt(E[phi(z)^2]), z ~ N(0, 1) (the principle behind ReLU's sqrt(2)),
# computed by numerical integration (scipy.integrate.quad); tests recompute them.
GELU_GAIN = 1.5335304411955353
SILU_GAIN = 1.6765324703310909

# torch.nn.init.calculate_gain's names (depthinit.init accepts exactly these, as torch does).
TORCH_NONLINEARITIES = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "selu",
)
_LINEAR_FNS = (*TORCH_NONLINEARITIES[:8], "identity")


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """Recommended gain for a nonlinearity: torch's ``calculate_gain`` table plus ``gelu`` and ``silu``.

    ================= ==================================================
    nonlinearity      gain
    ================= ==================================================
    linear, conv*, sigmoid, identity   1
    tanh              5/3
    relu              sqrt(2)
    leaky_relu        sqrt(2 / (1 + negative_slope^2))  (slope 0.01 by default)
    selu              3/4
    gelu              1.5335 = 1/sqrt(E[gelu(z)^2])
    silu / swish      1.6765 = 1/sqrt(E[silu(z)^2])
    ================= ==================================================

    Example:
        >>> calculate_gain("leaky_relu", 0.2)
        1.3867504905630728
    """
    if nonlinearity in _LINEAR_FNS:
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif (not isinstance(param, bool) and isinstance(param, int)) or isinstance(param, float):
            slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    if nonlinearity == "gelu":
        return GELU_GAIN
    if nonlinearity in ("silu", "swish"):
        return SILU_GAIN
    raise ValueError(
        f"Unsupported nonlinearity {nonlinearity}; valid: {', '.join(_LINEAR_FNS)}, tanh, relu, leaky_relu, "
        "selu, gelu, silu"
    )


# --------------------------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class ParamInfo:
    """What a scheme knows of one parameter."""

    name: str
    shape: tuple[int, ...]
    role: str = "other"
    layer: int | None = None  # 1-based depth l of its stack, None outside any stack
    n_layers: int | None = None  # L of its stack (outside any stack: the model's largest L)
    fan_in: int | None = None
    fan_out: int | None = None
    tied_head: bool = False  # an embedding that is also the output head (tied weights)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def require_fans(self, scheme: str) -> tuple[int, int]:
        if self.fan_in is None or self.fan_out is None:
            raise ValueError(
                f"{scheme}: parameter {self.name!r} of shape {tuple(self.shape)} has fewer than 2 dimensions, so "
                "fan_in/fan_out are undefined; give it a role (bias/norm) or use a fixed-std scheme"
            )
        return self.fan_in, self.fan_out


@dataclass(frozen=True)
class Draw:
    """What to draw for one parameter.

    ``distribution``: ``normal`` (mean, std), ``uniform`` (low, high; std is its standard deviation),
    ``trunc_normal`` (mean, std of the untruncated normal, clamped to [low, high]), ``constant`` (every
    element = mean), ``orthogonal`` (a random orthogonal matrix scaled by ``std`` = gain), ``keep`` (left
    as it is, with the reason in ``note``).
    """

    distribution: str
    mean: float = 0.0
    std: float = 0.0
    low: float | None = None
    high: float | None = None
    note: str = ""


def constant(value: float, note: str = "") -> Draw:
    return Draw("constant", mean=float(value), note=note)


def keep(note: str) -> Draw:
    return Draw("keep", note=note)


def _trunc_std_factor(t: float) -> float:
    """Standard deviation of a standard normal truncated to [-t, t]."""
    mass = norm_cdf(t) - norm_cdf(-t)
    return math.sqrt(1 - 2 * t * norm_pdf(t) / mass)


def draw(std: float, distribution: str = "normal", mean: float = 0.0, truncate: float = 2.0) -> Draw:
    """A zero-mean (or ``mean``) draw with standard deviation ``std`` in the given distribution.

    * normal: N(mean, std²);
    * uniform: U(mean − √3·std, mean + √3·std), whose standard deviation is ``std``;
    * trunc_normal: a normal truncated at ±``truncate`` of its own std, whose std is widened so that the
      truncated distribution has standard deviation ``std`` (as JAX's ``variance_scaling``).
    """
    if not (isinstance(std, (int, float)) and math.isfinite(std) and std >= 0):
        raise ValueError(f"std must be a finite number >= 0, got {std!r}")
    if distribution == "normal":
        return Draw("normal", mean, std)
    if distribution == "uniform":
        return Draw("uniform", mean, std, mean - SQRT3 * std, mean + SQRT3 * std)
    if distribution == "trunc_normal":
        if not truncate > 0:
            raise ValueError(f"truncate must be > 0, got {truncate!r}")
        sigma = std / _trunc_std_factor(truncate)
        return Draw("trunc_normal", mean, sigma, mean - truncate * sigma, mean + truncate * sigma)
    raise ValueError(f"unknown distribution {distribution!r}; valid: {', '.join(DISTRIBUTIONS)}")


def fixed(std: float, distribution: str, *, a: float | None = None, b: float | None = None) -> Draw:
    """A draw with the given std as the reference codebases write it: ``trunc_normal`` takes the absolute
    bounds ``[a, b]`` (``torch.nn.init.trunc_normal_``'s, default ±2) with no variance correction."""
    if distribution == "trunc_normal":
        return Draw("trunc_normal", 0.0, std, -2.0 if a is None else a, 2.0 if b is None else b)
    return draw(std, distribution)


def default_role_draw(p: ParamInfo) -> Draw | None:
    """The draw every scheme uses for biases, norms and residual scalars; None for weights."""
    if p.role == "bias":
        return constant(0.0)
    if p.role == "norm":
        return constant(1.0)
    if p.role == "residual_scale":
        return keep("residual scalar: only rezero sets it")
    if len(p.shape) < 2:
        return keep(f"{len(p.shape)}-D parameter with no fan: left as constructed")
    return None


# --------------------------------------------------------------------------------------------- the core


def variance_scaling(
    p: ParamInfo, scale: float = 1.0, mode: str = "fan_in", distribution: str = "normal", truncate: float = 2.0
) -> Draw:
    """The one core of the fan-based schemes: ``Var(W) = scale / fan``.

    ``fan`` is ``fan_in``, ``fan_out`` or ``fan_avg`` (:func:`compute_fans`), ``distribution`` one of normal,
    uniform (bound √3·std) or trunc_normal (see :func:`draw`). As JAX/Flax ``variance_scaling``.

    Example:
        >>> variance_scaling(ParamInfo("w", (256, 512), fan_in=512, fan_out=256), 2.0, "fan_in").std
        0.0625
    """
    fan_in, fan_out = p.require_fans("variance_scaling")
    fan = select_fan(fan_in, fan_out, mode)
    if fan <= 0:
        return constant(0.0, note="zero fan: zero-element tensor")
    if not (math.isfinite(scale) and scale >= 0):
        raise ValueError(f"scale must be a finite number >= 0, got {scale!r}")
    return draw(math.sqrt(scale / fan), distribution, truncate=truncate)


# --------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Scheme:
    """A registered scheme: its per-parameter rule ``fn`` and the model-level hooks the plan calls.

    * ``constants(n_layers=L, **options)``: model-level constants the user applies in the forward pass
      (DeepNorm's alpha), shown with the plan and saved in its JSON;
    * ``gain(n_layers, options)``: the predicted end-to-end variance gain over a stack of ``n_layers``
      (depth-aware schemes); the plan reports it and warns when it explodes or vanishes;
    * ``check(rows, options)``: raises ValueError when the planned rows cannot implement the scheme (ReZero
      without residual scalars).
    """

    name: str
    fn: Callable[..., Draw]
    options: dict[str, Any]
    aliases: tuple[str, ...] = ()
    constants: Callable[..., dict[str, float]] | None = None
    gain: Callable[[int, dict[str, Any]], float] | None = None
    check: Callable[[Sequence[Any], dict[str, Any]], None] | None = None

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.fn) or ""

    def summary(self) -> str:
        return self.doc.splitlines()[0] if self.doc else ""


SCHEMES: dict[str, Scheme] = {}
_ALIASES: dict[str, str] = {}


def register(name: str, *aliases: str, constants: Callable[..., dict[str, float]] | None = None,
             gain: Callable[[int, dict[str, Any]], float] | None = None,
             check: Callable[[Sequence[Any], dict[str, Any]], None] | None = None):
    """Register a scheme function; its keyword-only arguments (with defaults) are the scheme's options.

    ``constants``, ``gain`` and ``check`` are the model-level hooks of :class:`Scheme`.
    """

    def deco(fn: Callable[..., Draw]) -> Callable[..., Draw]:
        sig = inspect.signature(fn)
        opts = {k: v.default for k, v in sig.parameters.items() if v.kind is inspect.Parameter.KEYWORD_ONLY}
        SCHEMES[name] = Scheme(name, fn, opts, aliases, constants, gain, check)
        for a in (name, *aliases):
            _ALIASES[a] = name
        return fn

    return deco


def find_scheme(name: str | Scheme) -> Scheme | None:
    """The scheme registered under ``name`` or one of its aliases, else None."""
    if isinstance(name, Scheme):
        return name
    key = _ALIASES.get(str(name).lower().replace("-", "_"))
    return None if key is None else SCHEMES[key]


def get_scheme(name: str | Scheme) -> Scheme:
    """The scheme registered under ``name`` or one of its aliases (ValueError listing the valid names)."""
    scheme = find_scheme(name)
    if scheme is None:
        raise ValueError(f"unknown scheme {name!r}; valid: {', '.join(sorted(_ALIASES))}")
    return scheme


def check_options(scheme: Scheme, options: dict[str, Any]) -> dict[str, Any]:
    """Merge ``options`` over the scheme's defaults; unknown names raise with the valid ones listed."""
    unknown = sorted(set(options) - set(scheme.options))
    if unknown:
        raise ValueError(
            f"scheme {scheme.name!r} has no option(s) {', '.join(unknown)}; valid: {', '.join(sorted(scheme.options))}"
        )
    merged = {**scheme.options, **options}
    if "distribution" in merged and merged["distribution"] not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {merged['distribution']!r}; valid: {', '.join(DISTRIBUTIONS)}")
    return merged


def describe() -> list[tuple[str, str, str]]:
    """(name, aliases, one-line formula) for every scheme, for docs and ``depthinit plan --help``."""
    return [(s.name, ", ".join(a for a in s.aliases), s.summary()) for s in SCHEMES.values()]
