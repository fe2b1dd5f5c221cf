"""Per-layer statistics of weights, gradients or any tensors: the statistics contract of DESIGN.md.

For each tensor, one fp64 row of :data:`FIELDS`::

    count      number of finite elements (NaN and +-Inf are counted in ``nonfinite`` and excluded
               from every other field)
    mean       sum(x) / count
    m2         sum((x - mean)**2)          -> var = m2 / count (population variance), std = sqrt(var)
    sumsq      sum(x**2)                   -> rms = sqrt(sumsq / count), l2 = sqrt(sumsq)
    min, max, absmax                        over the finite elements
    nonfinite  number of NaN / +-Inf elements
    zeros      number of elements equal to 0 (+0 or -0)

A tensor without finite elements (empty, or all NaN) has ``count = m2 = sumsq = 0`` and NaN mean, min,
max, absmax, hence NaN var / std / rms.

Computation is numerically stable: per-chunk mean and M2 (never ``E[x**2] - E[x]**2``), merged with the
multi-way form of Chan, Golub & LeVeque's parallel formula in fp64 (Chan et al., "Updating formulae and
a pairwise algorithm for computing sample variances", 1979)::

    N = sum n_i,   mean = sum(n_i mean_i) / N,   M2 = sum M2_i + sum n_i (mean_i - mean)**2

(the mean is accumulated about the smallest element, so constant data has exactly zero variance)

in a fixed order, so two runs give bitwise equal results. Backends:

* ``"triton"`` (CUDA default): one single-pass launch per dtype over all tensors plus one merge launch,
  result left on the device (:mod:`depthinit.kernels.stats`); on CPU tensors it runs under the Triton
  interpreter (tests only).
* ``"torch"`` (CPU default): one call of the C kernel :mod:`depthinit.kernels.cpu_stats` over all
  tensors (fp64 accumulators, one read of memory, built with the system C compiler on first use in
  under a second); without a C compiler, or with ``DEPTHINIT_STATS_COMPILE=0``, the exact fp64 torch
  path (two passes), then one fp64 merge.
* ``"reference"``: the eager fp64 oracle, one tensor at a time (slow, any device).

>>> stats = layer_stats(model)            # one row per parameter, on the parameters' device
>>> print(stats); stats.to_records()      # a table; list of dicts (one host sync)
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from depthinit.distributed import contributes, dtensor_class, merge_sharded, storage_key
from depthinit.distributed import local_tensor as _local
from depthinit.kernels import cpu_stats as cpu_kernel
from depthinit.kernels import tensor_meta
from depthinit.kernels.contract import (  # noqa: F401  (the field indices are part of this module's API)
    ABSMAX,
    COUNT,
    M2,
    MAX,
    MEAN,
    MIN,
    N_FIELDS,
    NONFINITE,
    SUMSQ,
    ZEROS,
)
from depthinit.kernels.contract import STAT_FIELDS as FIELDS
from depthinit.report import align

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
BACKENDS = ("auto", "triton", "torch", "reference")

_EXACT_ROW = 64  # row length of the exact fp64 path
_STACK_MAX = 1 << 16  # segments of one length up to this size are stacked by the exact path
_INF = float("inf")
_NAN = float("nan")


# ---------------------------------------------------------------------------------------------------------
# Exact fp64 rows (the oracle) and the merge
# ---------------------------------------------------------------------------------------------------------


def _rows_exact(x: Tensor, valid: Tensor | None = None) -> Tensor:
    """Statistics rows ``[r, N_FIELDS]`` of each row of ``x`` ``[r, w]``, exact two-pass in fp64.

    ``valid`` (bool ``[r, w]``) marks the elements that exist (padding is ignored entirely).
    """
    x = x.to(torch.float64)
    if x.shape[1] == 0:  # empty rows: one absent column, so that min / max have something to reduce
        x = x.new_zeros((x.shape[0], 1))
        valid = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    if x.numel():  # magnitudes above 2**500: measure x * 2**-e (exact), unscale mean, m2 and sumsq in fp64
        fin = torch.isfinite(x) if valid is None else torch.isfinite(x) & valid
        big = torch.where(fin, x.abs(), 0.0).amax(1)
        if bool((big > 2.0**500).any()):
            e = torch.where(big > 2.0**500, torch.frexp(big).exponent, 0)
            rows = _rows_exact(torch.where(fin, torch.ldexp(x, -e[:, None]), x), valid)
            inv = torch.ldexp(torch.ones_like(big), e)
            rows[:, MEAN] *= inv
            rows[:, M2] = rows[:, M2] * inv * inv
            rows[:, SUMSQ] = rows[:, SUMSQ] * inv * inv
            mn = torch.where(fin, x, _INF).amin(1)
            rows[:, MIN], rows[:, MAX] = mn, torch.where(fin, x, -_INF).amax(1)
            rows[:, ABSMAX] = torch.maximum(rows[:, MIN].abs(), rows[:, MAX].abs())
            return _finalize(rows)
    w = float(x.shape[1])
    if valid is None and x.device.type == "cpu" and bool(torch.isfinite(x.sum())):  # all finite: fewer passes
        cnt = torch.full((x.shape[0],), w, dtype=torch.float64)
        xz = x
        mn, mx = x.amin(1), x.amax(1)  # (faster than aminmax over dim 1)
        mean = mn + (x - mn[:, None]).sum(1) / w  # about the smallest element: constant data is exact
        d = x - mean[:, None]
        nonfinite = torch.zeros_like(cnt)
        zeros = w - torch.count_nonzero(x, dim=1).to(torch.float64)
    else:
        fin = torch.isfinite(x) if valid is None else torch.isfinite(x) & valid
        cnt = fin.sum(1, dtype=torch.float64)
        xz = torch.where(fin, x, 0.0)
        mn = torch.where(fin, x, _INF).amin(1)
        mx = torch.where(fin, x, -_INF).amax(1)
        lo = torch.where(cnt > 0, mn, 0.0)
        mean = lo + torch.where(fin, x - lo[:, None], 0.0).sum(1) / cnt  # about the smallest element
        d = torch.where(fin, x - mean[:, None], 0.0)
        nonfinite = (w if valid is None else valid.sum(1, dtype=torch.float64)) - cnt
        zeros = ((x == 0) if valid is None else (x == 0) & valid).sum(1, dtype=torch.float64)
    rows = torch.stack(
        [cnt, mean, (d * d).sum(1), (xz * xz).sum(1), mn, mx, torch.maximum(mn.abs(), mx.abs()), nonfinite, zeros], 1
    )
    return _finalize(rows)


def _finalize(rows: Tensor) -> Tensor:
    """NaN mean / min / max / absmax and 0 m2 / sumsq where ``count == 0`` (in place, returns ``rows``)."""
    empty = rows[:, COUNT] == 0
    for f in (MEAN, MIN, MAX, ABSMAX):
        rows[:, f] = torch.where(empty, _NAN, rows[:, f])
    for f in (M2, SUMSQ):
        rows[:, f] = torch.where(empty, 0.0, rows[:, f])
    return rows


def _merge(parts: Tensor, reduce_sum, reduce_max, expand) -> Tensor:
    """Chan merge of partial rows ``[..., N_FIELDS]``; the reducers decide which rows go together.

    ``reduce_sum`` / ``reduce_max`` reduce the row axis of ``[..., k]`` stacks of columns, ``expand``
    broadcasts a per-tensor value back to the rows. Three reductions: extremes and sums, the mean
    (about the smallest element, so that constant data stays exact), then M2 about the final mean.
    """
    n = parts[..., COUNT]
    ok = n > 0
    extremes = torch.stack([-parts[..., MIN], parts[..., MAX], parts[..., ABSMAX]], -1)
    ext = reduce_max(torch.where(ok[..., None], extremes, -_INF))
    sumsq = torch.where(ok, parts[..., SUMSQ], 0.0)
    sums = reduce_sum(torch.stack([n, sumsq, parts[..., NONFINITE], parts[..., ZEROS]], -1))
    total, lo = sums[..., 0], -ext[..., 0]
    shift = torch.where(total > 0, lo, 0.0)
    mean = shift + reduce_sum(torch.where(ok, n * (parts[..., MEAN] - expand(shift)), 0.0)[..., None])[..., 0] / total
    dev = torch.where(ok, parts[..., MEAN] - expand(mean), 0.0)
    m2 = reduce_sum(torch.where(ok, parts[..., M2] + n * dev * dev, 0.0)[..., None])[..., 0]
    out = torch.stack([total, mean, m2, sums[..., 1], lo, ext[..., 1], ext[..., 2], sums[..., 2], sums[..., 3]], -1)
    return _finalize(out)


def merge_partials(parts: Tensor, owner: Tensor, n: int) -> Tensor:
    """Merge partial rows ``parts`` ``[m, N_FIELDS]`` into ``[n, N_FIELDS]``: row ``i`` goes to ``owner[i]``.

    Sums run in row order (``index_add_``, deterministic on CPU; on CUDA use the merge kernel or
    :func:`merge_stacked`). The reference of ``depthinit.kernels.stats._stats_merge_kernel``.
    """
    parts = parts.to(torch.float64)

    def reduce_sum(v):
        return v.new_zeros((n, v.shape[-1])).index_add_(0, owner, v)

    def reduce_max(v):
        init = torch.full((n, v.shape[-1]), -_INF, dtype=v.dtype, device=v.device)
        return init.scatter_reduce_(0, owner[:, None].expand_as(v), v, "amax")

    return _merge(parts, reduce_sum, reduce_max, lambda v: v[owner])


def merge_stacked(parts: Tensor) -> Tensor:
    """Merge ``[k, n, N_FIELDS]`` (k partial rows per tensor, e.g. one per rank) into ``[n, N_FIELDS]``.

    Dense reductions over dim 0 in a fixed order: deterministic on every device.
    """
    parts = parts.to(torch.float64)
    return _merge(parts, lambda v: v.sum(0), lambda v: v.amax(0), lambda v: v[None])


@torch.no_grad()
def stats_reference(tensors: Sequence[Tensor]) -> Tensor:
    """The oracle: ``[n, N_FIELDS]`` fp64 statistics of each tensor, one tensor at a time, exact two-pass fp64.

    Deterministic on every device; slow (about a dozen passes per tensor).
    """
    if not tensors:
        return torch.empty((0, N_FIELDS), dtype=torch.float64)
    return torch.cat([_rows_exact(_flat(t).reshape(1, -1)) for t in tensors])


# ---------------------------------------------------------------------------------------------------------
# CPU path
# ---------------------------------------------------------------------------------------------------------


def _exact_parts(segments: Sequence[Tensor], ids: Sequence[int]) -> tuple[list[Tensor], list[Tensor]]:
    """Exact fp64 partial rows of 1-D segments (any lengths and dtypes) and the owner ``ids`` of each row.

    Segments of one length and dtype are stacked (one row each); the others are cut into rows of 64
    elements plus one padded row for the remainder. Empty segments give no row.
    """
    parts, owners = [], []
    groups: dict[tuple[torch.dtype, int], list[int]] = {}
    for j, t in enumerate(segments):
        groups.setdefault((t.dtype, t.numel()), []).append(j)
    rest: dict[torch.dtype, list[int]] = {}
    for (dtype, numel), js in groups.items():
        if len(js) > 1 and 0 < numel <= _STACK_MAX:
            parts.append(_rows_exact(torch.stack([segments[j] for j in js])))
            owners.append(torch.tensor([ids[j] for j in js]))
        elif numel:
            rest.setdefault(dtype, []).extend(js)
    for js in rest.values():
        full = [(j, segments[j].numel() // _EXACT_ROW) for j in js]
        if any(r for _, r in full):
            views = [segments[j][: r * _EXACT_ROW].view(r, _EXACT_ROW) for j, r in full if r]
            parts.append(_rows_exact(torch.cat(views)))
            owners.append(torch.repeat_interleave(torch.tensor([ids[j] for j, r in full if r]),
                                                  torch.tensor([r for _, r in full if r])))  # fmt: skip
        rems = [(j, segments[j][r * _EXACT_ROW :]) for j, r in full if segments[j].numel() > r * _EXACT_ROW]
        if rems:
            lengths = torch.tensor([t.numel() for _, t in rems])
            valid = torch.arange(_EXACT_ROW)[None, :] < lengths[:, None]
            padded = torch.zeros(valid.shape, dtype=torch.float64)
            padded[valid] = torch.cat([t for _, t in rems]).to(torch.float64)
            parts.append(_rows_exact(padded, valid))
            owners.append(torch.tensor([ids[j] for j, _ in rems]))
    return parts, owners


def _readable(tensors: Sequence[Tensor]) -> list[Tensor]:
    """The same clear error on every backend for freed or resized storage (before anything reads memory), and
    negative-bit views (``x.conj().imag``) resolved to their values."""
    for t in tensors:
        cpu_kernel.check_storage(t)
    return [t.resolve_neg() if t.is_neg() else t for t in tensors]


def _cached_cpu_table(tensors: Sequence[Tensor], backend: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(table, handles)``: the C kernel's table of a list of CPU tensors measured recently
    (:func:`cpu_kernel.cached_table`) or None, and the tensors' :func:`tensor_meta.handles` it was looked up by
    (None where the C kernel does not measure them)."""
    if backend not in ("auto", "torch") or not tensors or cpu_kernel.library() is None:
        return None, None
    try:
        handles = tensor_meta.handles(tensors)
    except AttributeError:  # not all tensors: the checks that follow say what is wrong
        return None, None
    return cpu_kernel.cached_table(tensors, handles), handles


