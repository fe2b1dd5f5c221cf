"""The import path ``depthinit.models`` of :mod:`depthinit.applications.models` (the same module object).

Only :func:`depthinit.probe.probe` still imports ``describe`` through this path; the attribute
``depthinit.models`` is served by the package's lazy loader. Delete this file once nothing imports it.
"""

import sys

from .applications import models as _models

sys.modules[__name__] = _models
