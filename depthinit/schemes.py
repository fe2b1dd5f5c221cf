"""Initialization schemes: fans, gains, one ``variance_scaling`` core and thin named schemes.

A scheme is a function from a parameter's description (:class:`ParamInfo`: name, shape, role, depth,
fans) to what to draw for it (:class:`Draw`: distribution, mean, std, bounds). Every named scheme is a
small declaration over :func:`variance_scaling` or a fixed std; the plan (``depthinit.plan``) calls it once
per parameter and the fill kernel draws the values.

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

from .kernels.contract import norm_cdf, norm_pdf

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


def get_scheme(name: str) -> Scheme:
    """The scheme registered under ``name`` or one of its aliases (ValueError listing the valid names)."""
    if isinstance(name, Scheme):
        return name
    key = _ALIASES.get(str(name).lower().replace("-", "_"))
    if key is None:
        raise ValueError(f"unknown scheme {name!r}; valid: {', '.join(sorted(_ALIASES))}")
    return SCHEMES[key]


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


# --------------------------------------------------------------------------------------------- transformers


@register("gpt2")
def gpt2(p: ParamInfo, *, std: float = 0.02, distribution: str = "normal") -> Draw:
    """GPT-2: every weight ``N(0, 0.02²)``; residual output projections (attention ``c_proj``, MLP
    ``c_proj``) ``N(0, (0.02 / sqrt(2·n_layer))²)``.

    Radford et al., "Language Models are Unsupervised Multitask Learners", 2019 (HF ``GPT2PreTrainedModel.
    _init_weights``, nanoGPT). Two residual additions per block, hence 2·n_layer.
    """
    if (d := default_role_draw(p)) is not None:
        return d
    if p.role in RESIDUAL_OUT_ROLES and p.n_layers:
        return draw(std / math.sqrt(2.0 * p.n_layers), distribution)
    return draw(std, distribution)


@register("megatron")
def megatron(p: ParamInfo, *, init_method_std: float = 0.02, distribution: str = "normal") -> Draw:
    """Megatron-LM: ``init_method_normal(σ)`` for every weight, ``scaled_init_method_normal(σ, L)`` =
    ``N(0, (σ / sqrt(2L))²)`` for the residual output projections (attention dense, MLP dense_4h_to_h).

    Shoeybi et al., "Megatron-LM", 2019. Same law as GPT-2 under Megatron's option name.
    """
    return gpt2(p, std=init_method_std, distribution=distribution)


@register("torchtitan_depth", "torchtitan")
def torchtitan_depth(p: ParamInfo, *, depth_init: bool = True, std: float = 0.02) -> Draw:
    """torchtitan Llama init: q/k/v and MLP ``w1`` trunc_normal(0.02); output projections (``wo``, ``w2``,
    ``w3``) trunc_normal(std_l) with ``std_l = 0.02 / sqrt(2·l)`` (``depth_init``, l = 1-based block index)
    or ``0.02 / sqrt(2·L)``; token embedding N(0, 1); final head trunc_normal(dim^-½, ±3σ), also for an
    embedding tied to the head. Expert banks (``w1/w2/w3``) as their dense counterparts; the MoE router's
    gate (``moe.router.gate``) depth-scaled, as torchtitan's DeepSeek-V3.

    torchtitan ``models/llama/model.py`` (``init_weights``); trunc_normal bounds are torch's default ±2.
    """
    if (d := default_role_draw(p)) is not None:
        return d
    if p.role == "embedding" and not p.tied_head:
        return draw(1.0, "normal")
    if p.role in ("head", "embedding"):  # a tied embedding gets the head's init, as torchtitan's tied models
        fan_in = p.shape[-1]
        s = fan_in**-0.5
        return Draw("trunc_normal", 0.0, s, -3 * s, 3 * s)
    last = [_SHAPE_SUFFIX.sub("", x) for x in p.name.split(".")[-2:]]
    router = ".router." in f".{p.name}"  # torchtitan's MoE router gate (DeepSeek-V3): depth-scaled too
    up = any(x in ("w3", "up_proj") for x in last)  # the SwiGLU up projection: torchtitan's w3, HF's up_proj
    if p.role in ("attn_out", "mlp_out") or (p.role == "mlp_in" and up) or router:
        depth = p.layer if (depth_init and p.layer) else (p.n_layers or 1)
        return fixed(std / math.sqrt(2.0 * depth), "trunc_normal")
    return fixed(std, "trunc_normal")


_SHAPE_SUFFIX = re.compile(r"_[A-Z]+$")  # torchtitan's shape-suffixed names: ``w3_EFD``


@register("olmo_mitchell", "mitchell")
def olmo_mitchell(p: ParamInfo, *, cutoff: float = 3.0) -> Draw:
    """OLMo "mitchell": input projections ``std = 1/sqrt(fan_in)``; residual output projections
    ``std = 1/sqrt(2·fan_in·l)`` (l = 1-based block index); embeddings and head ``std = 1/sqrt(d_model)``;
    all truncated normal at ±cutoff·std (3 by default).

    Groeneveld et al., "OLMo: Accelerating the Science of Language Models", 2024 (``InitFnType.mitchell``).
    """
    if (d := default_role_draw(p)) is not None:
        return d
    fan_in, fan_out = p.require_fans("olmo_mitchell")
    if p.role == "embedding":
        s = fan_in**-0.5  # embedding weight [vocab, d_model]: fan_in = d_model
    elif p.role in RESIDUAL_OUT_ROLES:
        s = 1.0 / math.sqrt(2.0 * fan_in * (p.layer or 1))
    else:
        s = fan_in**-0.5
    return Draw("trunc_normal", 0.0, s, -cutoff * s, cutoff * s)


def _deepnorm_constants(*, n_layers: int = 1, architecture: str = "decoder", n_encoder: int = 0,
                        n_decoder: int = 0, **_: Any):
    N, M = n_encoder or n_layers, n_decoder or n_layers  # unset: the model's depth
    if architecture == "encoder":
        return {"alpha": (2 * N) ** 0.25, "beta": (8 * N) ** -0.25}
    if architecture == "decoder":
        return {"alpha": (2 * M) ** 0.25, "beta": (8 * M) ** -0.25}
    if architecture == "encoder_decoder":
        return {
            "encoder_alpha": 0.81 * (N**4 * M) ** (1 / 16),
            "encoder_beta": 0.87 * (N**4 * M) ** (-1 / 16),
            "decoder_alpha": (3 * M) ** 0.25,
            "decoder_beta": (12 * M) ** -0.25,
        }
    raise ValueError(f"unknown architecture {architecture!r}; valid: encoder, decoder, encoder_decoder")


@register("deepnorm", constants=_deepnorm_constants)
def deepnorm(
    p: ParamInfo,
    *,
    architecture: str = "decoder",
    n_encoder: int = 0,
    n_decoder: int = 0,
    distribution: str = "normal",
    stack: str = "",
) -> Draw:
    """DeepNorm: residual ``x ← LN(α·x + G(x))`` with Xavier init scaled by β on the FFN, value and output
    projections (gain 1 on q and k).

    Wang et al., "DeepNet: Scaling Transformers to 1,000 Layers", 2022. Encoder-only: α = (2N)^¼,
    β = (8N)^−¼. Decoder-only: α = (2M)^¼, β = (8M)^−¼. Encoder-decoder: encoder α = 0.81(N⁴M)^1/16,
    β = 0.87(N⁴M)^−1/16; decoder α = (3M)^¼, β = (12M)^−¼. N, M default to the detected depth. α is a
    forward-pass constant: the plan reports it (``plan.constants``); the model must use it.
    """
    if (d := default_role_draw(p)) is not None:
        return d
    L = p.n_layers or 1
    N, M = (n_encoder or L), (n_decoder or L)
    consts = _deepnorm_constants(architecture=architecture, n_encoder=N, n_decoder=M)
    if architecture == "encoder_decoder":
        is_enc = "encoder" in (stack or p.name)
        beta = consts["encoder_beta" if is_enc else "decoder_beta"]
    else:
        beta = consts["beta"]
    g = beta if p.role in ("attn_v", "attn_out", "mlp_in", "mlp_out") else 1.0
    if p.role == "attn_qkv":
        return _fused_qkv(p, beta, distribution, "deepnorm")
    return variance_scaling(p, g * g, "fan_avg", distribution)


def _fused_qkv(p: ParamInfo, factor: float, distribution: str, scheme: str) -> Draw:
    """Xavier × ``factor`` for a fused ``[3d, d]`` q|k|v projection, seen as three ``[d, d]`` matrices
    (fan_avg = d each). One tensor gets one std, so the factor that the paper puts on v alone is applied
    to q and k as well; the row's note says so."""
    fan_in, fan_out = p.require_fans(scheme)
    d = draw(math.sqrt(2.0 / (fan_in + fan_out / 3)) * factor, distribution)
    return Draw(d.distribution, d.mean, d.std, d.low, d.high, note=f"{scheme}: fused qkv, factor on q, k and v")


