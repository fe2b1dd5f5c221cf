"""The monitor's rows: one table of row descriptors built from the model's modules and parameters.

Every selected module is cut into **pieces** of its output features once (:func:`module_pieces`): the whole
output, or its ``q``/``k``/``v`` parts (the fused layouts of :mod:`depthinit.layouts`, or the sizes given in
``qkv_modules``) and, with ``per_head``, one range per head. The same pieces give the module's weight rows
(each parameter narrowed along the dimension that holds the output features) and its activation rows (the
output narrowed along its last dimension). :class:`RowTable` lays the rows out in four blocks, in this
order: ``weight``, ``grad`` (one per weight row), ``act`` (module outputs, then the gradients with respect to
the residual stream) and ``update`` (one per weight row).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor, nn

from ..layouts import FUSED, SEPARATE, fused_layout, separate_part
from ..outputs import residual_blocks
from ..roles import locate

KINDS = ("weight", "grad", "act", "update")
DEFAULT_QKV = tuple(FUSED)  # the layouts of depthinit.layouts
_WRAPPERS = {"_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module"}
_PREFIXES = ("module", "model", "transformer")
_HEAD_ATTRS = ("n_head", "num_heads", "n_heads", "num_attention_heads")


@dataclass(frozen=True)
class Row:
    """What one row of the monitor measures: ``kind`` (weight/grad/act/update) of ``name``."""

    kind: str
    name: str
    layer: int | None
    qkv: str | None = None
    head: int | None = None
    stream: bool = False  # a residual-stream row: a block's output (act) or the gradient w.r.t. it (grad)


@dataclass(frozen=True)
class Piece:
    """A part of a module's output features: all of them (``span`` None), a q/k/v part or one head."""

    stem: str  # the row name (a weight row appends ``.bias`` etc. for parameters other than ``weight``)
    qkv: str | None
    head: int | None
    span: tuple[int, int] | None


@dataclass
class ParamRow:
    """A weight row: parameter ``leaf`` of ``module``, narrowed to ``[start, stop)`` along ``dim`` (None: whole)."""

    pname: str  # canonical parameter name
    module: nn.Module  # owner; the parameter is looked up at each step (FSDP and assign= swap the objects)
    leaf: str
    dim: int | None
    start: int
    stop: int
    row: Row

    @property
    def param(self) -> Tensor | None:
        return self.module._parameters.get(self.leaf)


@dataclass
class Site:
    """A hooked module: its output's rows start at ``row0`` of the activation block."""

    mname: str
    row0: int
    splits: list[tuple[int, int] | None] | None  # ranges of the output's last dim (None: all); None: one row
    rows: list[Row]
    stream: bool = False  # a residual block: its output is the residual stream
    grad_row: int | None = None  # residual block: the row (in the act block) of the gradient w.r.t. its output


@dataclass
class Selection:
    """Which modules become rows and how they are cut (the monitor's selection options, checked)."""

    include: list[re.Pattern] = field(default_factory=list)
    exclude: list[re.Pattern] = field(default_factory=list)
    qkv: list[tuple[str, tuple[int, ...] | None]] = field(default_factory=list)
    split_qkv: bool = True
    per_head: bool = False
    n_head: int | None = None
    grads: bool = True
    activations: bool = True
    residual_stream: bool | None = None

    @classmethod
    def from_options(cls, include: str | Iterable[str] | None = None, exclude: str | Iterable[str] | None = None,
                     qkv_modules: Iterable[str] | Mapping[str, Sequence[int]] | None = None, **kw: Any) -> Selection:
        """The checked selection of the monitor's ``include`` / ``exclude`` / ``qkv_modules`` and ``kw`` options."""
        n_head = kw.get("n_head")
        if n_head is not None and (not isinstance(n_head, int) or n_head < 1):
            raise ValueError(f"VarianceMonitor: n_head must be an int >= 1, got {n_head!r}")
        return cls(compile_regexes("include", include), compile_regexes("exclude", exclude),
                   qkv_specs(qkv_modules), **kw)

    def selects(self, name: str, mod: nn.Module) -> bool:
        if self.include:
            if not any(p.search(name) for p in self.include):
                return False
        elif not any(p is not None for p in mod._parameters.values()):
            return False
        return not any(p.search(name) for p in self.exclude)


