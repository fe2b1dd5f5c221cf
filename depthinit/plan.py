"""Init plans: one row per parameter, printable, serializable, editable, applied in one fused launch.

>>> plan = di.plan(model, scheme="depth_aware", K=1.0, distribution="uniform", seed=0)
>>> print(plan)          # aligned table: name, shape, role, layer l/L, fans, distribution, std, bounds
>>> plan.apply()         # one fused launch per device
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn

from . import schemes as S
from .apply import EDITS, apply_plan, targets
from .distributed import is_dtensor, storage_key
from .kernels.contract import check_seed
from .reparam import padding_rows
from .report import align
from .roles import SOURCES, locate
from .structure import trace_structure
from .validation import check_constants, check_plan, check_saved_options

PLAN_FORMAT = "depthinit.plan/1"
GROWTH_WARN_HIGH = 1e4
GROWTH_WARN_LOW = 1e-4
FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)




class VarianceWarning(UserWarning):
    """A plan predicts an extreme end-to-end variance growth or decay."""


@dataclass
class PlanRow:
    """One parameter of a plan. ``std`` is the distribution's standard deviation (for ``orthogonal``, the
    gain); ``low``/``high`` are uniform bounds or truncation bounds; ``stream`` the RNG stream id."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    device: str
    role: str
    layer: int | None
    n_layers: int | None
    fan_in: int | None
    fan_out: int | None
    distribution: str
    mean: float
    std: float
    low: float | None
    high: float | None
    stream: int
    note: str = ""
    tied: tuple[str, ...] = ()
    source: str = ""  # where the role came from: traced / module / name / user ("" in older plans)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ready", True)

    def __setattr__(self, key: str, value: Any) -> None:
        """Edits stay consistent: a new ``std`` or ``mean`` re-derives uniform bounds (mean ± √3·std) and
        moves trunc_normal clamps with it (same multiple of std) unless ``low``/``high`` were set
        explicitly; a ``low``/``high`` edit is used as given (and a uniform row's std/mean follow it)."""
        d = self.__dict__
        if not d.get("_ready"):
            object.__setattr__(self, key, value)
            return
        EDITS[0] += 1  # any edit of any row: a plan's cached fill is checked again (InitPlan.apply)
        if key in ("std", "mean") and self.low is not None and self.high is not None and not d.get("_explicit"):
            old_mean, old_std = self.mean, self.std
            object.__setattr__(self, key, value)
            if self.distribution == "uniform":
                object.__setattr__(self, "low", self.mean - S.SQRT3 * self.std)
                object.__setattr__(self, "high", self.mean + S.SQRT3 * self.std)
            elif self.distribution == "trunc_normal":
                ratio = self.std / old_std if old_std > 0 else 1.0
                object.__setattr__(self, "low", self.mean + (self.low - old_mean) * ratio)
                object.__setattr__(self, "high", self.mean + (self.high - old_mean) * ratio)
            return
        object.__setattr__(self, key, value)
        if key in ("low", "high"):
            object.__setattr__(self, "_explicit", True)
            if self.distribution == "uniform" and self.low is not None and self.high is not None:
                object.__setattr__(self, "mean", (self.low + self.high) / 2)
                object.__setattr__(self, "std", (self.high - self.low) / (2 * S.SQRT3))

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class InitPlan:
    """A table of what every floating parameter of a model is initialized with (see :func:`plan`)."""

    rows: list[PlanRow]
    scheme: str
    options: dict[str, Any]
    seed: int
    constants: dict[str, float] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    model: nn.Module | None = field(default=None, repr=False, compare=False)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_plan(self.rows, self.constants)  # finite weights in every row's dtype (depthinit.validation)

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[PlanRow]:
        return iter(self.rows)

    def __getitem__(self, name: str) -> PlanRow:
        for r in self.rows:
            if r.name == name or name in r.tied:
                return r
        raise KeyError(f"no parameter {name!r} in the plan")

    @property
    def numel(self) -> int:
        return sum(r.numel for r in self.rows)

    def predicted_gain(self) -> dict[str, float]:
        """Per depth stack: the predicted end-to-end variance gain (schemes with a ``gain`` hook, e.g. the
        product of the depth multipliers m_l of depth_aware); empty for a scheme not registered in this process
        (a plan loaded from JSON)."""
        scheme = S.find_scheme(self.scheme)
        gain = scheme.gain if scheme is not None else None
        if gain is None:
            return {}
        stacks = {(r.n_layers) for r in self.rows if r.layer is not None and r.n_layers}
        return {f"L={L}": gain(L, self.options) for L in sorted(stacks)}

    # ------------------------------------------------------------------ display
    def table(self) -> str:
        head = ("name", "shape", "dtype", "role", "src", "l/L", "fan_in", "fan_out", "dist", "std", "bounds", "note")
        lines = [head]
        for r in self.rows:
            bounds = "" if r.low is None else f"[{r.low:.4g}, {r.high:.4g}]"
            std = f"{r.mean:g}" if r.distribution == "constant" else f"{r.std:.4g}"
            lines.append(
                (
                    r.name + (f" (= {', '.join(r.tied)})" if r.tied else ""),
                    "x".join(map(str, r.shape)) or "scalar",
                    r.dtype.replace("torch.", ""),
                    r.role,
                    r.source,
                    "" if r.layer is None else f"{r.layer}/{r.n_layers}",
                    "" if r.fan_in is None else str(r.fan_in),
                    "" if r.fan_out is None else str(r.fan_out),
                    r.distribution,
                    std,
                    bounds,
                    r.note,
                )
            )
        out = [
            f"InitPlan: scheme={self.scheme} seed={self.seed} "
            + " ".join(f"{k}={v}" for k, v in self.options.items())
            + f" | {len(self.rows)} tensors, {self.numel:,} elements",
            *align(lines),
        ]
        if self.constants:
            out.append("constants: " + ", ".join(f"{k}={v:.6g}" for k, v in self.constants.items()))
        for name, gain in self.predicted_gain().items():
            out.append(f"predicted end-to-end variance gain ({name}): {gain:.4g}")
        for name, why in self.skipped:
            out.append(f"skipped {name}: {why}")
        return "\n".join(out)

    __str__ = table

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "scheme": self.scheme,
            "options": self.options,
            "seed": self.seed,
            "constants": self.constants,
            "skipped": [list(s) for s in self.skipped],
            "rows": [{**asdict(r), "shape": list(r.shape), "tied": list(r.tied)} for r in self.rows],
        }

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str | bytes) -> InitPlan:
        """Parse a plan written by :meth:`to_json` (plain JSON; never pickle or eval). Bad input raises
        ``ValueError`` with a one-line reason."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"plan JSON is not UTF-8: {e}") from None
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            raise ValueError(f"not valid plan JSON: {e}") from None
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: Any) -> InitPlan:
        if not isinstance(d, dict) or d.get("format") != PLAN_FORMAT:
            raise ValueError(f"not a depthinit plan (expected an object with format={PLAN_FORMAT!r})")
        extra = set(d) - {"format", "scheme", "options", "seed", "constants", "skipped", "rows"}
        if extra:
            raise ValueError(f"unknown plan field(s): {', '.join(sorted(extra))}")
        rows_in = d.get("rows")
        if not isinstance(rows_in, list):
            raise ValueError("plan 'rows' must be a list")
        rows = [_row_from_dict(i, r) for i, r in enumerate(rows_in)]
        seen: set[str] = set()
        for r in rows:
            for n in (r.name, *r.tied):
                if n in seen:
                    raise ValueError(f"plan rows: parameter {n!r} appears twice; each parameter has one row "
                                     "(tied parameters are listed under one row's 'tied')")
                seen.add(n)
        seed = d.get("seed")
        check_seed(seed)
        scheme = d.get("scheme", "")
        if not isinstance(scheme, str):
            raise ValueError(f"plan 'scheme' must be a string, got {scheme!r}")
        opts = check_saved_options(scheme, d.get("options", {}))
        consts = check_constants(d.get("constants", {}))
        skipped = d.get("skipped", [])
        if not (isinstance(skipped, list) and all(isinstance(s, list) and len(s) == 2 for s in skipped)):
            raise ValueError("plan 'skipped' must be a list of [name, reason] pairs")
        return cls(rows, scheme, opts, seed, consts, [tuple(s) for s in skipped])

    def fingerprint(self) -> str:
        """SHA-256 of what the plan draws (names, shapes, dtypes, distributions, parameters, seed)."""
        h = hashlib.sha256(f"{self.seed}".encode())
        for r in self.rows:
            h.update(repr((r.name, r.shape, r.dtype, r.distribution, r.mean, r.std, r.low, r.high, r.stream)).encode())
        return h.hexdigest()

    def check_consistent(self, group: Any = None) -> None:
        """Collectively check that every rank applies the same plan (one all-gather of 24 bytes per rank).

        A rank whose parameter list differs from the others' would otherwise fill different streams, or
        hang a later collective; here every rank raises the same clear error.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
            return
        # 16 bytes of the fingerprint and the row count as int64 words: a tensor all-gather, no pickling.
        digest = bytes.fromhex(self.fingerprint())[:16]
        words = [int.from_bytes(digest[i : i + 8], "little", signed=True) for i in (0, 8)] + [len(self.rows)]
        backend = dist.get_backend(group)
        device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        mine = torch.tensor(words, dtype=torch.int64, device=device)
        everyone = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
        dist.all_gather(everyone, mine, group=group)
        got = [tuple(t.tolist()) for t in everyone]
        if len({g[:2] for g in got}) > 1:
            detail = ", ".join(f"rank {i}: {g[2]} rows, fingerprint {g[0] & 0xFFFFFFFF:08x}" for i, g in enumerate(got))
            raise RuntimeError(f"init plans differ between ranks ({detail}); build the same model on every rank")

    # ------------------------------------------------------------------ apply
    def apply(self, model: nn.Module | None = None, backend: str = "auto") -> nn.Module:
        """Fill the model's parameters as the plan says: one fused launch per device (fp32, fp16 and bf16 together).

        ``backend``: ``auto`` (Triton for CUDA tensors, the C kernel for CPU), ``native``, ``torch`` or
        ``triton`` (on CPU tensors: the Triton interpreter, for tests). Tied parameters are filled once.

        Applying the same plan again reuses what the first call resolved (the target tensors, the kernel tables
        with their pointers) while it still describes the model: the same rows unedited, the same modules and
        parameter objects under the same names, each target with the same data pointer, dtype, shape and
        strides. Anything else (a replaced or reallocated parameter, an edited row) resolves again.
        """
        model = model if model is not None else self.model
        if model is None:
            raise ValueError("this plan is not bound to a model: call plan.apply(model)")
        return apply_plan(self, model, backend)

    def fill_rows(self) -> list:
        """The plan's rows as ``FillRow``s of the kernel contract (``keep`` rows excluded)."""
        from .kernels.contract import DIST_CODES, FillRow

        check_plan(self.rows)  # rows may have been edited since the plan was built
        out = []
        for r in self.rows:
            if r.distribution == "keep":
                continue
            dist = "normal" if r.distribution == "orthogonal" else r.distribution
            mean, std = (0.0, 1.0) if r.distribution == "orthogonal" else (r.mean, r.std)
            low = r.low if r.low is not None else 0.0
            high = r.high if r.high is not None else 1.0
            out.append(FillRow(DIST_CODES[dist], mean, std, low, high, r.stream))
        return out

    def _targets(self, model: nn.Module) -> tuple[list, list, list]:
        """The tensors the plan fills, their ``FillRow``s, and the ``(tensor, gain)`` of orthogonal rows."""
        return targets(self, model)