def _cpu_stats(tensors: Sequence[Tensor], handles: np.ndarray | None = None) -> Tensor:
    """``[n, N_FIELDS]`` for CPU tensors: the C kernel in one call, else the exact fp64 torch path."""
    if cpu_kernel.library() is not None:
        return cpu_kernel.cpu_stats(tensors, on_cpu=True, handles=handles)
    tensors = _readable(tensors)
    parts, owners = _exact_parts([_flat(t) for t in tensors], range(len(tensors)))
    if not parts:  # nothing but empty tensors
        parts, owners = [torch.zeros((0, N_FIELDS), dtype=torch.float64)], [torch.zeros(0, dtype=torch.long)]
    return merge_partials(torch.cat(parts), torch.cat(owners), len(tensors))


# ---------------------------------------------------------------------------------------------------------
# Triton path
# ---------------------------------------------------------------------------------------------------------

_LAUNCHES: OrderedDict = OrderedDict()
_MAX_LAUNCHES = 8


def _triton_stats(flats: Sequence[Tensor], out: Tensor | None = None) -> Tensor:
    """The fused kernels, with a small cache of prepared launches keyed by layout (pointers are updated)."""
    from depthinit.kernels.stats import StatsLaunch

    if not flats:
        return torch.zeros((0, N_FIELDS), dtype=torch.float64)
    key = StatsLaunch.layout_key(flats)
    launch = _LAUNCHES.pop(key, None) or StatsLaunch(flats)
    _LAUNCHES[key] = launch
    while len(_LAUNCHES) > _MAX_LAUNCHES:
        _LAUNCHES.popitem(last=False)
    return launch(flats, out)


