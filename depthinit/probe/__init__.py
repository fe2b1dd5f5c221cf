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

The package: :mod:`~depthinit.probe.spec` (the scheme-spec grammar), :mod:`~depthinit.probe.hooks` (which
modules, the hooked pass and its fused statistics; also used by :func:`depthinit.calibrate`),
:mod:`~depthinit.probe.theory` (the mean-field prediction), :mod:`~depthinit.probe.results` (the report and
its tables) and :mod:`~depthinit.probe.api` (:func:`probe`). The figure is :func:`depthinit.plots.probe_profile`.

Example:
    >>> report = di.probe(mlp(54, 256), torch.randn(256, 256), schemes=["he", "xavier", "depth_aware:K=1"])
    >>> print(report.table()); report.plot("probe.png")
"""

from __future__ import annotations

from .api import probe
from .hooks import capture, check_input, default_modules, first_tensor, resolve_modules, stats_host
from .results import BACKWARD_DOC, DEFAULT_THRESHOLD, LayerProbe, ProbeReport, SchemeProbe, describe_model, verdict_of
from .spec import SchemeSpec, parse_scheme, parse_schemes, parse_value, scheme_label
from .theory import (
    ELEMENTWISE,
    activation_moments,
    mlp_layers,
    mlp_theory,
    plan_moments,
    row_second_moment,
    weight_moments,
)

__all__ = [
    "probe", "ProbeReport", "SchemeProbe", "LayerProbe", "DEFAULT_THRESHOLD", "BACKWARD_DOC", "describe_model",
    "verdict_of", "SchemeSpec", "parse_value", "parse_scheme", "parse_schemes", "scheme_label", "ELEMENTWISE",
    "mlp_layers", "activation_moments", "row_second_moment", "mlp_theory", "plan_moments", "weight_moments",
    "default_modules", "resolve_modules", "first_tensor", "check_input", "stats_host", "capture",
]  # fmt: skip