_ROW_TYPES: dict[str, Callable[[Any], bool]] = {
    "name": lambda v: isinstance(v, str),
    "shape": lambda v: isinstance(v, list) and len(v) <= 64 and all(isinstance(s, int) and 0 <= s < 2**48 for s in v),
    "dtype": lambda v: isinstance(v, str),
    "device": lambda v: isinstance(v, str),
    "role": lambda v: v in S.ROLES,
    "layer": lambda v: v is None or (isinstance(v, int) and v >= 1),
    "n_layers": lambda v: v is None or (isinstance(v, int) and v >= 1),
    "fan_in": lambda v: v is None or (isinstance(v, int) and v >= 0),
    "fan_out": lambda v: v is None or (isinstance(v, int) and v >= 0),
    "distribution": lambda v: v in (*S.DISTRIBUTIONS, "constant", "orthogonal", "keep"),
    "mean": lambda v: _finite(v),
    "std": lambda v: _finite(v) and v >= 0,
    "low": lambda v: v is None or _finite(v),
    "high": lambda v: v is None or _finite(v),
    "stream": lambda v: isinstance(v, int) and 0 <= v < 2**32,
    "note": lambda v: isinstance(v, str),
    "tied": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "source": lambda v: v in ("", *SOURCES),
}


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _row_from_dict(i: int, r: Any) -> PlanRow:
    if not isinstance(r, dict):
        raise ValueError(f"plan row {i} is not an object")
    names = {f.name for f in fields(PlanRow)}
    unknown = set(r) - names
    missing = names - set(r) - {"note", "tied", "source"}
    if unknown or missing:
        raise ValueError(f"plan row {i}: unknown field(s) {sorted(unknown)}, missing field(s) {sorted(missing)}")
    for k, v in r.items():
        if not _ROW_TYPES[k](v):
            raise ValueError(f"plan row {i}: invalid {k}={v!r}")
    if r["dtype"].replace("torch.", "") not in ("float16", "bfloat16", "float32", "float64"):
        raise ValueError(f"plan row {i}: dtype {r['dtype']!r} is not a floating dtype")
    if r["distribution"] in ("uniform", "trunc_normal") and (r["low"] is None or r["high"] is None):
        raise ValueError(f"plan row {i}: {r['distribution']} needs low and high")
    if r["low"] is not None and r["high"] is not None and not r["low"] <= r["high"]:
        raise ValueError(f"plan row {i}: low > high")
    return PlanRow(**{**r, "shape": tuple(r["shape"]), "tied": tuple(r.get("tied", ()))})


