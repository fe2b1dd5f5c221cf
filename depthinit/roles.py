"""What each parameter of a model is: its role and its depth.

Roles come from module types and the usual names of GPT-2, Llama, BERT, T5, torch's own
``nn.MultiheadAttention``/``nn.Transformer*`` and plain MLP/conv nets; ``roles={regex: role}`` overrides
them. Depth: a parameter inside a block stack (``layers.N.``, ``h.N.``, ``blocks.N.``, ``layer.N.``,
``block.N.``) gets l = rank of N + 1 within its stack and L = the stack's size; otherwise weight-bearing
layers (modules owning a ≥2-D weight, embeddings excepted) are numbered in registration order.
``depth=`` (a callable or a mapping) overrides both.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .layouts import FUSED, SEPARATE
from .reparam import weight_aliases
from .schemes import _SHAPE_SUFFIX, ROLES, compute_fans
from .schemes import RESIDUAL_OUT_ROLES as RESIDUAL_OUT

STACK_RE = re.compile(r"^(?P<stack>(?:.*\.)?(?:layers|h|blocks|layer|block))\.(?P<idx>\d+)\.")
_STACK_ANY = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer|block)\.(\d+)\.")

_QKV = set(FUSED)
_Q, _K, _V = (set(SEPARATE[x]) for x in "qkv")
_ATTN_OUT = {"c_proj", "out_proj", "o_proj", "wo", "dense", "proj", "to_out", "o", "out_lin", "w_out", "attn_out",
             "linear_proj"}
_MLP_IN = {"c_fc", "fc1", "w1", "w3", "gate_proj", "up_proj", "fc_in", "dense_h_to_4h", "wi", "wi_0", "wi_1", "lin1",
           "linear1", "ff_proj", "linear_fc1", "gate_up_proj"}
_MLP_OUT = {"c_proj", "fc2", "w2", "down_proj", "fc_out", "dense_4h_to_h", "wo", "lin2", "linear2", "ff_out",
            "linear_fc2"}
_ATTN_OUT_ANY = {"attn_out", "o_proj", "out_proj"}  # attention outputs by name alone (original OLMo's blocks)
_HEAD = {"lm_head", "head", "classifier", "output", "fc", "out", "score", "output_layer"}
# Output layers of a whole model (outside any block stack): original OLMo's ``transformer.ff_out``,
# OLMo-core's ``lm_head.w_out``.
_HEAD_OUTSIDE = _HEAD | {"ff_out", "w_out"}
_EMBEDDING_PARAM = re.compile(
    r"^(cls_token|dist_token|position_embeddings?|pos_embed(ding)?|positional_embedding|register_tokens)$"
)
_RESIDUAL_SCALE = re.compile(r"(^|\.)(resweight|rezero|res_scale|residual_scale|skip_scale|alpha|rezero_alpha)$")
_ATTN_CTX = re.compile(
    r"(^|\.)(attn|attention|self_attn|selfattention|self_attention|cross_attn|encdecattention)(\.|$)", re.IGNORECASE
)
_MLP_CTX = re.compile(r"(^|\.)(mlp|ffn|feed_forward|feedforward|ff|fc|intermediate|output)(\.|$)", re.IGNORECASE)
_EXPERTS_CTX = re.compile(r"(^|\.)\w*experts?(\.|$)", re.IGNORECASE)

SOURCES = ("traced", "module", "name", "user")


def stack_of(name: str) -> tuple[str, int] | None:
    """``(stack, index)`` of the outermost block stack a parameter name lies in (``encoder.block.3.layer.1.x``
    is in block 3 of ``encoder.block``, not in layer 1), or None."""
    m = _STACK_ANY.search(name)
    if m is None:
        return None
    return name[: m.start(1) - 1], int(m.group(1))


def is_norm(module: nn.Module) -> bool:
    norm_types = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase, nn.LocalResponseNorm)
    rms = getattr(nn, "RMSNorm", None)
    if rms is not None:
        norm_types = norm_types + (rms,)
    return isinstance(module, norm_types) or "norm" in type(module).__name__.lower()


def weight_bearing(module: nn.Module) -> bool:
    """Owns a ≥2-D floating weight directly (Linear, Conv, GPT-2's Conv1D, ...) and is no embedding/norm."""
    w = module._parameters.get("weight") if hasattr(module, "_parameters") else None
    return (
        w is not None
        and w.dim() >= 2
        and not isinstance(module, (nn.Embedding, nn.EmbeddingBag))
        and not is_norm(module)
    )


def is_conv1d_in_out(module: nn.Module) -> bool:
    """HF transformers' ``Conv1D`` (GPT-2, GPT-J...): a linear layer storing its weight ``[in, out]``."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def is_expert_bank(module: nn.Module, leaf: str, param: torch.Tensor) -> bool:
    """A 3-D weight holding one matrix per expert (HF Mixtral ``experts.gate_up_proj``, torchtitan
    ``GroupedExperts.w1``): owned directly by a module that is no convolution, in an experts context."""
    if param.dim() != 3 or isinstance(module, nn.modules.conv._ConvNd):
        return False
    return bool(_EXPERTS_CTX.search(type(module).__name__) or hasattr(module, "num_experts"))


def classify(pname: str, leaf: str, module: nn.Module, param: torch.Tensor, module_path: str) -> str:
    """Role of parameter ``leaf`` of ``module`` (at ``module_path``); ``pname`` is the full name."""
    return _classify(pname, leaf, module, param, module_path)[0]


def is_bias_name(name: str) -> bool:
    """Is the parameter (or a record of it) called ``name`` a bias? Its leaf ends in ``bias`` (``fc.bias``,
    ``in_proj_bias``) or starts with ``bias_`` (RNNs: ``bias_ih_l0``)."""
    leaf = name.rsplit(".", 1)[-1]
    return leaf.endswith("bias") or leaf.startswith("bias_")


def _classify(pname: str, leaf: str, module: nn.Module, param: torch.Tensor, module_path: str) -> tuple[str, str]:
    """(role, source): ``module`` when the module's type decides, ``name`` when the name tables do."""
    if _RESIDUAL_SCALE.search(pname) and param.numel() <= 1:
        return "residual_scale", "name"
    if is_bias_name(leaf):
        structural = isinstance(module, nn.RNNBase) or is_norm(module) or weight_bearing(module)
        return "bias", "module" if structural or is_conv1d_in_out(module) else "name"
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return "embedding", "module"
    if is_norm(module):
        return "norm", "module"
    if isinstance(module, nn.MultiheadAttention):
        return {"in_proj_weight": "attn_qkv", "q_proj_weight": "attn_q", "k_proj_weight": "attn_k",
                "v_proj_weight": "attn_v"}.get(leaf, "other"), "module"
    if isinstance(module, nn.RNNBase):
        return "other", "module"
    if _EMBEDDING_PARAM.match(leaf) and param.dim() >= 2:
        return "embedding", "name"
    # A weight owned directly by a container (an expert bank ``experts.w1``) is named by its leaf.
    owned = leaf not in ("weight", "bias") and not leaf.startswith("original")
    path = f"{module_path}.{_SHAPE_SUFFIX.sub('', leaf)}" if owned and module_path else module_path
    last = path.rsplit(".", 1)[-1] if path else ""
    in_stack = stack_of(path + ".") is not None
    in_attn = bool(_ATTN_CTX.search(path))
    source = "name"
    if last in _QKV:
        return "attn_qkv", source
    if last in _ATTN_OUT_ANY:
        return "attn_out", source
    if not in_stack and last in _HEAD_OUTSIDE and param.dim() >= 2 and not in_attn:
        return "head", source
    if in_attn or last.endswith("_proj") and last[:1] in "qkvo":
        if last in _Q:
            return "attn_q", source
        if last in _K:
            return "attn_k", source
        if last in _V:
            return "attn_v", source
        if last in _ATTN_OUT or (path.endswith("out_proj")):
            return "attn_out", source
    if last in _MLP_IN or (last == "dense" and ".intermediate." in f".{path}."):
        return "mlp_in", source
    if last in _MLP_OUT or (last == "dense" and _MLP_CTX.search(path)):
        return "mlp_out", source
    weighty = weight_bearing(module) or is_conv1d_in_out(module)
    return "other", "module" if weighty else source


def fans_of(module: nn.Module, leaf: str, param: torch.Tensor, role: str) -> tuple[int | None, int | None]:
    """``(fan_in, fan_out)`` of a parameter from its module's type: the inputs one output element sums over
    and the outputs one input element feeds, whatever the storage layout.

    * HF ``Conv1D`` stores ``[in, out]``; ``ConvTranspose`` ``[in, out/groups, *k]``;
    * expert banks ``[E, out, in]`` give the fans of one expert (the convention of HF Mixtral and torchtitan);
    * embedding-like parameters (``[vocab, d]``, ViT's ``cls_token [1, 1, d]``) have fan_in = d;
    * everything else as ``torch.nn.init`` (``[out, in, *k]``).
    """
    shape = tuple(param.shape)
    if len(shape) < 2 or role in ("bias", "norm", "residual_scale"):
        return None, None
    if role == "embedding":
        return shape[-1], math.prod(shape) // max(shape[-1], 1)
    if is_conv1d_in_out(module) and leaf == "weight":
        return shape[0], shape[1]
    if isinstance(module, nn.modules.conv._ConvTransposeNd) and leaf == "weight":
        rf = math.prod(shape[2:])
        return shape[0] // module.groups * rf, shape[1] * rf
    if is_expert_bank(module, leaf, param):
        return _bank_fans(module, shape, role)
    return compute_fans(shape)


_HIDDEN_ATTRS = ("hidden_size", "hidden_dim", "d_model", "n_embd", "dim")


def _bank_fans(module: nn.Module, shape: tuple[int, ...], role: str) -> tuple[int, int]:
    """Fans of one expert of a bank ``[E, a, b]``: ``[E, out, in]`` (HF Mixtral, torchtitan) unless the
    module's hidden size says the bank is stored ``[E, in, out]`` (HF GPT-OSS, ``x @ W[e]``): the hidden
    size is the input of the up / gate projections and the output of the down projection."""
    _, a, b = shape
    h = next((v for v in (getattr(module, k, None) for k in _HIDDEN_ATTRS) if isinstance(v, int)), None)
    hidden_out = role in RESIDUAL_OUT
    in_out = (a == h != b) if not hidden_out else (b == h != a)
    return (a, b) if in_out else (b, a)


@dataclass
class Located:
    role: str
    layer: int | None
    n_layers: int | None
    stack: str
    source: str = "name"
    fan_in: int | None = None
    fan_out: int | None = None
    derived: str = ""  # set after the fill from another parameter (a weight-norm magnitude): why
    offset: float = 0.0  # a norm gain used as ``offset + p`` (Gemma's ``1 + w``): the plan subtracts it


def param_owners(model: nn.Module) -> dict[str, tuple[str, str, nn.Module]]:
    """``name -> (module path, leaf, module)`` for every parameter slot (tied slots included)."""
    owners: dict[str, tuple[str, str, nn.Module]] = {}
    for mpath, mod in model.named_modules(remove_duplicate=False):
        for leaf, p in mod._parameters.items():
            if p is not None:
                owners.setdefault(f"{mpath}.{leaf}" if mpath else leaf, (mpath, leaf, mod))
    return owners


def locate(
    model: nn.Module,
    names: list[str],
    depth: Callable[[str], int | None] | Mapping[str, int] | None = None,
    roles: Mapping[str, str] | None = None,
    structure: Mapping[str, Any] | None = None,
) -> dict[str, Located]:
    """Role, depth and fans of each (deduplicated) parameter name of ``model``.

    ``structure``: what tracing the model's forward found (:func:`depthinit.structure.trace`); its roles,
    fans and depths win over module types and names.
    """
    owners = param_owners(model)
    params = dict(model.named_parameters(remove_duplicate=False))

    # Stacks of blocks, each numbered by rank of its index (the outermost stack of a name).
    stacks: dict[str, set[int]] = {}
    for n in names:
        st = stack_of(n)
        if st:
            stacks.setdefault(st[0], set()).add(st[1])
    ranks = {s: {i: r + 1 for r, i in enumerate(sorted(idx))} for s, idx in stacks.items()}

    # Otherwise: weight-bearing layers in registration order.
    aliases, derived = weight_aliases(model)
    alias_mods = {id(a.module) for a in aliases.values()}
    order = [mpath for mpath, mod in model.named_modules() if weight_bearing(mod) or id(mod) in alias_mods]
    layer_of = {mpath: i + 1 for i, mpath in enumerate(order)}

    out: dict[str, Located] = {}
    for n in names:
        mpath, leaf, mod = owners[n]
        if n in aliases:  # a parametrized weight's direction: planned as that weight
            a = aliases[n]
            mpath, leaf, mod = a.path, a.tensor, a.module
        role, source = _classify(f"{mpath}.{leaf}" if mpath else leaf, leaf, mod, params[n], mpath)
        fan_in, fan_out = fans_of(mod, leaf, params[n], role)
        if n in derived:
            role, source, fan_in, fan_out = "other", "module", None, None
        st = stack_of(n)
        if st:
            loc = Located(role, ranks[st[0]][st[1]], len(ranks[st[0]]), st[0], source, fan_in, fan_out)
        elif not stacks and mpath in layer_of:
            loc = Located(role, layer_of[mpath], len(order), "", source, fan_in, fan_out)
        else:
            loc = Located(role, None, None, "", source, fan_in, fan_out)
        loc.derived = derived.get(n, "")
        out[n] = loc

    traced_head = _merge_traced(out, structure, owners, params, bool(stacks)) if structure else False
    if not traced_head and not stacks and order and not any(loc.role == "head" for loc in out.values()):
        # The last layer of a plain net is its head (unless a layer is named as the head).
        last = order[-1]
        for n, loc in out.items():
            if loc.role == "other" and (owners[n][0] == last or (n in aliases and aliases[n].path == last)):
                loc.role = "head"

    if roles:
        compiled = [(re.compile(rx), r) for rx, r in roles.items()]
        for rx, r in compiled:
            if r not in ROLES:
                raise ValueError(f"unknown role {r!r} for {rx.pattern!r}; valid: {', '.join(ROLES)}")
        for n, loc in out.items():
            for rx, r in compiled:
                if rx.search(n):
                    loc.role, loc.source = r, "user"
    if depth is not None:
        _apply_depth(out, depth)
    return out


def _merge_traced(out: dict[str, Located], structure: Any, owners: dict, params: dict, has_stacks: bool) -> bool:
    """Roles, fans and (without named block stacks) depths from a traced forward (depthinit.structure).
    Returns whether the trace found the head."""
    found_head = False
    traced = structure.params
    module_layer: dict[str, tuple[int | None, int | None]] = {}
    for n, loc in out.items():
        t = traced.get(n)
        if t is None or not t.uses:
            continue
        p = params[n]
        loc.source = "traced"
        if t.fan_in is not None and ("contraction" in t.uses or "embedding" in t.uses):
            loc.fan_in, loc.fan_out = t.fan_in, t.fan_out
        role = loc.role
        if "embedding" in t.uses and role == "other":
            role = "embedding"
        elif t.uses == {"add"} and role == "other":
            role = "embedding" if p.dim() >= 2 else "bias"
        elif t.residual_scale and p.numel() <= 1:
            role = "residual_scale"
        elif t.uses == {"scale"} and role == "other" and p.dim() == 1:
            role = "norm"
        if t.residual_out and role not in RESIDUAL_OUT:
            role = "attn_out" if role.startswith("attn") or _ATTN_CTX.search(owners[n][0]) else "mlp_out"
        if t.head and not t.residual_out and role in ("other", "mlp_out", "attn_out", "head"):
            role, found_head = "head", True
        elif t.head and role == "embedding":
            found_head = True  # a tied embedding/head: the slot names say which
        if role != loc.role and loc.role in ("bias", "norm") and role not in ("bias", "norm"):
            role = loc.role  # module types know biases and norms for sure
        loc.role = role
        if role == "norm" and t.uses == {"add"} and t.offset:
            loc.offset = t.offset  # the gain is offset + w
        if role == "embedding" and t.fan_in is None:  # a table added to activations (ViT's position_embeddings)
            loc.fan_in, loc.fan_out = (p.shape[-1], p.numel() // max(p.shape[-1], 1)) if p.dim() >= 2 else (None, None)
        if not has_stacks and "contraction" in t.uses:
            if structure.n_branches:
                lyr, L = t.branch, structure.n_branches
            else:
                lyr, L = t.order, structure.n_weight_ops
            loc.layer, loc.n_layers = (lyr, L) if lyr is not None else (None, None)
            module_layer[owners[n][0]] = (loc.layer, loc.n_layers)
    if not has_stacks:  # a layer's other parameters (its bias) share its weight's depth
        for n, loc in out.items():
            if owners[n][0] in module_layer and "contraction" not in getattr(traced.get(n), "uses", ()):
                loc.layer, loc.n_layers = module_layer[owners[n][0]]
    return found_head


def _apply_depth(out: dict[str, Located], depth) -> None:
    if isinstance(depth, Mapping):
        get = depth.get
    elif callable(depth):
        get = depth
    else:
        raise TypeError(f"depth must be a callable name -> int | None or a mapping, got {type(depth).__name__}")
    given = {}
    for n in out:
        v = get(n)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"depth for {n!r} must be an int >= 1 (1-based layer index), got {v!r}")
        given[n] = v
    L = max(given.values(), default=None)
    for n, loc in out.items():
        if n in given:
            loc.layer, loc.n_layers, loc.stack = given[n], L, "depth="
        else:
            loc.layer, loc.n_layers = None, None