class RowTable:
    """The rows of a monitor, in blocks ``weights | grads | acts | updates`` (slices into :attr:`rows`)."""

    def __init__(self, prows: list[ParamRow], sites: list[Site], grads: bool):
        k = sum(len(s.rows) for s in sites)
        for site in sites:
            if site.stream and grads:
                site.grad_row, k = k, k + 1
        self.prows, self.sites = prows, sites
        w = [p.row for p in prows]
        self.rows: list[Row] = (
            w + [Row("grad", r.name, r.layer, r.qkv, r.head) for r in w]
            + [r for s in sites for r in s.rows]
            + [Row("grad", s.rows[0].name, s.rows[0].layer, stream=True) for s in sites if s.grad_row is not None]
            + [Row("update", r.name, r.layer, r.qkv, r.head) for r in w]
        )
        self.n_weights, self.n_acts = len(prows), k
        nw = self.n_weights
        self.weights, self.grads = slice(0, nw), slice(nw, 2 * nw)
        self.acts, self.updates = slice(2 * nw, 2 * nw + k), slice(2 * nw + k, len(self.rows))

    def __len__(self) -> int:
        return len(self.rows)

    def keys(self) -> list[str]:
        """``"kind:name"`` of every row (what a saved state is matched against)."""
        return [f"{row.kind}:{row.name}" for row in self.rows]

    def valid(self, weights: bool, grads: bool | Sequence[bool], acts: bool, updates: bool) -> np.ndarray:
        """``[R]`` bool: which rows a step measured (``grads``: one flag, or one per weight row)."""
        v = np.zeros(len(self.rows), dtype=bool)
        v[self.weights], v[self.grads], v[self.acts], v[self.updates] = weights, grads, acts, updates
        return v

    def match_saved(self, saved: list[str]) -> np.ndarray | None:
        """Where the rows of a saved state (its :meth:`keys`) are in this table: None when they are the same;
        the index of each when the saved rows lack only residual-stream rows; else a ValueError."""
        rows = self.keys()
        if saved == rows:
            return None
        stream = {f"{row.kind}:{row.name}" for row in self.rows if row.stream}
        if not (set(saved) <= set(rows) and set(rows) - set(saved) <= stream):
            diff = sorted(set(saved) ^ set(rows))[:4]
            raise ValueError("VarianceMonitor.load_state_dict: the saved monitor measured other rows (different "
                             f"model or options), e.g. {diff}")
        return np.array([rows.index(k) for k in saved], dtype=np.int64)


def short_name(name: str) -> str:
    """``"_orig_mod.transformer.h.0.attn"`` -> ``"h.0.attn"``: wrappers and a leading model prefix dropped."""
    parts = [p for p in name.split(".") if p not in _WRAPPERS]
    while len(parts) > 1 and parts[0] in _PREFIXES:
        parts = parts[1:]
    return ".".join(parts)


def name_matches(key: str, mname: str) -> bool:
    """``key`` names module ``mname``: its full name, last component or short name, or a regex of it."""
    if key in (mname, mname.rsplit(".", 1)[-1], short_name(mname)):
        return True
    try:
        return re.fullmatch(key, mname) is not None
    except re.error:
        return False


def compile_regexes(what: str, pats: str | Iterable[str] | None) -> list[re.Pattern]:
    if pats is None:
        return []
    out = []
    for p in [pats] if isinstance(pats, str) else pats:
        try:
            out.append(re.compile(p))
        except re.error as e:
            raise ValueError(f"VarianceMonitor: bad {what} regex {p!r}: {e}") from None
    return out


