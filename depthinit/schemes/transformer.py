"""Residual-stream schemes of transformer and residual codebases: GPT-2, Megatron, torchtitan depth_init, OLMo
mitchell, DeepNorm, Fixup, T-Fixup, ReZero."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .classic import he
from .core import (
    _SHAPE_SUFFIX,
    RESIDUAL_OUT_ROLES,
    Draw,
    ParamInfo,
    calculate_gain,
    constant,
    default_role_draw,
    draw,
    fixed,
    get_scheme,
    register,
    variance_scaling,
)

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