# ---------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------


def _flat(t: Tensor) -> Tensor:
    """A 1-D contiguous view of ``t``'s elements in some order (statistics do not depend on order).

    Contiguous tensors and dense permutations (transposes) are read in place; other views are copied.
    """
    if t.is_contiguous():
        return t.view(-1)
    if cpu_kernel.is_dense_permutation(t):
        return t.as_strided((t.numel(),), (1,))
    return t.reshape(-1).contiguous()


def _check(name: str, t: Tensor) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"layer_stats: {name!r} is a {type(t).__name__}, not a tensor")
    if t.is_meta:
        raise ValueError(f"layer_stats: {name!r} is a meta tensor (no data); materialize the model first")
    if t.layout is not torch.strided:
        raise ValueError(f"layer_stats: {name!r} has layout {t.layout}; only dense (strided) tensors are supported")
    if t.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"layer_stats: {name!r} has dtype {t.dtype}; statistics are defined for floating tensors "
            f"{', '.join(str(d) for d in SUPPORTED_DTYPES)} (convert integer / bool tensors with .float())"
        )


_DEVICE, _DTYPE, _LAYOUT = (operator.attrgetter(a) for a in ("device", "dtype", "layout"))
_IS_META = operator.attrgetter("is_meta")
_SUPPORTED = frozenset(SUPPORTED_DTYPES)