@register("fixup")
def fixup(p: ParamInfo, *, m: int = 2, nonlinearity: str = "relu", distribution: str = "normal") -> Draw:
    """Fixup: the last layer of each residual branch and the classification head are zero; the other
    layers of a branch are He-initialized and scaled by ``L^(−1/(2m−2))`` (L residual branches, m layers
    per branch); biases zero, scalar multipliers one.

    Zhang, Dauphin & Ma, "Fixup Initialization: Residual Learning Without Normalization", ICLR 2019.
    """
    if not (isinstance(m, int) and m >= 2):
        raise ValueError(f"fixup needs m >= 2 layers per residual branch, got {m!r}")
    if p.role == "residual_scale":
        return constant(1.0, note="fixup multiplier")
    if (d := default_role_draw(p)) is not None:
        return d
    if p.role in RESIDUAL_OUT_ROLES or p.role == "head":
        return constant(0.0, note="fixup: last layer of a residual branch / head")
    if p.layer is None:
        return he(p, distribution=distribution, nonlinearity=nonlinearity)
    L = p.n_layers or 1
    scale = L ** (-1.0 / (2 * m - 2))
    gain2 = calculate_gain(nonlinearity) ** 2
    return variance_scaling(p, gain2 * scale * scale, "fan_in", distribution)