def qkv_specs(qkv_modules: Iterable[str] | Mapping[str, Sequence[int]] | None) -> list:
    """``[(name or regex, sizes or None)]`` of the ``qkv_modules`` option (sizes checked)."""
    if qkv_modules is None:
        return []
    if isinstance(qkv_modules, str):
        qkv_modules = [qkv_modules]
    items = qkv_modules.items() if isinstance(qkv_modules, Mapping) else ((k, None) for k in qkv_modules)
    out = []
    for k, sizes in items:
        if sizes is not None:
            sizes = tuple(int(s) for s in sizes)
            if len(sizes) != 3 or min(sizes) < 1:
                raise ValueError(f"VarianceMonitor: qkv_modules[{k!r}] must be 3 positive sizes, got {sizes!r}")
        out.append((str(k), sizes))
    return out


def out_features(mod: nn.Module, w: Tensor) -> int:
    """Output features of a module from its weight (HF's ``Conv1D`` stores ``[in, out]``)."""
    if isinstance(mod, nn.Linear) or w.dim() == 1:
        return w.shape[0]
    if type(mod).__name__ == "Conv1D":
        return w.shape[-1]
    return w.shape[0]


def split_dim(p: Tensor, out: int) -> int | None:
    """The dimension of ``p`` that holds ``out`` output features (dim 0 first, then the last ones)."""
    for d in [0] + list(range(p.dim() - 1, 0, -1)):
        if p.shape[d] == out:
            return d
    return None


def params_signature(model: nn.Module) -> tuple:
    """What a re-scan compares: name, dtype and shape of every parameter, and which module object holds each
    name (a submodule replaced by one of the same shapes must not leave the rows reading the old one)."""
    params, modules, seen = [], [], set()
    for mname, mod in model.named_modules():  # one walk: what named_parameters() does, plus the modules
        modules.append((mname, id(mod)))
        for leaf, p in mod._parameters.items():
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                params.append((f"{mname}.{leaf}" if mname else leaf, p.dtype, p.shape))
    return tuple(params), tuple(modules)


def describe_change(old: tuple, new: tuple) -> str:
    """``"added: a; removed: b; changed dtype/shape: c; replaced modules: d"`` between two
    :func:`params_signature`."""
    (old_p, old_m), (new_p, new_m) = old, new
    old_names, new_names = {n for n, *_ in old_p}, {n for n, *_ in new_p}
    changed = sorted({n for n, *_ in set(new_p) ^ set(old_p)} & old_names & new_names)
    before = dict(old_m)
    replaced = [n for n, i in new_m if n in before and before[n] != i]  # never "": the model is the same object
    replaced = [n for n in replaced if not any(n.startswith(r + ".") for r in replaced)]  # the outermost only
    what = [f"{k}: {', '.join(v[:4])}{' ...' if len(v) > 4 else ''}" for k, v in (
        ("added", sorted(new_names - old_names)), ("removed", sorted(old_names - new_names)),
        ("changed dtype/shape", changed), ("replaced modules", replaced)) if v]
    return "; ".join(what)