def _all_valid(tensors: Sequence) -> bool:
    """What :func:`_check` checks, for all tensors at once (C-level maps); False: find the culprit with it."""
    return (
        all(map(isinstance, tensors, itertools.repeat(Tensor)))
        and set(map(_DTYPE, tensors)) <= _SUPPORTED
        and set(map(_LAYOUT, tensors)) <= {torch.strided}
        and not any(map(_IS_META, tensors))
    )


def _collect(x, grads: bool) -> tuple[list[str], list[Tensor]]:
    """Names and tensors of a module (parameters or their gradients), a list, or a dict."""
    if isinstance(x, nn.Module):
        names, tensors, seen = [], [], set()
        for name, p in x.named_parameters():
            t = p.grad if grads else p
            if t is None:
                continue
            local = _local(t)
            key = storage_key(local)
            if key is not None:
                if key in seen:  # tied weights that are distinct Parameter objects over one storage
                    continue
                seen.add(key)
            names.append(name)
            tensors.append(t)
        if grads and not tensors and any(p.requires_grad for p in x.parameters()):
            raise ValueError("layer_stats(model, grads=True): no parameter has a gradient yet; call "
                             "loss.backward() first")
        return names, tensors
    if grads:
        raise ValueError("layer_stats: grads=True needs an nn.Module (pass the gradients themselves otherwise)")
    if isinstance(x, Tensor):
        return ["0"], [x]
    if isinstance(x, Mapping):
        return [str(k) for k in x.keys()], list(x.values())
    if isinstance(x, Iterable):
        tensors = list(x)
        return _index_names(len(tensors)), tensors
    raise TypeError(f"layer_stats: expected an nn.Module, a list or a dict of tensors, got {type(x).__name__}")