@register("t_fixup", "tfixup")
def t_fixup(p: ParamInfo, *, stack: str = "decoder", distribution: str = "normal") -> Draw:
    """T-Fixup: Xavier everywhere, embeddings N(0, d^−1); value, output and MLP weights (and embeddings)
    scaled by 0.67·N^−¼ in an encoder, (9N)^−¼ in a decoder (N = number of layers).

    Huang et al., "Improving Transformer Optimization Through Better Initialization", ICML 2020.
    """
    if (d := default_role_draw(p)) is not None:
        return d
    N = p.n_layers or 1
    if stack not in ("encoder", "decoder"):
        raise ValueError(f"unknown stack {stack!r}; valid: encoder, decoder")
    factor = 0.67 * N**-0.25 if stack == "encoder" else (9 * N) ** -0.25
    if p.role == "embedding":
        fan_in, _ = p.require_fans("t_fixup")  # [vocab, d]: fan_in = d
        return draw(fan_in**-0.5 * factor, distribution)
    if p.role == "attn_qkv":
        return _fused_qkv(p, factor, distribution, "t_fixup")
    g = factor if p.role in ("attn_v", "attn_out", "mlp_in", "mlp_out") else 1.0
    return variance_scaling(p, g * g, "fan_avg", distribution)


def _needs_residual_scalars(rows: Sequence[Any], options: dict[str, Any]) -> None:
    if not any(r.role == "residual_scale" for r in rows):
        raise ValueError(
            "rezero: this model has no residual scalars (0-D or 1-element parameters named like 'resweight', "
            "'rezero' or 'alpha') to set to zero; add one per residual branch or pass roles={regex: "
            "'residual_scale'}"
        )


@register("rezero", check=_needs_residual_scalars)
def rezero(p: ParamInfo, *, base: str = "xavier", distribution: str = "normal") -> Draw:
    """ReZero: every residual branch is multiplied by a learnable scalar initialized to 0, so the network
    starts as the identity; the other weights use ``base`` (Xavier by default).

    Bachlechner et al., "ReZero is All You Need: Fast Convergence at Large Depth", 2020. Needs residual
    scalars in the model (parameters named like ``resweight``/``rezero``/``alpha``); the plan raises if
    there are none.
    """
    if p.role == "residual_scale":
        return constant(0.0, note="rezero residual scalar")
    return get_scheme(base).fn(p, distribution=distribution)


def describe() -> list[tuple[str, str, str]]:
    """(name, aliases, one-line formula) for every scheme, for docs and ``depthinit plan --help``."""
    return [(s.name, ", ".join(a for a in s.aliases), s.summary()) for s in SCHEMES.values()]