# ---------------------------------------------------------------------------------------------- planning


def plan(
    model: nn.Module,
    scheme: str = "he",
    *,
    seed: int = 0,
    depth: Callable[[str], int | None] | Mapping[str, int] | None = None,
    roles: Mapping[str, str] | None = None,
    example: Any = None,
    **options: Any,
) -> InitPlan:
    """Plan the initialization of every floating parameter of ``model`` with ``scheme``.

    Args:
        model: the module (its parameters may be on any device, or on ``meta``).
        scheme: a name of :data:`depthinit.schemes.SCHEMES` (``he``, ``xavier``, ``depth_aware``, ``gpt2``, ...).
        seed: 64-bit seed of the counter-based RNG; the same seed gives the same weights on any device and
            under any sharding.
        depth: override depth detection: ``name -> l`` (1-based; None = outside any stack) as a callable or
            mapping; L is the largest l given.
        roles: ``{regex: role}`` overriding the detected roles (e.g. ``{r"conv2$": "mlp_out"}`` for Fixup).
        example: an example input (a tensor, a tuple of positional arguments or a dict of keyword
            arguments) for one forward on meta tensors that reads roles, fans and depths from the model's own
            computation (:mod:`depthinit.structure`); by default the model's own dummy input where it has one
            (HF ``dummy_inputs``, depthinit's built-in models); ``False`` turns tracing off. Without an input,
            or when tracing fails, roles come from module types, then names.
        **options: the scheme's options (e.g. ``K``, ``schedule``, ``distribution``, ``nonlinearity``).

    Example:
        >>> plan = di.plan(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)), "he", seed=0)
        >>> plan.apply()
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"plan() takes an nn.Module, got {type(model).__name__}")
    sch = S.get_scheme(scheme)
    opts = S.check_options(sch, options)
    check_seed(seed)
    from .rng import stream_id

    named, tied = tied_parameters(model)

    skipped: list[tuple[str, str]] = []
    usable: list[tuple[str, torch.Tensor]] = []
    for n, p in named:
        if p.dtype not in FLOATING:
            skipped.append((n, f"{p.dtype} is not a floating dtype: left as it is"))
        else:
            usable.append((n, p))
    slots = [x for n, p in usable for x in tied[id(p)]]
    structure = trace_structure(model, example) if example is not False else None
    loc = locate(model, slots, depth=depth, roles=roles, structure=structure)
    pads = padding_rows(model)

    model_L = max((lc.n_layers for lc in loc.values() if lc.n_layers), default=None)
    rows: list[PlanRow] = []
    for n, p in usable:
        lc = loc[n]
        shape = tuple(p.shape)
        fan_in, fan_out = lc.fan_in, lc.fan_out
        tied_head = lc.role == "embedding" and any(loc[x].role == "head" for x in tied[id(p)])
        # Outside any stack a scheme still sees the model's depth (e.g. T-Fixup scales embeddings by N).
        info = S.ParamInfo(n, shape, lc.role, lc.layer, lc.n_layers or model_L, fan_in, fan_out, tied_head)
        kw = dict(opts)
        if "stack" in sch.options and not options.get("stack"):
            kw["stack"] = "encoder" if "encoder" in lc.stack else sch.options["stack"]
        if lc.derived:
            d = S.keep(lc.derived)
        elif not p.requires_grad:  # never trained: a fill would stay forever (sinusoidal tables, LoRA bases)
            d = S.keep("frozen (requires_grad=False): left as it is; unfreeze it before planning to fill it")
        else:
            d = sch.fn(info, **kw)
            if lc.offset and lc.role == "norm" and d.distribution == "constant":  # gain = offset + w
                d = dataclasses.replace(d, mean=d.mean - lc.offset, note="; ".join(
                    x for x in (d.note, f"gain used as {lc.offset:g} + w: w = {d.mean - lc.offset:g}") if x))
        note = d.note
        if n in pads and d.distribution != "keep":
            note = "; ".join(x for x in (note, f"padding row {pads[n]} kept zero") if x)
        rows.append(
            PlanRow(
                name=n,
                shape=shape,
                dtype=str(p.dtype),
                device=str(p.device),
                role=lc.role,
                layer=lc.layer,
                n_layers=lc.n_layers,
                fan_in=fan_in,
                fan_out=fan_out,
                distribution=d.distribution,
                mean=float(d.mean),
                std=float(d.std),
                low=None if d.low is None else float(d.low),
                high=None if d.high is None else float(d.high),
                stream=stream_id(n),
                note=note,
                tied=tuple(x for x in tied[id(p)] if x != n),
                source=lc.source,
            )
        )

    if sch.check is not None:
        sch.check(rows, opts)
    constants = {}
    if sch.constants is not None:
        constants = sch.constants(n_layers=max((r.n_layers for r in rows if r.n_layers), default=1), **opts)

    result = InitPlan(rows, sch.name, opts, seed, constants, skipped, model)
    for name, gain in result.predicted_gain().items():
        if gain > GROWTH_WARN_HIGH or gain < GROWTH_WARN_LOW:
            settings = ", ".join(f"{k}={opts[k]!r}" for k in ("schedule", "K") if k in opts)
            warnings.warn(
                f"{sch.name} ({settings}) predicts an end-to-end variance gain of {gain:.3g} over {name}: "
                f"activations will {'explode' if gain > 1 else 'vanish'}; choose |K| smaller (the ramp "
                f"schedule's gain is exactly e^K)",
                VarianceWarning,
                stacklevel=2,
            )
    return result


def tied_parameters(model: nn.Module) -> tuple[list[tuple[str, torch.Tensor]], dict[int, list[str]]]:
    """The model's distinct parameters (first name each) and ``id -> every name`` of each: parameters tied
    by identity (``b.weight = a.weight``) or through their storage (``b.weight = nn.Parameter(a.weight.data)``,
    the same elements) are one parameter, filled once."""
    named: list[tuple[str, torch.Tensor]] = []
    tied: dict[int, list[str]] = {}
    first: dict[object, torch.Tensor] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        key: object = (None if is_dtensor(p) else storage_key(p)) or id(p)
        owner = first.setdefault(key, p)
        if owner is p and id(p) not in tied:
            named.append((n, p))
        tied.setdefault(id(owner), []).append(n)
        if owner is not p:
            tied[id(p)] = tied[id(owner)]
    return named, tied


def init_(model: nn.Module, scheme: str = "he", *, seed: int = 0, backend: str = "auto", **options: Any) -> InitPlan:
    """Plan and apply in one call; returns the plan (``print`` it to see what was done).

    Example:
        >>> di.init_(model, "gpt2", seed=0)
    """
    p = plan(model, scheme, seed=seed, **options)
    p.apply(backend=backend)
    return p
