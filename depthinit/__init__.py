"""depthinit: initialize and monitor very deep and very wide networks.

>>> import depthinit as di
>>> plan = di.plan(model, scheme="depth_aware", K=1.0, distribution="uniform", seed=0)
>>> plan.apply()
"""

from __future__ import annotations

import importlib.util
import os
import sys


def _load_source_kernels() -> None:
    """Make ``depthinit.kernels`` importable from a source checkout.

    setup.py installs the top-level ``kernels/`` folder as ``depthinit.kernels``. When ``depthinit`` is
    imported straight from a checkout (tests run from the repository root), that mapping does not exist,
    so the folder beside this package is registered under the same name.
    """
    name = __name__ + ".kernels"
    here = os.path.dirname(os.path.abspath(__file__))
    if name in sys.modules or os.path.isdir(os.path.join(here, "kernels")):
        return
    src = os.path.join(os.path.dirname(here), "kernels")
    init = os.path.join(src, "__init__.py")
    if not os.path.isfile(init):
        return  # installed layout: the import system finds depthinit.kernels itself
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[src])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_load_source_kernels()

__version__ = "0.1.0"

# Functions named like their modules (calibrate, materialize, probe) are bound eagerly: a lazy name would be
# shadowed by the submodule as soon as anything imports it (the import system sets the package attribute).
from . import schemes  # noqa: E402
from .calibrate import calibrate  # noqa: E402
from .materialize import materialize  # noqa: E402
from .plan import InitPlan, PlanRow, VarianceWarning, init_, plan  # noqa: E402
from .probe import ProbeReport, probe  # noqa: E402
from .schemes import calculate_gain, compute_fans, variance_scaling  # noqa: E402

# Features that import triton or optional packages load on first use.
_LAZY = {
    "layer_stats": ("depthinit.stats", "layer_stats"),
    "LayerStats": ("depthinit.stats", "LayerStats"),
    "VarianceMonitor": ("depthinit.monitor", "VarianceMonitor"),
    "sinks": ("depthinit.sinks", None),
    "alerts": ("depthinit.alerts", None),
    "Alerts": ("depthinit.alerts", "Alerts"),
    "AlertEvent": ("depthinit.alerts", "AlertEvent"),
    "plots": ("depthinit.plots", None),
    "init": ("depthinit.init", None),
    "rng": ("depthinit.rng", None),
    "models": ("depthinit.applications.models", None),
}

__all__ = [
    "InitPlan",
    "PlanRow",
    "ProbeReport",
    "calibrate",
    "materialize",
    "probe",
    "VarianceWarning",
    "calculate_gain",
    "compute_fans",
    "init_",
    "plan",
    "schemes",
    "variance_scaling",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        m = importlib.import_module(mod)
        value = m if attr is None else getattr(m, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'depthinit' has no attribute {name!r}")