@functools.lru_cache(maxsize=8)
def _index_names(n: int) -> tuple[str, ...]:
    return tuple(map(str, range(n)))


# ---------------------------------------------------------------------------------------------------------
# API
# ---------------------------------------------------------------------------------------------------------


class LayerStats:
    """Statistics of named tensors: ``data`` ``[n, N_FIELDS]`` fp64 on the tensors' device, ``names``.

    Properties return device tensors (no host sync): ``count mean var std rms l2 min max absmax
    nonfinite zeros numel``, with ``var = m2 / count`` (population variance), ``std = sqrt(var)``,
    ``rms = sqrt(sumsq / count)``, ``l2 = sqrt(sumsq)``, ``numel = count + nonfinite``.
    :meth:`to_records`, ``print`` and indexing by name copy to the host once.

    >>> s = layer_stats(model); s.std                      # device tensor, one value per parameter
    >>> s["fc.weight"]["std"], s.to_records()[0]["mean"]
    """

    def __init__(self, data: Tensor, names: Sequence[str]):
        if data.dim() != 2 or data.shape[1] != N_FIELDS or data.shape[0] != len(names):
            raise ValueError(f"LayerStats: data must be [len(names), {N_FIELDS}], got {tuple(data.shape)}")
        self.data = data
        self.names = list(names)

    def __len__(self) -> int:
        return len(self.names)

    def _field(self, f: int) -> Tensor:
        return self.data[:, f]

    count = property(lambda self: self._field(COUNT), doc="Number of finite elements.")
    mean = property(lambda self: self._field(MEAN), doc="Mean of the finite elements.")
    m2 = property(lambda self: self._field(M2), doc="Sum of squared deviations from the mean.")
    sumsq = property(lambda self: self._field(SUMSQ), doc="Sum of squares.")
    min = property(lambda self: self._field(MIN), doc="Smallest finite element.")
    max = property(lambda self: self._field(MAX), doc="Largest finite element.")
    absmax = property(lambda self: self._field(ABSMAX), doc="Largest absolute value of the finite elements.")
    nonfinite = property(lambda self: self._field(NONFINITE), doc="Number of NaN and +-Inf elements.")
    zeros = property(lambda self: self._field(ZEROS), doc="Number of elements equal to zero.")

    @property
    def var(self) -> Tensor:
        """Population variance ``m2 / count`` (divide by N, not N - 1)."""
        return self.data[:, M2] / self.data[:, COUNT]

    @property
    def std(self) -> Tensor:
        return self.var.sqrt()

    @property
    def rms(self) -> Tensor:
        return (self.data[:, SUMSQ] / self.data[:, COUNT]).sqrt()

    @property
    def l2(self) -> Tensor:
        return self.data[:, SUMSQ].sqrt()

    @property
    def numel(self) -> Tensor:
        return self.data[:, COUNT] + self.data[:, NONFINITE]

    RECORD_KEYS = ("numel", "count", "mean", "var", "std", "rms", "l2", "min", "max", "absmax", "nonfinite", "zeros")

    def to_records(self) -> list[dict]:
        """One dict per tensor: ``name`` and :attr:`RECORD_KEYS` as Python numbers (one host sync)."""
        cols = torch.stack([getattr(self, k) for k in self.RECORD_KEYS], 1).cpu().tolist()
        ints = {"numel", "count", "nonfinite", "zeros"}
        return [
            {"name": name, **{k: (int(v) if k in ints else v) for k, v in zip(self.RECORD_KEYS, row)}}
            for name, row in zip(self.names, cols)
        ]

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"LayerStats: no tensor named {name!r}") from None

    def __getitem__(self, key: str | int) -> dict:
        i = self.index(key) if isinstance(key, str) else int(key)
        return LayerStats(self.data[i : i + 1], [self.names[i]]).to_records()[0]

    def __iter__(self):
        return iter(self.to_records())

    def __repr__(self) -> str:
        recs = self.to_records()
        cols = ("numel", "mean", "std", "rms", "min", "max", "absmax", "nonfinite", "zeros")
        head = ["name", *cols]
        body = [[r["name"]] + [f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols] for r in recs]
        lines = align([head, *body], right=range(1, len(head)), rule=False)
        return f"LayerStats({len(self)} tensors)\n" + "\n".join(lines)

    __str__ = __repr__

    @staticmethod
    def cat(items: Sequence[LayerStats]) -> LayerStats:
        """Concatenate the rows of several LayerStats (same device), names in order."""
        items = list(items)
        if not items:
            return LayerStats(torch.zeros((0, N_FIELDS), dtype=torch.float64), [])
        return LayerStats(torch.cat([s.data for s in items]), [n for s in items for n in s.names])


