"""Initialization schemes: fans, gains, one ``variance_scaling`` core and thin named schemes.

A scheme is a function from a parameter's description (:class:`ParamInfo`: name, shape, role, depth,
fans) to what to draw for it (:class:`Draw`: distribution, mean, std, bounds). Every named scheme is a
small declaration over :func:`variance_scaling` or a fixed std, registered with :func:`register`; the plan
(``depthinit.plan``) calls it once per parameter and the fill kernel draws the values.

* :mod:`.core`: fans, gains, ``ParamInfo``/``Draw``, ``variance_scaling``, the registry and its hooks;
* :mod:`.classic`: He, Xavier, LeCun, normal, trunc_normal, orthogonal, zeros;
* :mod:`.depth`: the depth-aware family (K, schedules, predicted gain);
* :mod:`.transformer`: GPT-2, Megatron, torchtitan, OLMo mitchell, DeepNorm, Fixup, T-Fixup, ReZero.

Add a scheme: a function ``(p: ParamInfo, *, option=default, ...) -> Draw`` decorated with
``@register("name", "alias", ...)`` in the module of its family.
"""

from __future__ import annotations

from .classic import (  # noqa: F401
    he,
    lecun,
    normal,
    orthogonal,
    trunc_normal,
    xavier,
    zeros,
)
from .core import (  # noqa: F401
    _ALIASES,
    _SHAPE_SUFFIX,
    DISTRIBUTIONS,
    GELU_GAIN,
    RESIDUAL_OUT_ROLES,
    ROLES,
    SCHEMES,
    SILU_GAIN,
    SQRT3,
    TORCH_NONLINEARITIES,
    Draw,
    ParamInfo,
    Scheme,
    calculate_gain,
    check_options,
    compute_fans,
    constant,
    default_role_draw,
    describe,
    draw,
    find_scheme,
    fixed,
    get_scheme,
    keep,
    register,
    select_fan,
    variance_scaling,
)
from .depth import (  # noqa: F401
    BASES,
    SCHEDULES,
    check_K,
    depth_aware,
    depth_multiplier,
    predicted_gain,
)
from .transformer import (  # noqa: F401
    _deepnorm_constants,
    deepnorm,
    fixup,
    gpt2,
    megatron,
    olmo_mitchell,
    rezero,
    t_fixup,
    torchtitan_depth,
)
