"""One table of attention projection layouts, used by the plan (roles) and the monitor (q/k/v rows).

A fused projection stores q, k and v (or k and v) in one weight; how its output features split depends on
the codebase:

==================  ===========================================================================  ==========
names               layout of the output features                                                kind
==================  ===========================================================================  ==========
c_attn, in_proj     q | k | v, thirds (GPT-2, ``nn.MultiheadAttention``)                         thirds
qkv, Wqkv,          q | k | v with GQA sizes (n_heads·hd, n_kv·hd, n_kv·hd): OLMo ``att_proj``,  gqa
qkv_proj, att_proj, OLMo-core ``w_qkv``, Phi-3 ``qkv_proj``, MPT ``Wqkv``
w_qkv
wqkv, linear_qkv,   per KV group g: [q heads of g | k_g | v_g] (torchtitan ``wqkv``,                kv_groups
query_key_value     Megatron-core ``linear_qkv``, GPT-NeoX/Falcon/Bloom ``query_key_value``)
kv_proj, to_kv, kv  k | v halves; GPT-2's cross-attention ``c_attn`` (``is_cross_attention``)       kv
==================  ===========================================================================  ==========

Head counts come from the module or its parents (``n_heads``/``num_heads``/``num_attention_heads``,
``n_kv_heads``/``num_key_value_heads``, ``head_dim``, also on a ``config``). A layout that cannot be
resolved (unknown head counts, sizes that do not add up) is reported as unknown with a warning: the
projection then stays one row, never wrong thirds.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

FUSED: dict[str, str] = {
    "c_attn": "thirds", "in_proj": "thirds", "in_proj_weight": "thirds",
    "qkv": "gqa", "Wqkv": "gqa", "qkv_proj": "gqa", "att_proj": "gqa", "w_qkv": "gqa",
    "wqkv": "kv_groups", "linear_qkv": "kv_groups", "query_key_value": "kv_groups",
    "kv_proj": "kv", "to_kv": "kv", "kv": "kv",
}
SEPARATE: dict[str, tuple[str, ...]] = {
    "q": ("q_proj", "wq", "query", "q", "to_q", "q_lin", "w_q"),
    "k": ("k_proj", "wk", "key", "k", "to_k", "k_lin", "w_k"),
    "v": ("v_proj", "wv", "value", "v", "to_v", "v_lin", "w_v"),
}
_N_HEADS = ("n_heads", "num_heads", "num_attention_heads", "n_head")
_N_KV = ("n_kv_heads", "num_key_value_heads", "num_kv_heads", "n_kv_head", "num_query_groups")


@dataclass(frozen=True)
class Layout:
    """How a fused projection's output features split: ``parts`` = ((name, ((start, stop), ...)), ...)."""

    kind: str
    parts: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = ()
    warning: str = ""

    @property
    def sizes(self) -> tuple[int, ...] | None:
        """Sizes of the parts when each is one range and they follow each other in order; else None."""
        if not self.parts or any(len(r) != 1 for _, r in self.parts):
            return None
        at, out = 0, []
        for _, ((a, b),) in self.parts:
            if a != at:
                return None
            out.append(b - a)
            at = b
        return tuple(out)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.parts)


def _attr(holders: list, names: tuple[str, ...]) -> int | None:
    for h in holders:
        for a in names:
            v = getattr(h, a, None)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    return None


def _holders(model: nn.Module | None, mname: str, mod: nn.Module) -> list:
    """The module, its parents (innermost first), and their configs."""
    mods = [mod]
    if model is not None and mname:
        path = mname.split(".")
        for i in range(len(path) - 1, -1, -1):
            try:
                mods.append(model.get_submodule(".".join(path[:i])) if i else model)
            except AttributeError:
                continue
    out = []
    for m in mods:
        out.append(m)
        cfg = getattr(m, "config", None)
        if cfg is not None and not callable(cfg):
            out.append(cfg)
    return out


def fused_layout(model: nn.Module | None, mname: str, mod: nn.Module, out_features: int,
                 in_features: int | None = None) -> Layout | None:
    """The layout of module ``mname`` (at ``mod``) of ``model`` with ``out_features`` outputs; None when its
    name is no fused projection. See the module docs for the table."""
    last = mname.rsplit(".", 1)[-1]
    kind = FUSED.get(last)
    if kind is None:
        return None
    holders = _holders(model, mname, mod)
    if in_features is None:
        in_features = getattr(mod, "in_features", None) or getattr(mod, "nx", None)  # Linear, HF Conv1D
    if kind == "thirds" and any(getattr(h, "is_cross_attention", False) is True for h in holders[:3]):
        kind = "kv"  # GPT-2 cross-attention: c_attn holds k | v, q is q_attn
    n_heads, n_kv, head_dim = _attr(holders, _N_HEADS), _attr(holders, _N_KV), _attr(holders, ("head_dim",))
    if kind == "kv_groups" and last == "query_key_value":
        cfg = next((h for h in holders if hasattr(h, "multi_query")), None)
        if cfg is not None and cfg.multi_query and not getattr(cfg, "new_decoder_architecture", False):
            kind, n_kv = "gqa", 1  # Falcon's multi-query layout: [all q heads | k | v]
    if kind == "thirds" or (kind == "gqa" and n_heads is None and in_features is not None
                            and out_features == 3 * in_features):
        if out_features % 3:
            return _unknown(mname, out_features, "not divisible by 3")
        d = out_features // 3
        return Layout("thirds", (("q", ((0, d),)), ("k", ((d, 2 * d),)), ("v", ((2 * d, 3 * d),))))
    if kind == "kv":
        if out_features % 2:
            return _unknown(mname, out_features, "not divisible by 2")
        d = out_features // 2
        return Layout("kv", (("k", ((0, d),)), ("v", ((d, 2 * d),))))
    if n_heads is None:
        return _unknown(mname, out_features, "the number of heads is unknown")
    n_kv = n_kv or n_heads
    if head_dim is None:
        if out_features % (n_heads + 2 * n_kv):
            return _unknown(mname, out_features, f"not a multiple of n_heads + 2·n_kv = {n_heads + 2 * n_kv}")
        head_dim = out_features // (n_heads + 2 * n_kv)
    if (n_heads + 2 * n_kv) * head_dim != out_features or n_heads % n_kv:
        return _unknown(mname, out_features, f"{n_heads} heads, {n_kv} KV heads of size {head_dim} do not add up")
    if kind == "gqa":
        q, kv = n_heads * head_dim, n_kv * head_dim
        return Layout("gqa", (("q", ((0, q),)), ("k", ((q, q + kv),)), ("v", ((q + kv, q + 2 * kv),))))
    per = n_heads // n_kv  # kv_groups: [q heads of the group | k | v] per group
    width = (per + 2) * head_dim
    qs = tuple((g * width, g * width + per * head_dim) for g in range(n_kv))
    ks = tuple((g * width + per * head_dim, g * width + (per + 1) * head_dim) for g in range(n_kv))
    vs = tuple((g * width + (per + 1) * head_dim, (g + 1) * width) for g in range(n_kv))
    return Layout("kv_groups", (("q", qs), ("k", ks), ("v", vs)))


def _unknown(mname: str, out: int, why: str) -> Layout:
    return Layout("unknown", (), f"{mname}: fused q/k/v layout unknown ({out} output features, {why}); kept as one "
                                 "row (give its sizes explicitly to split it)")


def separate_part(last: str) -> str | None:
    """``q``, ``k`` or ``v`` for a separate projection's module name (``q_proj``, ``wk``, T5's ``v``)."""
    for part, names in SEPARATE.items():
        if last in names:
            return part
    return None