def cat_stats(items: Sequence[LayerStats]) -> LayerStats:
    """Concatenate several :class:`LayerStats` (see :meth:`LayerStats.cat`)."""
    return LayerStats.cat(items)


def _resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"layer_stats: backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "reference"
        return "triton"
    return "torch" if device.type == "cpu" else "reference"


@torch.no_grad()
def tensor_stats(tensors: Sequence[Tensor], backend: str = "auto") -> Tensor:
    """``[n, N_FIELDS]`` fp64 statistics of plain (local) tensors of one device; see :func:`layer_stats`."""
    if not tensors:
        return torch.zeros((0, N_FIELDS), dtype=torch.float64)
    table, handles = _cached_cpu_table(tensors, backend)
    if table is not None:
        return cpu_kernel.run(table)
    return _measure(tensors, backend, handles)


@torch.no_grad()
def _measure(tensors: Sequence[Tensor], backend: str, handles: np.ndarray | None) -> Tensor:
    """:func:`tensor_stats` of a non-empty list without a cached table (``handles``: from the lookup)."""
    devices = set(map(_DEVICE, tensors))
    device = tensors[0].device
    if len(devices) > 1:
        raise ValueError(
            f"layer_stats: tensors on several devices {sorted(map(str, devices))}; measure each device "
            "separately and join the results with LayerStats.cat"
        )
    backend = _resolve_backend(backend, device)
    if backend == "torch" and device.type == "cpu":
        return _cpu_stats(tensors, handles)  # the C kernel checks storage and resolves negative-bit views itself
    tensors = _readable(tensors)
    if backend == "triton":
        if any(t.dtype == torch.float64 for t in tensors):
            raise TypeError("layer_stats: the triton backend measures fp32 / fp16 / bf16; use backend='torch' for fp64")
        return _triton_stats([t if t.is_contiguous() else _flat(t) for t in tensors])
    return stats_reference([_flat(t) for t in tensors])  # torch backend off CPU: deterministic per-tensor reductions


