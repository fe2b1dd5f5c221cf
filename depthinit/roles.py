"""What each parameter of a model is: its role and its depth.

Roles come from module types and the usual names of GPT-2, Llama, BERT, T5, torch's own
``nn.MultiheadAttention``/``nn.Transformer*`` and plain MLP/conv nets; ``roles={regex: role}`` overrides
them. Depth: a parameter inside a block stack (``layers.N.``, ``h.N.``, ``blocks.N.``, ``layer.N.``,
``block.N.``) gets l = rank of N + 1 within its stack and L = the stack's size; otherwise weight-bearing
layers (modules owning a ≥2-D weight, embeddings excepted) are numbered in registration order.
``depth=`` (a callable or a mapping) overrides both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .schemes import ROLES

STACK_RE = re.compile(r"^(?P<stack>(?:.*\.)?(?:layers|h|blocks|layer|block))\.(?P<idx>\d+)\.")

_QKV = {"c_attn", "qkv", "wqkv", "qkv_proj", "in_proj", "query_key_value", "Wqkv"}
_Q = {"q_proj", "wq", "query", "q", "to_q", "q_lin"}
_K = {"k_proj", "wk", "key", "k", "to_k", "k_lin"}
_V = {"v_proj", "wv", "value", "v", "to_v", "v_lin"}
_ATTN_OUT = {"c_proj", "out_proj", "o_proj", "wo", "dense", "proj", "to_out", "o", "out_lin"}
_MLP_IN = {"c_fc", "fc1", "w1", "w3", "gate_proj", "up_proj", "fc_in", "dense_h_to_4h", "wi", "wi_0", "wi_1", "lin1",
           "linear1"}
_MLP_OUT = {"c_proj", "fc2", "w2", "down_proj", "fc_out", "dense_4h_to_h", "wo", "lin2", "linear2"}
_HEAD = {"lm_head", "head", "classifier", "output", "fc", "out", "score"}
_RESIDUAL_SCALE = re.compile(r"(^|\.)(resweight|rezero|res_scale|residual_scale|skip_scale|alpha|rezero_alpha)$")
_ATTN_CTX = re.compile(
    r"(^|\.)(attn|attention|self_attn|selfattention|self_attention|cross_attn|encdecattention)(\.|$)", re.IGNORECASE
)
_MLP_CTX = re.compile(r"(^|\.)(mlp|ffn|feed_forward|feedforward|ff|fc|intermediate|output)(\.|$)", re.IGNORECASE)


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


def classify(pname: str, leaf: str, module: nn.Module, param: torch.Tensor, module_path: str) -> str:
    """Role of parameter ``leaf`` of ``module`` (at ``module_path``); ``pname`` is the full name."""
    if _RESIDUAL_SCALE.search(pname) and param.numel() <= 1:
        return "residual_scale"
    if leaf.endswith("bias"):
        return "bias"
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return "embedding"
    if is_norm(module):
        return "norm"
    if isinstance(module, nn.MultiheadAttention):
        return {"in_proj_weight": "attn_qkv", "q_proj_weight": "attn_q", "k_proj_weight": "attn_k",
                "v_proj_weight": "attn_v"}.get(leaf, "other")
    last = module_path.rsplit(".", 1)[-1] if module_path else ""
    in_attn = bool(_ATTN_CTX.search(module_path))
    if last in _QKV:
        return "attn_qkv"
    if in_attn or last.endswith("_proj") and last[:1] in "qkvo":
        if last in _Q:
            return "attn_q"
        if last in _K:
            return "attn_k"
        if last in _V:
            return "attn_v"
        if last in _ATTN_OUT or (module_path.endswith("out_proj")):
            return "attn_out"
    if last in _MLP_IN or (last == "dense" and ".intermediate." in f".{module_path}."):
        return "mlp_in"
    if last in _MLP_OUT or (last == "dense" and _MLP_CTX.search(module_path)):
        return "mlp_out"
    if last in _HEAD and param.dim() >= 2 and not STACK_RE.match(module_path + "."):
        return "head"
    return "other"


@dataclass
class Located:
    role: str
    layer: int | None
    n_layers: int | None
    stack: str


def locate(
    model: nn.Module,
    names: list[str],
    depth: Callable[[str], int | None] | Mapping[str, int] | None = None,
    roles: Mapping[str, str] | None = None,
) -> dict[str, Located]:
    """Role and depth of each (deduplicated) parameter name of ``model``."""
    owners: dict[str, tuple[str, str, nn.Module]] = {}
    for mpath, mod in model.named_modules():
        for leaf, p in mod._parameters.items():
            if p is not None:
                owners.setdefault(f"{mpath}.{leaf}" if mpath else leaf, (mpath, leaf, mod))
    params = dict(model.named_parameters(remove_duplicate=False))

    # Stacks of blocks, each numbered by rank of its index.
    stacks: dict[str, set[int]] = {}
    for n in names:
        m = STACK_RE.match(n)
        if m:
            stacks.setdefault(m["stack"], set()).add(int(m["idx"]))
    ranks = {s: {i: r + 1 for r, i in enumerate(sorted(idx))} for s, idx in stacks.items()}

    # Otherwise: weight-bearing layers in registration order.
    order = [mpath for mpath, mod in model.named_modules() if weight_bearing(mod)]
    layer_of = {mpath: i + 1 for i, mpath in enumerate(order)}

    out: dict[str, Located] = {}
    for n in names:
        mpath, leaf, mod = owners[n]
        role = classify(n, leaf, mod, params[n], mpath)
        m = STACK_RE.match(n)
        if m:
            loc = Located(role, ranks[m["stack"]][int(m["idx"])], len(ranks[m["stack"]]), m["stack"])
        elif not stacks and mpath in layer_of:
            loc = Located(role, layer_of[mpath], len(order), "")
        else:
            loc = Located(role, None, None, "")
        out[n] = loc

    if not stacks and order:  # the last layer of a plain net is its head
        last = order[-1]
        for n, loc in out.items():
            if owners[n][0] == last and loc.role == "other":
                loc.role = "head"

    if roles:
        compiled = [(re.compile(rx), r) for rx, r in roles.items()]
        for rx, r in compiled:
            if r not in ROLES:
                raise ValueError(f"unknown role {r!r} for {rx.pattern!r}; valid: {', '.join(ROLES)}")
        for n, loc in out.items():
            for rx, r in compiled:
                if rx.search(n):
                    loc.role = r
    if depth is not None:
        _apply_depth(out, depth)
    return out


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
