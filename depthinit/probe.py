"""Signal-propagation probe: see the forward and backward variance profile of a model before training.

For every probed module (by default the weight-bearing leaf modules: Linear, Conv, ... in the order the
forward pass calls them) the probe measures, at initialization, on one example batch:

* ``fwd``: the variance of the module's output (the pre-activation of an MLP layer);
* ``post``: for plain MLPs (an ``nn.Sequential`` of Linear layers and element-wise activations), the
  variance after the activation;
* ``bwd``: the variance of the gradient of the loss with respect to the module's output.

The captured tensors of one pass go to one :func:`depthinit.layer_stats` call (forward) and one more
(backward): one fused statistics launch per pass, not one per layer.

For plain MLPs the probe also gives the mean-field prediction (Glorot & Bengio 2010; He et al. 2015): with
``q_l`` the variance of layer l's output, ``s_l = E[W_l²]`` from the plan's distribution and φ the
activation,

    q_1 = fan_in_1 · s_1 · E[x²] + E[b_1²],      q_l = fan_in_l · s_l · E[φ(h_{l-1})²] + E[b_l²],
    g_l = fan_out_{l+1} · s_{l+1} · g_{l+1} · E[φ'(h_l)²]      (backward, from the measured g_L),

with ``h ~ N(0, q)``: ``E[relu(h)²] = q/2``, ``E[relu'(h)²] = 1/2`` (so He's ``s = 2/fan_in`` keeps
``q_l = q_{l-1}`` and Xavier's ``s = 1/fan_in`` on square layers halves it at every layer), identity ``q`` and
``1``; tanh and any other element-wise activation by Gauss–Hermite quadrature. The prediction is the
expectation over the random weights; one finite-width network fluctuates around it (see the tests).

Verdict per initialization: the profile of ``fwd_l / fwd_1`` and ``bwd_l / bwd_L`` (the end-to-end ratios
are their last / first entries) is ``vanishing`` when it drops below ``1/threshold``, ``exploding`` when it
rises above ``threshold`` (default 100: two decades of variance, ten times in standard deviation), ``non-finite``
when an activation or gradient overflowed, else ``healthy``.

Example:
    >>> report = di.probe(mlp(54, 256), torch.randn(256, 256), schemes=["he", "xavier", "depth_aware:K=1"])
    >>> print(report.table()); report.plot("probe.png")
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .outputs import first_floating, primary_output, residual_blocks
from .plan import InitPlan, PlanRow
from .plan import plan as make_plan
from .roles import weight_bearing

DEFAULT_THRESHOLD = 100.0
BACKWARD_DOC = "standard-normal backward: d(loss)/d(output) ~ N(0, 1) i.i.d. (seeded), i.e. loss = <output, r>"
_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Identity, nn.GELU, nn.SiLU, nn.Sigmoid, nn.ELU, nn.SELU,
                nn.Softplus, nn.Hardtanh, nn.ReLU6, nn.Mish, nn.CELU, nn.Tanhshrink, nn.Softsign)

SchemeSpec = str | tuple[str, dict]


# ------------------------------------------------------------------------------------------ scheme specs


def _parse_value(text: str) -> Any:
    t = text.strip()
    for conv in (int, float):
        try:
            return conv(t)
        except ValueError:
            pass
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    return t


def parse_scheme(spec: SchemeSpec) -> tuple[str, dict]:
    """One scheme spec -> ``(name, options)``.

    Accepts a name (``"he"``), a ``(name, options)`` pair, or ``"name:key=value<sep>key=value"`` where
    ``<sep>`` is ``+``, ``;`` or ``,`` (a single spec has no ambiguity): ``"depth_aware:K=1,distribution=uniform"``.
    Values are read as int, float, true/false, else kept as strings. Names and options are checked by
    :func:`depthinit.plan`.
    """
    if isinstance(spec, tuple):
        if len(spec) != 2 or not isinstance(spec[0], str) or not isinstance(spec[1], dict):
            raise ValueError(f"a scheme pair must be (name, options dict), got {spec!r}")
        return spec[0], dict(spec[1])
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"bad scheme spec {spec!r}: expected e.g. 'he' or 'depth_aware:K=1+distribution=uniform'")
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    if not name or "=" in name:
        raise ValueError(f"bad scheme spec {spec!r}: expected 'name' or 'name:key=value+key=value'")
    opts: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in re.split(r"[+;,]", rest))):
        key, eq, val = item.partition("=")
        if not eq or not key.strip() or not val.strip():
            raise ValueError(f"bad option {item!r} in scheme spec {spec!r}: expected key=value")
        opts[key.strip()] = _parse_value(val)
    return name, opts


def parse_schemes(text: str) -> list[tuple[str, dict]]:
    """A comma-separated list of scheme specs (the CLI's ``--schemes``) -> ``[(name, options), ...]``.

    Syntax: ``scheme[:key=value[+key=value...]][,scheme...]``. Schemes are separated by ``,``; the options
    of one scheme follow ``:`` and are separated by ``+`` (or ``;``, which needs shell quoting). A comma
    item that holds ``=`` but no ``:`` is not a scheme name (names never contain ``=``): it continues the
    options of the scheme before it, so ``depth_aware:K=1,distribution=uniform`` also reads as one scheme.

    Example:
        >>> parse_schemes("he,xavier:distribution=uniform,depth_aware:K=1+distribution=uniform")
        [('he', {}), ('xavier', {'distribution': 'uniform'}), ('depth_aware', {'K': 1, 'distribution': 'uniform'})]
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty scheme list; expected e.g. he,xavier,depth_aware:K=1")
    out: list[tuple[str, dict]] = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            raise ValueError(f"empty item in scheme list {text!r}")
        if "=" in item and ":" not in item:
            if not out:
                raise ValueError(f"scheme list {text!r} starts with an option {item!r}: expected a scheme name first")
            out[-1][1].update(parse_scheme("x:" + item)[1])
        else:
            out.append(parse_scheme(item))
    return out


def scheme_label(name: str, options: dict) -> str:
    """Canonical spec string, e.g. ``depth_aware:K=1+distribution=uniform`` (readable by :func:`parse_scheme`)."""
    return name if not options else name + ":" + "+".join(f"{k}={v}" for k, v in options.items())


# ------------------------------------------------------------------------------------------ structure


def _default_modules(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if weight_bearing(m) and not any(True for _ in m.children())]


def _resolve_modules(model: nn.Module, modules: Sequence[str | nn.Module] | None) -> list[str]:
    if modules is None:
        names = _default_modules(model)
        if not names:
            raise ValueError(
                f"{type(model).__name__} has no weight-bearing leaf modules (Linear, Conv, ...) to probe; pass "
                "modules=[names] to choose what to measure"
            )
        return names
    by_id = {id(m): n for n, m in model.named_modules()}
    valid = dict(model.named_modules())
    names = []
    for m in modules:
        if isinstance(m, nn.Module):
            if id(m) not in by_id:
                raise ValueError(f"module {type(m).__name__} given in modules= is not part of the model")
            names.append(by_id[id(m)])
        elif isinstance(m, str) and m in valid:
            names.append(m)
        else:
            some = ", ".join(list(valid)[1:6])
            raise ValueError(f"modules=: {m!r} names no submodule of the model (e.g. {some}, ...)")
    if not names:
        raise ValueError("modules= is empty: nothing to probe")
    return names


def mlp_layers(model: nn.Module) -> list[tuple[str, nn.Linear, nn.Module | None]] | None:
    """``[(linear name, Linear, activation or None), ...]`` if ``model`` is a plain MLP (an ``nn.Sequential``
    of Linear layers each optionally followed by one element-wise activation), else None."""
    if not isinstance(model, nn.Sequential):
        return None
    layers: list[list] = []
    for name, m in model._modules.items():
        if isinstance(m, nn.Linear):
            layers.append([name, m, None])
        elif isinstance(m, _ELEMENTWISE) and layers and layers[-1][2] is None:
            layers[-1][2] = m
        else:
            return None
    return [tuple(x) for x in layers] or None


# ------------------------------------------------------------------------------------------ theory

_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(96)
_GH_WEIGHTS = _GH_WEIGHTS / math.sqrt(2 * math.pi)


def activation_moments(act: nn.Module | None, q: float) -> tuple[float, float, float]:
    """``(E[φ(h)²], E[φ(h)], E[φ'(h)²])`` for ``h ~ N(0, q)``.

    Closed forms for identity (``q, 0, 1``), ReLU (``q/2, sqrt(q/2π), 1/2``) and leaky ReLU with slope a
    (``q(1+a²)/2, (1-a)sqrt(q/2π), (1+a²)/2``); any other element-wise module by 96-point Gauss–Hermite
    quadrature in float64 (derivative by autograd), exact to ~1e-12 for smooth activations such as tanh.
    """
    if not (q >= 0 and math.isfinite(q)):
        return (math.nan, math.nan, math.nan)
    if act is None or isinstance(act, nn.Identity):
        return q, 0.0, 1.0
    if isinstance(act, (nn.ReLU, nn.LeakyReLU)):
        a = act.negative_slope if isinstance(act, nn.LeakyReLU) else 0.0
        return q * (1 + a * a) / 2, (1 - a) * math.sqrt(q / (2 * math.pi)), (1 + a * a) / 2
    z = torch.tensor(_GH_NODES * math.sqrt(q), dtype=torch.float64, requires_grad=True)
    w = torch.tensor(_GH_WEIGHTS, dtype=torch.float64)
    with torch.enable_grad():
        y = act(z)
        (dy,) = torch.autograd.grad(y.sum(), z)
    y = y.detach()
    return float((w * y * y).sum()), float((w * y).sum()), float((w * dy * dy).sum())


def row_second_moment(row: PlanRow) -> float | None:
    """``E[w²]`` of the distribution a plan row draws from (None for rows left as they are)."""
    d, m, s = row.distribution, row.mean, row.std
    if d == "normal":
        return m * m + s * s
    if d == "constant":
        return m * m
    if d == "uniform":
        lo, hi = row.low, row.high
        return (lo * lo + lo * hi + hi * hi) / 3.0
    if d == "trunc_normal":
        if s == 0:
            return m * m
        a, b = (row.low - m) / s, (row.high - m) / s
        pdf = lambda t: math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
        mass = 0.5 * (math.erf(b / math.sqrt(2)) - math.erf(a / math.sqrt(2)))
        mu = (pdf(a) - pdf(b)) / mass
        var = 1 + (a * pdf(a) - b * pdf(b)) / mass - mu * mu
        return (m + s * mu) ** 2 + s * s * var
    if d == "orthogonal":  # gain·Q: ||Qx|| = ||x|| (tall) or E||Qx||² = rows/cols·||x||² (wide)
        rows, cols = row.shape[0], math.prod(row.shape[1:])
        return s * s / max(rows, cols)
    return None


def mlp_theory(
    layers: Sequence[tuple[str, nn.Linear, nn.Module | None]],
    w2: Sequence[float],
    b2: Sequence[float],
    input_m2: float,
    last_grad_var: float,
) -> tuple[list[float], list[float | None], list[float]]:
    """Mean-field prediction for a plain MLP: ``(fwd, post, bwd)`` per Linear layer (see the module doc).

    ``w2[l]``/``b2[l]``: second moments of layer l's weight/bias entries; ``input_m2``: ``E[x²]`` of the
    input batch; ``last_grad_var``: the gradient variance at the last layer's output (the backward start).
    """
    fwd: list[float] = []
    post: list[float | None] = []
    m2 = input_m2
    for (_, lin, act), s, b in zip(layers, w2, b2):
        q = lin.in_features * s * m2 + b
        e2, e1, _ = activation_moments(act, q)
        fwd.append(q)
        post.append(None if act is None else e2 - e1 * e1)
        m2 = e2
    bwd = [math.nan] * len(layers)
    bwd[-1] = last_grad_var
    for i in range(len(layers) - 2, -1, -1):
        nxt = layers[i + 1][1]
        _, _, d2 = activation_moments(layers[i][2], fwd[i])
        bwd[i] = nxt.out_features * w2[i + 1] * bwd[i + 1] * d2
    return fwd, post, bwd


# ------------------------------------------------------------------------------------------ measurement


def _first_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        for o in out:
            t = _first_tensor(o)
            if t is not None:
                return t
    if isinstance(out, dict):
        for o in out.values():
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


def _stats_host(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[float, float, float]]:
    """``{name: (var, mean, n_nonfinite)}`` from ONE ``layer_stats`` call and one host transfer."""
    if not tensors:
        return {}
    from .stats import layer_stats

    st = layer_stats(tensors)
    host = torch.stack([st.var, st.mean, st.nonfinite]).double().cpu().tolist()
    return {n: (host[0][i], host[1][i], host[2][i]) for i, n in enumerate(st.names)}


def _capture(
    model: nn.Module,
    x: Any,
    names: Sequence[str],
    *,
    inputs_of: Sequence[str] = (),
    backward: bool = False,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
    seed: int = 0,
) -> tuple[list[str], dict[str, torch.Tensor], dict[str, torch.Tensor], Any]:
    """Run ``model(x)`` with hooks: the output of each module in ``names`` (first call only), the input of
    each module in ``inputs_of`` (keys ``"<name>:in"``), and with ``backward`` the gradient with respect to
    each captured output. Returns ``(call order, forward tensors, gradients, model output)``.

    Parameters' ``.grad`` are left untouched (``torch.autograd.grad``).
    """
    mods = dict(model.named_modules())
    order: list[str] = []
    fwd: dict[str, torch.Tensor] = {}
    grads: dict[str, torch.Tensor] = {}
    handles = []

    def out_hook(name: str):
        def hook(_m, _inp, out):
            if name in fwd:
                return
            t = first_floating(out)
            if t is None:
                return
            order.append(name)
            fwd[name] = t.detach().clone()  # clone: an in-place activation may overwrite the output
            if backward and t.requires_grad:
                t.register_hook(lambda g: grads.setdefault(name, g.detach()))

        return hook

    def in_hook(name: str):
        def hook(_m, args):
            key = name + ":in"
            t = _first_tensor(args)
            if key not in fwd and t is not None:
                fwd[key] = t.detach().clone()

        return hook

    try:
        for n in names:
            handles.append(mods[n].register_forward_hook(out_hook(n)))
        for n in inputs_of:
            handles.append(mods[n].register_forward_pre_hook(in_hook(n)))
        out = None
        with torch.enable_grad() if backward else torch.no_grad():
            out = model(x)
            if backward:
                wrt = [p for p in model.parameters() if p.requires_grad]
                if loss_fn is None:  # the standard-normal backward from the output (its logits if it has any)
                    y = primary_output(out)
                    if y is None:
                        raise ValueError(f"the model's output ({type(out).__name__}) holds no floating-point tensor "
                                         "to send the standard-normal gradient back from; pass loss_fn=")
                    g = torch.Generator().manual_seed(seed)
                    r = torch.randn(y.shape, generator=g, dtype=torch.float32).to(device=y.device, dtype=y.dtype)
                    y, grad_outputs, what = y, r, "the model's output"
                else:
                    y = loss_fn(out)
                    if not (isinstance(y, torch.Tensor) and y.numel() == 1 and y.is_floating_point()):
                        raise ValueError(f"loss_fn must return a floating-point scalar tensor, got "
                                         f"{type(y).__name__}{tuple(y.shape) if isinstance(y, torch.Tensor) else ''}")
                    grad_outputs, what = None, "loss_fn(output)"
                if not (y.requires_grad and wrt):
                    raise ValueError(f"{what} does not depend on any parameter that requires grad")
                torch.autograd.grad(y, wrt, grad_outputs=grad_outputs, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    return order, fwd, grads, out


# ------------------------------------------------------------------------------------------ results


@dataclass
class LayerProbe:
    """Measured (and, for plain MLPs, predicted) variances of one probed module."""

    index: int
    name: str
    fwd: float
    bwd: float
    post: float | None = None
    theory_fwd: float | None = None
    theory_post: float | None = None
    theory_bwd: float | None = None
    nonfinite: int = 0


def _verdict_of(ratios: Sequence[float], threshold: float) -> str:
    lo, hi = min(ratios), max(ratios)
    bad = [w for w, c in (("exploding", hi > threshold), ("vanishing", lo < 1.0 / threshold)) if c]
    return "+".join(bad) if bad else "healthy"


@dataclass
class SchemeProbe:
    """The probe of one initialization: per-layer records, end-to-end ratios and the verdict."""

    label: str
    scheme: str | None
    options: dict
    layers: list[LayerProbe]
    input_m2: float
    threshold: float = DEFAULT_THRESHOLD
    plan: InitPlan | None = field(default=None, repr=False)
    stream: str = "layers"  # "residual": the rows are residual blocks (their outputs, the residual stream)

    def _ratios(self, which: str) -> list[float]:
        v = [getattr(r, which) for r in self.layers]
        ref = v[0] if which == "fwd" else v[-1]
        if not ref > 0:
            return [0.0]
        return [x / ref for x in v]

    @property
    def forward_gain(self) -> float:
        """``fwd_L / fwd_1``: end-to-end activation-variance ratio (last probed output over first)."""
        return self._ratios("fwd")[-1]

    @property
    def backward_gain(self) -> float:
        """``bwd_1 / bwd_L``: end-to-end gradient-variance ratio (first probed layer over last)."""
        return self._ratios("bwd")[0]

    @property
    def theory_forward_gain(self) -> float | None:
        t = [r.theory_fwd for r in self.layers]
        return None if t[0] is None or not t[0] > 0 else t[-1] / t[0]

    @property
    def theory_backward_gain(self) -> float | None:
        t = [r.theory_bwd for r in self.layers]
        return None if t[-1] is None or not t[-1] > 0 else t[0] / t[-1]

    @property
    def forward_verdict(self) -> str:
        return self._verdict("fwd")

    @property
    def backward_verdict(self) -> str:
        return self._verdict("bwd")

    def _verdict(self, which: str) -> str:
        vals = [getattr(r, which) for r in self.layers]
        if any(r.nonfinite for r in self.layers) or not all(math.isfinite(v) for v in vals):
            return "non-finite"
        return _verdict_of(self._ratios(which), self.threshold)

    @property
    def verdict(self) -> str:
        """``healthy`` if forward and backward are; else the forward/backward verdicts (identical ones once)."""
        f, b = self.forward_verdict, self.backward_verdict
        if f == b:
            return f
        if "healthy" in (f, b):
            return b if f == "healthy" else f
        return f"fwd {f}, bwd {b}"

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "scheme": self.scheme,
            "options": self.options,
            "input_m2": self.input_m2,
            "threshold": self.threshold,
            "forward_gain": self.forward_gain,
            "backward_gain": self.backward_gain,
            "theory_forward_gain": self.theory_forward_gain,
            "theory_backward_gain": self.theory_backward_gain,
            "verdict": self.verdict,
            "stream": self.stream,
            "layers": [asdict(r) for r in self.layers],
        }


def _fmt(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


def align(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of strings as left-aligned columns, a dashed rule under the first (header) row."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for i, r in enumerate(rows):
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


@dataclass
class ProbeReport:
    """What :func:`probe` measured: one :class:`SchemeProbe` per initialization."""

    results: list[SchemeProbe]
    model: str = ""
    backward: str = BACKWARD_DOC
    threshold: float = DEFAULT_THRESHOLD

    def __getitem__(self, label: str) -> SchemeProbe:
        for r in self.results:
            if r.label == label:
                return r
        raise KeyError(f"no probe result {label!r}; have: {', '.join(r.label for r in self.results)}")

    def __iter__(self):
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @property
    def verdicts(self) -> dict[str, str]:
        return {r.label: r.verdict for r in self.results}

    def summary(self) -> str:
        """One row per initialization: verdict, end-to-end forward/backward ratios (measured, and the theory
        where there is one: the theory columns are left out when no initialization has a prediction)."""
        theory = any(r.theory_forward_gain is not None for r in self.results)
        head = ("scheme", "verdict", "fwd gain", "theory", "bwd gain", "theory", "fwd range", "bwd range")
        keep = [i for i in range(len(head)) if theory or head[i] != "theory"]
        rows = [tuple(head[i] for i in keep)]
        for r in self.results:
            f, b = r._ratios("fwd"), r._ratios("bwd")
            row = (r.label, r.verdict, _fmt(r.forward_gain), _fmt(r.theory_forward_gain), _fmt(r.backward_gain),
                   _fmt(r.theory_backward_gain), f"{_fmt(min(f))}..{_fmt(max(f))}", f"{_fmt(min(b))}..{_fmt(max(b))}")
            rows.append(tuple(row[i] for i in keep))
        return "\n".join(align(rows))

    def layer_table(self, label: str | None = None) -> str:
        """Per-layer variances of one initialization (the first by default), with the theory where known."""
        r = self.results[0] if label is None else self[label]
        rows = [("l", "module", "fwd var", "theory", "post var", "theory", "grad var", "theory")]
        for x in r.layers:
            rows.append((str(x.index), x.name, _fmt(x.fwd), _fmt(x.theory_fwd), _fmt(x.post), _fmt(x.theory_post),
                         _fmt(x.bwd), _fmt(x.theory_bwd)))
        return "\n".join([f"{r.label}: input E[x^2]={_fmt(r.input_m2)}", *align(rows)])

    def table(self, detail: bool = False) -> str:
        """The summary table (with what each column means); with ``detail`` every initialization's layers."""
        residual = any(r.stream == "residual" for r in self.results)
        unit = "block" if residual else "layer"
        out = [
            f"probe of {self.model}" if self.model else "probe",
            f"backward: {self.backward}",
            ("rows: the residual stream: the output of each residual block and the gradient w.r.t. it (the "
             "branches inside a block add to it; their own outputs are not compared across depth)") if residual
            else "rows: each probed layer's output and the gradient w.r.t. it",
            f"fwd gain: output variance of the last {unit} / first {unit}; bwd gain: gradient variance at the "
            f"first {unit} / last {unit} (< 1: the gradient shrinks toward the input); ranges: the same ratio "
            f"at every {unit}",
            "theory: the mean-field prediction of the same gain from the weights' variances (plain MLPs only)"
            if any(r.theory_forward_gain is not None for r in self.results) else
            "theory: none (the mean-field prediction covers plain MLPs only)",
            f"verdict: vanishing / exploding when a range leaves [1/{self.threshold:g}, {self.threshold:g}]",
            self.summary(),
        ]
        if detail:
            for r in self.results:
                out += ["", self.layer_table(r.label)]
        return "\n".join(out)

    __str__ = table

    def to_dict(self) -> dict:
        return {"model": self.model, "backward": self.backward, "threshold": self.threshold,
                "results": [r.to_dict() for r in self.results]}

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=True)

    def plot(self, path: str, title: str | None = None) -> str:
        """Forward (module output) and backward (output gradient) variance per layer, log scale: one color
        per initialization, measured solid, theory dashed. Writes a PNG (matplotlib, Agg) and returns ``path``."""
        fig, axes = figure(1, 2, figsize=(13, 5.2))
        from matplotlib.lines import Line2D

        colors = COLORS
        any_theory = False
        for i, r in enumerate(self.results):
            c = colors[i % len(colors)]
            xs = [x.index for x in r.layers]
            for ax, key in ((axes[0], "fwd"), (axes[1], "bwd")):
                ys = [_positive(getattr(x, key)) for x in r.layers]
                ax.plot(xs, ys, "-", color=c, lw=1.8, marker="o", ms=2.5, label=f"{r.label} ({r.verdict})")
                th = [_positive(getattr(x, "theory_" + key)) for x in r.layers]
                if any(t is not None and not math.isnan(t) for t in th):
                    any_theory = True
                    ax.plot(xs, [math.nan if t is None else t for t in th], "--", color=c, lw=1.3, alpha=0.9)
        axes[0].set_title("forward: variance of each layer's output")
        axes[1].set_title("backward: variance of the gradient w.r.t. each layer's output")
        names = [(x.index, x.name) for x in self.results[0].layers] if self.results else []
        for ax in axes:
            ax.set_yscale("log")
            _layer_axis(ax, names)
            ax.set_ylabel("variance")
            ax.grid(True, which="major", alpha=0.35)
            lo, hi = ax.get_ylim()
            if hi / max(lo, 1e-300) < 100:  # keep at least two decades visible: flat lines look flat
                mid = math.sqrt(lo * hi)
                ax.set_ylim(mid / 10, mid * 10)
        handles, labels = axes[0].get_legend_handles_labels()
        style = [Line2D([], [], color="k", lw=1.8, ls="-"), Line2D([], [], color="k", lw=1.3, ls="--")]
        if any_theory:
            handles, labels = handles + style, labels + ["measured", "theory (mean field)"]
        axes[0].legend(handles, labels, fontsize=8, loc="best")
        fig.suptitle(title or (f"signal propagation at init: {self.model}" if self.model else "signal propagation"))
        fig.savefig(path, dpi=110)
        return path


def _layer_axis(ax, names: Sequence[tuple[int, str]], max_named: int = 24) -> None:
    """Integer layer ticks; up to ``max_named`` layers are labelled with their module names."""
    from matplotlib.ticker import MaxNLocator

    if names and len(names) <= max_named and not all(n.isdigit() for _, n in names):  # Sequential: indices
        ax.set_xticks([i for i, _ in names], [f"{i}  {n}" for i, n in names], rotation=60, ha="right", fontsize=7,
                      rotation_mode="anchor")
        ax.set_xlabel("layer (probed module)")
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ends = f"; layer 1 is module '{names[0][1]}', layer {names[-1][0]} is '{names[-1][1]}'" if names else ""
        ax.set_xlabel(f"layer (probed modules in forward order{ends})")


COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")  # matplotlib's tab10


def figure(nrows: int, ncols: int, figsize: tuple[float, float], layout: str | None = "constrained", **kw):
    """``(Figure, axes)`` drawn on the Agg canvas without pyplot (no display, no global figure state); a clear
    error when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("figures need matplotlib: pip install 'depthinit[plots]' (or matplotlib)") from None
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(nrows, ncols, **kw)


def _positive(v: float | None) -> float:
    return math.nan if v is None or not (v > 0) else v


# ------------------------------------------------------------------------------------------ probe


def _measure(model: nn.Module, x: Any, names: list[str], layers, loss_fn, seed: int,
             w2: list[float] | None, b2: list[float] | None) -> tuple[list[LayerProbe], float]:
    inputs_of = [lname for lname, _, _ in layers[1:]] if layers else []
    order, fwd, grads, out = _capture(model, x, names, inputs_of=inputs_of, backward=True, loss_fn=loss_fn, seed=seed)
    if layers and isinstance(out, torch.Tensor) and layers[-1][2] is not None:
        fwd[layers[-1][0] + ":post"] = out.detach()  # the model output is the last activation's output
    missing = [n for n in names if n not in fwd]
    if len(missing) == len(names):
        raise ValueError("none of the probed modules ran during the forward pass")
    fs = _stats_host(fwd)  # one fused call for every captured activation
    gs = _stats_host(grads)  # one fused call for every captured gradient
    post: dict[str, float] = {}
    if layers:
        for i, (lname, _, act) in enumerate(layers):
            if act is None:
                continue
            key = layers[i + 1][0] + ":in" if i + 1 < len(layers) else lname + ":post"
            if key in fs:
                post[lname] = fs[key][0]
    recs = []
    for i, n in enumerate(order):
        v, _, nf = fs[n]
        gv, _, gnf = gs.get(n, (math.nan, 0.0, 0.0))
        recs.append(LayerProbe(i + 1, n, v, gv, post.get(n), nonfinite=int(nf + gnf)))
    xt = _first_tensor(x)
    input_m2 = float(xt.detach().double().pow(2).mean()) if xt is not None and xt.is_floating_point() else math.nan
    if layers and len(recs) == len(layers) and w2 is not None:
        tf, tp, tb = mlp_theory(layers, w2, b2, input_m2, recs[-1].bwd)
        for r, a, b, c in zip(recs, tf, tp, tb):
            r.theory_fwd, r.theory_post, r.theory_bwd = a, b, c
    return recs, input_m2


def _plan_moments(p: InitPlan, layers) -> tuple[list[float], list[float]] | None:
    w2, b2 = [], []
    for lname, lin, _ in layers:
        try:
            w = row_second_moment(p[f"{lname}.weight"])
            b = 0.0 if lin.bias is None else row_second_moment(p[f"{lname}.bias"])
        except KeyError:
            return None
        if w is None or b is None:
            return None
        w2.append(w)
        b2.append(b)
    return w2, b2


def _measured_moments(layers) -> tuple[list[float], list[float]]:
    tensors: dict[str, torch.Tensor] = {}
    for lname, lin, _ in layers:
        tensors[lname + ".weight"] = lin.weight.detach()
        if lin.bias is not None:
            tensors[lname + ".bias"] = lin.bias.detach()
    fs = _stats_host(tensors) if tensors else {}
    m2 = {n: v + m * m for n, (v, m, _) in fs.items()}
    return [m2[f"{n}.weight"] for n, _, _ in layers], [m2.get(f"{n}.bias", 0.0) for n, _, _ in layers]


def _check_input(example_input: Any) -> None:
    if _first_tensor(example_input) is None:
        raise ValueError(
            f"example_input must be a tensor (or a tuple/dict holding one), got {type(example_input).__name__}"
        )


def probe(
    model: nn.Module,
    example_input: Any,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
    schemes: Sequence[SchemeSpec] | None = None,
    seed: int = 0,
    modules: Sequence[str | nn.Module] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    plan: InitPlan | None = None,
    label: str | None = None,
) -> ProbeReport:
    """Measure the forward and backward variance profile of ``model`` at initialization.

    With ``schemes=None`` the model is probed as it is: the theory takes each weight's second moment from
    ``plan`` (the plan the model was just initialized with) when given, else from the weights themselves.
    With ``schemes=[...]`` each scheme initializes a deep copy of the model with the same ``seed`` (the model
    itself is untouched) and the initializations are compared side by side. A scheme is a name
    (``"he"``), a ``(name, options)`` pair or a spec string (``"depth_aware:K=1+distribution=uniform"``, see
    :func:`parse_scheme`).

    Args:
        model: the module; ``model(example_input)`` must run.
        example_input: one batch (a tensor, or a tuple/dict passed as the single argument).
        loss_fn: ``loss_fn(output) -> scalar``; default: the standard-normal backward (the gradient of
            the output is i.i.d. N(0, 1) from ``seed``, so the backward profile does not depend on the
            output's scale).
        schemes: initializations to compare (None: the model as it is).
        seed: init seed of every scheme and seed of the backward noise.
        modules: names (or submodules) to measure; default the weight-bearing leaf modules.
        threshold: variance ratio beyond which a profile is ``exploding`` (``1/threshold``: ``vanishing``).
        plan: with ``schemes=None``: the plan that initialized ``model`` (theory from its rows, no refill).
        label: the result's label with ``schemes=None`` (default ``"as-is"``, or the plan's scheme).

    Returns:
        a :class:`ProbeReport` (``.table()``, ``.plot(path)``, ``.verdicts``, ``.to_json()``).

    Example:
        >>> report = di.probe(model, torch.randn(256, 256), schemes=["he", "xavier"])
        >>> print(report.table()); report.plot("probe.png")
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"probe() takes an nn.Module, got {type(model).__name__}")
    if not (isinstance(threshold, (int, float)) and threshold > 1):
        raise ValueError(f"threshold must be a number > 1, got {threshold!r}")
    _check_input(example_input)
    names = _resolve_modules(model, modules)
    blocks = [] if modules is not None else residual_blocks(model, None if plan is None else {
        n: r.role for r in plan.rows for n in (r.name, *r.tied)})
    stream = "residual" if blocks else "layers"
    names = blocks or names  # a residual network: follow the residual stream (block outputs)
    specs = None if schemes is None else [parse_scheme(s) for s in schemes]
    if specs is not None and not specs:
        raise ValueError("schemes= is empty; pass None to probe the model as it is")
    mlp = mlp_layers(model)
    layers = mlp if mlp is not None and names == [n for n, _, _ in mlp] else None
    if plan is not None and specs is not None:
        raise ValueError("give schemes= (initializations to compare) or plan= (how model was initialized), not both")
    results = []
    if specs is None:
        moments = None
        if layers and plan is not None:
            moments = _plan_moments(plan, layers)
        if layers and moments is None:
            moments = _measured_moments(layers)
        w2, b2 = moments if moments else (None, None)
        recs, m2 = _measure(model, example_input, names, layers, loss_fn, seed, w2, b2)
        name = None if plan is None else plan.scheme
        results.append(SchemeProbe(label or name or "as-is", name, {} if plan is None else dict(plan.options), recs,
                                   m2, threshold, plan, stream))
    else:
        for name, opts in specs:
            m = copy.deepcopy(model)
            p = make_plan(m, name, seed=seed, **opts)
            p.apply(m)
            moments = _plan_moments(p, mlp_layers(m)) if layers else None
            w2, b2 = moments if moments else (None, None)
            recs, m2 = _measure(m, example_input, names, mlp_layers(m) if layers else None, loss_fn, seed, w2, b2)
            results.append(SchemeProbe(scheme_label(name, opts), p.scheme, dict(opts), recs, m2, threshold, p, stream))
            del m
    from .models import describe

    return ProbeReport(results, describe(model), BACKWARD_DOC if loss_fn is None else "loss_fn", threshold)


def __getattr__(name: str):
    if name == "calibrate":  # re-exported lazily: depthinit.calibrate imports this module
        from .calibrate import calibrate

        return calibrate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