def fused_sizes(model: nn.Module, sel: Selection, mname: str, mod: nn.Module) -> tuple[int, ...] | None:
    """``(q, k, v)`` sizes of a fused projection to split (contiguous ranges of its outputs), else None."""
    if not sel.split_qkv:
        return None
    last = mname.rsplit(".", 1)[-1]
    sizes: tuple[int, ...] | None | str = "none"
    for key, sz in sel.qkv:
        if name_matches(key, mname):
            sizes = sz
    w = mod._parameters.get("weight")
    if sizes == "none":
        if last not in DEFAULT_QKV or w is None:
            return None
        lay = fused_layout(model, mname, mod, out_features(mod, w))
        if lay.sizes is None or lay.names != ("q", "k", "v"):
            # qkv_modules splits into contiguous ranges: right for an unknown contiguous layout, wrong
            # for one interleaved per head or KV group (each range would mix q, k and v)
            hint = ("its q/k/v rows are interleaved, so no contiguous split exists" if lay.kind == "kv_groups"
                    else "give its sizes in qkv_modules if its q, k and v are contiguous ranges")
            warnings.warn(f"VarianceMonitor: {lay.warning or f'{mname}: {lay.kind} layout'}; not split into "
                          f"q/k/v ({hint})", stacklevel=5)
            return None
        return lay.sizes
    if w is None:
        return None
    out = out_features(mod, w)
    if sizes is None:
        if out % 3:
            warnings.warn(f"VarianceMonitor: {mname} has {out} output features, not divisible by 3; "
                          "not split into q/k/v (give its sizes in qkv_modules)", stacklevel=5)
            return None
        return (out // 3,) * 3
    if sum(sizes) != out:
        raise ValueError(f"VarianceMonitor: qkv sizes {sizes} of {mname} do not add up to its {out} outputs")
    return sizes


def head_ranges(model: nn.Module, n_head: int | None, mname: str, sizes: Sequence[int]) -> list[list[tuple[int, int]]]:
    """Per-head ranges (relative to each part) of the parts of a Q/K/V projection."""
    head_dim = None
    path = mname.split(".")
    mods = dict(model.named_modules())
    for i in range(len(path) - 1, -1, -1):
        m = mods.get(".".join(path[:i])) if i else model
        for holder in (m, getattr(m, "config", None)) if m is not None else ():
            if holder is None:
                continue
            if n_head is None:
                n_head = next((v for a in _HEAD_ATTRS if isinstance(v := getattr(holder, a, None), int) and v > 0),
                              None)
            hd = getattr(holder, "head_dim", None)
            if head_dim is None and isinstance(hd, int) and hd > 0:
                head_dim = hd
    if n_head is None and head_dim is None:
        raise ValueError(f"VarianceMonitor: per_head=True but the number of heads of {mname} is unknown; "
                         "pass n_head=")
    if head_dim is None:
        q_size = sizes[0]
        parent = mods.get(mname.rsplit(".", 1)[0]) if "." in mname else model
        if len(sizes) == 1 and parent is not None:  # a separate k/v projection: the head size comes from q
            for qn in SEPARATE["q"]:
                q = getattr(parent, qn, None)
                w = getattr(q, "weight", None)
                if isinstance(w, Tensor) and w.dim() >= 1:
                    q_size = out_features(q, w)
                    break
        head_dim = q_size // n_head
    out = []
    for s in sizes:
        if head_dim < 1 or s % head_dim:
            raise ValueError(f"VarianceMonitor: {mname}: size {s} is not a multiple of the head size {head_dim}")
        out.append([(h * head_dim, (h + 1) * head_dim) for h in range(s // head_dim)])
    return out


def module_pieces(model: nn.Module, sel: Selection, mname: str, mod: nn.Module, base: str,
                  parent: str) -> tuple[list[Piece], int | None]:
    """The pieces of a module's output features (weights and activations alike) and their total size.

    A fused projection: ``q``, ``k``, ``v`` (each followed by its heads with ``per_head``); a separate q/k/v
    projection with ``per_head``: the whole output, then its heads; anything else: the whole output.
    """
    sizes = fused_sizes(model, sel, mname, mod)
    part = separate_part(mname.rsplit(".", 1)[-1])
    if sizes is not None:
        heads = head_ranges(model, sel.n_head, mname, sizes) if sel.per_head else [[]] * len(sizes)
        pieces, a = [], 0
        for q, s, hs in zip("qkv", sizes, heads):
            stem = f"{parent}.{q}" if parent else q
            pieces.append(Piece(stem, q, None, (a, a + s)))
            pieces += [Piece(f"{stem}.head{h}", q, h, (a + ha, a + hb)) for h, (ha, hb) in enumerate(hs)]
            a += s
        return pieces, a
    whole = Piece(base, part, None, None)
    w = mod._parameters.get("weight")
    if sel.per_head and part is not None and w is not None:
        out = out_features(mod, w)
        heads = head_ranges(model, sel.n_head, mname, [out])[0]
        return [whole] + [Piece(f"{base}.head{h}", part, h, r) for h, r in enumerate(heads)], out
    return [whole], None


def build_rows(model: nn.Module, sel: Selection) -> RowTable:
    """The rows of ``model`` under ``sel``: one pass over the selected modules gives their weight rows and
    their activation sites from the same pieces, then the residual blocks not selected get a site of their own."""
    canon: dict[int, str] = {}
    for n, p in model.named_parameters():
        canon.setdefault(id(p), n)
    locs = locate(model, list(canon.values())) if canon else {}
    blocks = _stream_blocks(model, sel, {n: loc.role for n, loc in locs.items()})
    modules = list(model.named_modules())
    selected = [(n, m) for n, m in modules if sel.selects(n, m)]
    if not selected:
        raise ValueError("VarianceMonitor: no module selected (check include= / exclude=, or the model has "
                         "no parameters)")
    unmatched = [k for k, _ in sel.qkv if not any(name_matches(k, n) for n, _ in modules)]
    if unmatched:
        raise ValueError(f"VarianceMonitor: qkv_modules {unmatched} match no module of the model")
    names = [n for n, _ in modules]
    shorts = [short_name(n) for n in names]
    short = dict(zip(names, shorts)) if len(set(shorts)) == len(shorts) else {
        n: ".".join(p for p in n.split(".") if p not in _WRAPPERS) for n in names}
    prows: list[ParamRow] = []
    sites: list[Site] = []
    seen: set[int] = set()
    n_act = 0
    for mname, mod in selected:
        base = short.get(mname, mname)
        parent = short.get(mname.rsplit(".", 1)[0], "") if "." in mname else ""
        pieces, total = module_pieces(model, sel, mname, mod, base, parent)
        whole = Piece(base, separate_part(mname.rsplit(".", 1)[-1]), None, None)
        layer = None
        for leaf, p in mod._parameters.items():
            if p is None or not p.is_floating_point():
                continue
            pname = canon[id(p)]
            layer = locs[pname].layer if layer is None else layer
            if id(p) in seen:
                continue
            seen.add(id(p))
            suffix = "" if leaf == "weight" else f".{leaf}"
            split = total is not None and (pieces[0].span is not None or leaf in ("weight", "bias"))
            dim = split_dim(p, total) if split else None
            for pc in pieces if dim is not None else [whole]:
                a, b = pc.span or (0, 0)
                row = Row("weight", pc.stem + suffix if pc.stem else leaf, locs[pname].layer, pc.qkv, pc.head)
                prows.append(ParamRow(pname, mod, leaf, None if pc.span is None else dim, a, b, row))
        if mod is model:
            continue  # the model's own output is not a layer activation
        if layer is None:  # a module without its own parameters (a block): the depth of its first one
            first = next(iter(mod.parameters()), None)
            layer = locs[canon[id(first)]].layer if first is not None and id(first) in canon else None
        one = len(pieces) == 1
        stream = one and mname in blocks
        rows = [Row("act", pc.stem or "<root>", layer, pc.qkv, pc.head, stream=stream) for pc in pieces]
        sites.append(Site(mname, n_act, None if one else [pc.span for pc in pieces], rows, stream))
        n_act += len(rows)
    have = {s.mname for s in sites}
    for i, b in enumerate(blocks):
        if b not in have:
            sites.append(Site(b, n_act, None, [Row("act", short.get(b, b), i + 1, stream=True)], True))
            n_act += 1
    return RowTable(prows, sites, sel.grads)


def _stream_blocks(model: nn.Module, sel: Selection, roles: dict[str, str]) -> list[str]:
    if sel.residual_stream is False or not sel.activations or (sel.residual_stream is None and sel.include):
        return []
    blocks = residual_blocks(model, roles)
    if sel.residual_stream and not blocks:
        raise ValueError("VarianceMonitor: residual_stream=True but the model has no residual blocks (no "
                         "container items holding residual output projections, see depthinit.structure)")
    return blocks
