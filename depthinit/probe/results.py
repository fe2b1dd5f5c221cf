"""What the probe measured: per-layer records, per-initialization verdicts and the report (text tables,
``to_dict``/strict JSON, the figure)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from torch import nn

from ..plan import InitPlan
from ..report import align, json_safe

__all__ = ["DEFAULT_THRESHOLD", "BACKWARD_DOC", "LayerProbe", "SchemeProbe", "ProbeReport", "verdict_of",
           "describe_model"]

DEFAULT_THRESHOLD = 100.0
BACKWARD_DOC = "standard-normal backward: d(loss)/d(output) ~ N(0, 1) i.i.d. (seeded), i.e. loss = <output, r>"


def describe_model(model: nn.Module) -> str:
    """``"<class> with <n> parameters (<MiB> MiB in fp32)"``: the model line of a report."""
    n = sum(p.numel() for p in model.parameters())
    return f"{type(model).__name__} with {n:,} parameters ({n * 4 / 2**20:.1f} MiB in fp32)"


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


def verdict_of(ratios: Sequence[float], threshold: float) -> str:
    """``exploding`` / ``vanishing`` (both joined by ``+``) when ``ratios`` leave ``[1/threshold, threshold]``,
    else ``healthy``."""
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
        return verdict_of(self._ratios(which), self.threshold)

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
        """:meth:`to_dict` as strict JSON (a non-finite number is written as ``null``)."""
        return json.dumps(json_safe(self.to_dict()), indent=indent, allow_nan=False)

    def plot(self, path: str, title: str | None = None) -> str:
        """Forward (module output) and backward (output gradient) variance per layer, log scale: one color
        per initialization, measured solid, theory dashed (:func:`depthinit.plots.probe_profile`). Writes a PNG
        (matplotlib, Agg) and returns ``path``."""
        from ..plots import probe_profile

        probe_profile(self, title).savefig(path, dpi=110)
        return path