@torch.no_grad()
def layer_stats(
    x: nn.Module | Sequence[Tensor] | Mapping[str, Tensor] | Tensor,
    *,
    grads: bool = False,
    backend: str = "auto",
    group=None,
) -> LayerStats:
    r"""Per-tensor count, mean, variance, RMS, extremes, non-finite and zero counts, in one pass.

    The statistics contract of DESIGN.md: per chunk, ``mean`` and ``M2`` exactly from the loaded data,
    merged across chunks with Chan et al.'s formula in fp64 (never :math:`E[x^2] - E[x]^2`); NaN and
    :math:`\pm\infty` are counted in ``nonfinite`` and excluded from every other field; variance is the
    population variance :math:`M_2 / N`. Nothing is copied to the host: :class:`LayerStats` holds an
    ``[n, 9]`` fp64 tensor on the tensors' device until it is printed or turned into records.

    Args:
        x: an ``nn.Module`` (its parameters, each storage once for tied weights), a list of tensors
            (named ``"0"``, ``"1"``, ...) or a dict name -> tensor. Floating tensors only (fp32, fp16,
            bf16; fp64 on the torch backends); any layout of strides.
        grads: measure ``p.grad`` of each parameter instead (parameters without a gradient are skipped).
        backend: ``"auto"`` (CUDA: Triton kernels, CPU: torch path), ``"triton"`` (on CPU tensors: the
            Triton interpreter, for tests), ``"torch"``, ``"reference"`` (eager fp64 oracle).
        group: process group for DTensors (default: the world). When any tensor is a DTensor, the
            local shards are measured and ONE ``all_gather`` of the partial rows gives the exact global
            figures of every DTensor on every rank (replicas counted once); plain tensors stay local.

    Example::

        >>> stats = depthinit.stats.layer_stats(model)
        >>> print(stats)            # aligned table; stats.std is a device tensor
    """
    names, tensors = _collect(x, grads)
    cls = dtensor_class()  # one isinstance per tensor only when some tensor's type is a DTensor
    sharded = cls is not None and any(issubclass(k, cls) for k in set(map(type, tensors)))
    is_dt = [isinstance(t, cls) for t in tensors] if sharded else [False]
    locals_ = [t.to_local() if d else t for t, d in zip(tensors, is_dt)] if any(is_dt) else tensors
    table, handles = _cached_cpu_table(locals_, backend)
    if table is not None:  # the same CPU tensors as a recent call, still as they were: checked then
        return LayerStats(cpu_kernel.run(table), names)
    if not _all_valid(locals_):
        for name, t in zip(names, locals_):
            _check(name, t)
    data = _measure(locals_, backend, handles) if locals_ else tensor_stats(locals_)
    if any(is_dt):
        contrib = [contributes(t) for t in tensors]
        data = merge_sharded(data, is_dt, contrib, merge_stacked, group)  # one all_gather
    return LayerStats(data, names)


__all__ = [
    "FIELDS", "N_FIELDS", "COUNT", "MEAN", "M2", "SUMSQ", "MIN", "MAX", "ABSMAX", "NONFINITE", "ZEROS",
    "LayerStats", "layer_stats", "cat_stats", "tensor_stats", "stats_reference", "merge_partials",
    "merge_stacked", "BACKENDS",
]  # fmt: skip
