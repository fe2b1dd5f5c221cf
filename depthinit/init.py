r"""A drop-in replacement for :mod:`torch.nn.init`, plus counter-based random numbers with ``seed=``.

Replace ``import torch.nn.init as init`` with ``import depthinit.init as init`` and every call keeps its
meaning: the same names (``__all__`` is torch's), signatures, defaults, return values (the tensor passed
in), errors and warnings, including the deprecated un-suffixed aliases and their ``FutureWarning``.

**Without** ``seed=`` **every call is delegated to** :mod:`torch.nn.init` with the same arguments. That is
the simplest faithful way to be a drop-in: results are bitwise identical to torch's under the same
``torch.manual_seed`` or ``generator=``, and tensor subclasses see torch's own ``__torch_function__``
dispatch. The only code in front of the delegation re-emits the zero-element warning of ``kaiming_*``
before delegating, so that it points at the caller's line as torch's does (``stacklevel=2``).

**With** ``seed=`` (keyword-only, on every random function: ``uniform_``, ``normal_``, ``trunc_normal_``,
``xavier_*``, ``kaiming_*``, ``orthogonal_``, ``sparse_``) the call switches to depthinit's random-number
contract (DESIGN.md): each value depends only on ``(seed, stream, element index)`` — not on torch's
global RNG (left untouched), not on the device, not on what was drawn before. ``stream`` (keyword-only,
default 0) is a 32-bit id or a name hashed by :func:`depthinit.rng.stream_id`. The element index is the
row-major index in the tensor (any strides: a non-contiguous tensor gets the values of its contiguous
copy). The fill is :func:`depthinit.fill.fill_tensors` (Triton on CUDA, the torch path on CPU). The scale
math is torch's (same std and bound formulas, fans and gains, same errors and warnings); only the random
numbers change:

================== ==========================================================================================
function           values with ``seed=``
================== ==========================================================================================
uniform_           ``a + (b - a) * u``
normal_            ``mean + std * z``
trunc_normal_      inverse-CDF normal inside the absolute bounds ``[a, b]`` (no rejection loop)
xavier_*, kaiming_* uniform / normal with torch's bound or std
orthogonal_        the contract normal matrix ``[rows, prod(shape[1:])]`` of ``(seed, stream)``, then torch's
                   QR procedure (transpose if wide, ``Q * sign(diag(R))``); fp16/bf16 tensors are factorized
                   in fp32 (torch's CPU QR has no half kernels)
sparse_            slice ``[0]`` of the logical tensor ``[2, rows, cols]`` of ``(seed, stream)`` gives the
                   normal values (equal to ``normal_(w, 0, std, seed=, stream=)``); slice ``[1]`` gives
                   uniform keys, and in every column the ``ceil(sparsity * rows)`` rows with the smallest
                   keys are zeroed (a stable argsort of i.i.d. keys is a uniformly random permutation, as
                   torch's ``randperm``; two equal 24-bit keys, probability about rows²/2²⁵ per column,
                   are ordered by row index)
================== ==========================================================================================

``seed`` together with ``generator`` raises ``ValueError``: they name two different random sources.

Example:
    >>> import depthinit.init as init
    >>> init.kaiming_normal_(w, nonlinearity="relu", seed=0, stream="layers.3.mlp.w1")
"""

from __future__ import annotations

import math
import numbers as _numbers
import warnings
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.init as _torch_init
from torch import Tensor
from torch.overrides import handle_torch_function as _handle_torch_function
from torch.overrides import has_torch_function_variadic as _has_torch_function

from . import schemes as _schemes
from .kernels import contract

__all__ = [
    "calculate_gain",
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
    # Deprecated aliases (for backward compatibility)
    "uniform",
    "normal",
    "constant",
    "eye",
    "dirac",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "orthogonal",
    "sparse",
]

_R = TypeVar("_R")
_Stream = int | str

_ZERO_ELEMENT_MSG = "Initializing zero-element tensors is a no-op"
_HALF_TYPES = (torch.float16, torch.bfloat16)


# --------------------------------------------------------------------------------------------- seed= helpers


def _torch_path(seed: int | None, stream: _Stream) -> bool:
    """True when the call is torch's (no ``seed=``); a ``stream=`` without ``seed=`` is a mistake, not ignored."""
    if seed is not None:
        return False
    if isinstance(stream, str) or stream != 0:
        raise ValueError(
            f"stream={stream!r} selects a stream of depthinit's counter-based RNG and needs seed= as well "
            "(without seed= the call draws from torch's RNG, which has no streams)"
        )
    return True


def _contract_stream(generator: torch.Generator | None, seed: int, stream: _Stream) -> int:
    """Validate ``seed=`` arguments; the 32-bit stream id."""
    if generator is not None:
        raise ValueError(
            "pass either generator= (torch's stateful RNG) or seed= (depthinit's counter-based RNG), not both"
        )
    contract.check_seed(seed)
    if isinstance(stream, str):
        from .rng import stream_id  # lazy: the non-seed path never needs depthinit's RNG

        return int(stream_id(stream))
    if isinstance(stream, bool) or not isinstance(stream, _numbers.Integral) or not 0 <= int(stream) < 2**32:
        raise ValueError(f"stream must be a name (str) or an integer in [0, 2**32), got {stream!r}")
    return int(stream)


def _require_floating(tensor: Tensor) -> None:
    if not tensor.dtype.is_floating_point:
        raise TypeError(f"seed= fills floating-point tensors only, got a tensor of dtype {tensor.dtype}")


def _torch_checks(tensor: Tensor, uniform: tuple[float, float] | None = None, std: float | None = None) -> None:
    """Run torch's own argument checks of ``uniform_(a, b)`` / ``normal_(0, std)`` on an empty CPU tensor of
    the same dtype, so a bad bound or std raises torch's exact error; an empty tensor draws no numbers."""
    _require_floating(tensor)
    probe = torch.empty(0, dtype=tensor.dtype)
    if uniform is not None:
        probe.uniform_(*uniform)
    if std is not None:
        probe.normal_(0.0, std)


def _row(dist: str, stream: int, geometry: contract.ShardGeometry | None = None, **params: float) -> contract.FillRow:
    """The :class:`FillRow` of a distribution name (``normal``, ``uniform``, ``trunc_normal``, ``constant``)."""
    floats = {k: float(v) for k, v in params.items()}
    return contract.FillRow(contract.DIST_CODES[dist], stream=stream, geometry=geometry, **floats)


def _fill(tensor: Tensor, row: contract.FillRow, seed: int) -> Tensor:
    """Fill ``tensor`` in place with the contract values of ``row`` (element index = row-major index)."""
    if tensor.is_meta or tensor.numel() == 0:
        return tensor
    _require_floating(tensor)
    from .fill import fill_tensors  # lazy: the drop-in (no seed=) path never loads the fill

    with torch.no_grad():
        fill_tensors([tensor], [row], int(seed))  # any layout: fill_tensors stages non-contiguous targets
    return tensor


def _correct_fan(tensor: Tensor, mode: str) -> int:
    """torch's ``_calculate_correct_fan`` (same errors, same order) over :func:`depthinit.schemes.compute_fans`."""
    mode = mode.lower()
    valid_modes = ["fan_in", "fan_out"]
    if mode not in valid_modes:
        raise ValueError(f"Mode {mode} not supported, please use one of {valid_modes}")
    fan_in, fan_out = _schemes.compute_fans(tensor.shape)
    return fan_in if mode == "fan_in" else fan_out


def _xavier_std(tensor: Tensor, gain: float) -> float:
    fan_in, fan_out = _schemes.compute_fans(tensor.shape)
    return gain * math.sqrt(2.0 / float(fan_in + fan_out))


def _kaiming_std(tensor: Tensor, a: float, mode: str, nonlinearity: str) -> float:
    fan = _correct_fan(tensor, mode)
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


# --------------------------------------------------------------------------------------------- gains


def calculate_gain(nonlinearity: str, param: int | float | None = None) -> float:
    r"""Return the recommended gain value for the given nonlinearity function (torch's table).

    ================= ====================================================
    nonlinearity      gain
    ================= ====================================================
    Linear / Identity :math:`1`
    Conv{1,2,3}D      :math:`1`
    Sigmoid           :math:`1`
    Tanh              :math:`\frac{5}{3}`
    ReLU              :math:`\sqrt{2}`
    Leaky Relu        :math:`\sqrt{\frac{2}{1 + \text{negative\_slope}^2}}`
    SELU              :math:`\frac{3}{4}`
    ================= ====================================================

    Exactly ``torch.nn.init.calculate_gain`` (same values and errors). The extended table with ``gelu`` and
    ``silu`` is :func:`depthinit.schemes.calculate_gain`.

    Args:
        nonlinearity: the non-linear function (`nn.functional` name)
        param: optional parameter for the non-linear function

    Examples:
        >>> gain = init.calculate_gain("leaky_relu", 0.2)  # leaky_relu with negative_slope=0.2
    """
    if nonlinearity not in _schemes.TORCH_NONLINEARITIES:
        raise ValueError(f"Unsupported nonlinearity {nonlinearity}")
    return _schemes.calculate_gain(nonlinearity, param)


# --------------------------------------------------------------------------------------------- fixed


def constant_(tensor: Tensor, val: float) -> Tensor:
    r"""Fill the input Tensor with the value :math:`\text{val}` (``torch.nn.init.constant_``).

    Examples:
        >>> w = torch.empty(3, 5)
        >>> init.constant_(w, 0.3)
    """
    return _torch_init.constant_(tensor, val)


def ones_(tensor: Tensor) -> Tensor:
    r"""Fill the input Tensor with the scalar value `1` (``torch.nn.init.ones_``).

    Examples:
        >>> w = torch.empty(3, 5)
        >>> init.ones_(w)
    """
    return _torch_init.ones_(tensor)


def zeros_(tensor: Tensor) -> Tensor:
    r"""Fill the input Tensor with the scalar value `0` (``torch.nn.init.zeros_``).

    Examples:
        >>> w = torch.empty(3, 5)
        >>> init.zeros_(w)
    """
    return _torch_init.zeros_(tensor)


def eye_(tensor: Tensor) -> Tensor:
    r"""Fill the 2-dimensional input `Tensor` with the identity matrix (``torch.nn.init.eye_``).

    Raises:
        ValueError: if the tensor is not 2-dimensional.

    Examples:
        >>> w = torch.empty(3, 5)
        >>> init.eye_(w)
    """
    return _torch_init.eye_(tensor)


def dirac_(tensor: Tensor, groups: int = 1) -> Tensor:
    r"""Fill the {3, 4, 5}-dimensional input `Tensor` with the Dirac delta function
    (``torch.nn.init.dirac_``): each of the ``groups`` groups of output channels preserves the identity of
    as many input channels as possible.

    Raises:
        ValueError: for other dimensions, or if ``groups`` does not divide dim 0.

    Examples:
        >>> w = torch.empty(3, 24, 5, 5)
        >>> init.dirac_(w, 3)
    """
    return _torch_init.dirac_(tensor, groups)


# --------------------------------------------------------------------------------------------- random


def uniform_(
    tensor: Tensor,
    a: float = 0.0,
    b: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    seed: int | None = None,
    stream: _Stream = 0,
) -> Tensor:
    r"""Fill the input Tensor with values drawn from the uniform distribution :math:`\mathcal{U}(a, b)`.

    Args:
        tensor: an n-dimensional `torch.Tensor`
        a: the lower bound of the uniform distribution
        b: the upper bound of the uniform distribution
        generator: the torch Generator to sample from (default: None)
        seed: depthinit's counter-based RNG instead of torch's: ``a + (b - a) * u(seed, stream, i)``
        stream: the stream id or name (with ``seed``)

    Examples:
        >>> w = torch.empty(3, 5)
        >>> init.uniform_(w, -0.1, 0.1, seed=0)
    """
    if _torch_path(seed, stream):
        return _torch_init.uniform_(tensor, a, b, generator)
    if _has_torch_function(tensor):
        return _handle_torch_function(
            uniform_, (tensor,), tensor=tensor, a=a, b=b, generator=generator, seed=seed, stream=stream
        )
    sid = _contract_stream(generator, seed, stream)
    _torch_checks(tensor, uniform=(a, b))
    return _fill(tensor, _row("uniform", sid, low=a, high=b), seed)


def normal_(
    tensor: Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    seed: int | None = None,
    stream: _Stream = 0,
) -> Tensor:
    r"""Fill the input Tensor with values drawn from the normal distribution
    :math:`\mathcal{N}(\text{mean}, \text{std}^2)`.

    Args:
        tensor: an n-dimensional `torch.Tensor`
        mean: the mean of the normal distribution
        std: the standard deviation of the normal distribution
        generator: the torch Generator to sample from (default: None)
        seed: depthinit's counter-based RNG instead of torch's: ``mean + std * z(seed, stream, i)``
        stream: the stream id or name (with ``seed``)

    Examples:
        >>> w = torch.empty(3, 5)
        >>> init.normal_(w, std=0.02, seed=0, stream="wte")
    """
    if _torch_path(seed, stream):
        return _torch_init.normal_(tensor, mean, std, generator)
    if _has_torch_function(tensor):
        return _handle_torch_function(
            normal_, (tensor,), tensor=tensor, mean=mean, std=std, generator=generator, seed=seed, stream=stream
        )
    sid = _contract_stream(generator, seed, stream)
    _torch_checks(tensor, std=std)
    return _fill(tensor, _row("normal", sid, mean=mean, std=std), seed)


def trunc_normal_(
    tensor: Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    generator: torch.Generator | None = None,
    *,
    seed: int | None = None,
    stream: _Stream = 0,
) -> Tensor:
    r"""Fill the input Tensor with values drawn from a truncated normal distribution:
    :math:`\mathcal{N}(\text{mean}, \text{std}^2)` restricted to :math:`[a, b]` (absolute bounds).

    torch redraws values outside the bounds; with ``seed`` the value is drawn by inverse CDF inside the
    bounds (same distribution, one draw per element).

    Args:
        tensor: an n-dimensional `torch.Tensor`
        mean: the mean of the normal distribution
        std: the standard deviation of the normal distribution
        a: the minimum cutoff value
        b: the maximum cutoff value
        generator: the torch Generator to sample from (default: None)
        seed: depthinit's counter-based RNG instead of torch's
        stream: the stream id or name (with ``seed``)

    Examples:
        >>> w = torch.empty(3, 5)
        >>> init.trunc_normal_(w, std=0.02, a=-0.04, b=0.04, seed=0)
    """
    if _torch_path(seed, stream):
        return _torch_init.trunc_normal_(tensor, mean, std, a, b, generator)
    sid = _contract_stream(generator, seed, stream)
    if tensor.is_meta:
        return tensor
    if (mean < a - 2 * std) or (mean > b + 2 * std):
        warnings.warn(
            "mean is more than 2 std from [a, b] in nn.init.trunc_normal_. "
            "The distribution of values may be incorrect.",
            stacklevel=2,
        )
    # torch's mass of [a, b] (std == 0: its ZeroDivisionError); at most 0.3, torch samples uniform_(a, b),
    # whose checks (a > b, non-finite bounds) are torch's errors here too. N(mean, std²) = N(mean, |std|²).
    p = contract.norm_cdf((b - mean) / std) - contract.norm_cdf((a - mean) / std)
    if p <= 0.3:
        _torch_checks(tensor, uniform=(a, b))
    if a == b:  # torch fills the single admissible value
        return _fill(tensor, _row("constant", sid, mean=a), seed)
    return _fill(tensor, _row("trunc_normal", sid, mean=mean, std=abs(std), low=a, high=b), seed)


def xavier_uniform_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    seed: int | None = None,
    stream: _Stream = 0,
) -> Tensor:
    r"""Fill the input `Tensor` with values using a Xavier uniform distribution :math:`\mathcal{U}(-a, a)`,

    .. math::
        a = \text{gain} \times \sqrt{\frac{6}{\text{fan\_in} + \text{fan\_out}}}

    Glorot, X. & Bengio, Y., "Understanding the difficulty of training deep feedforward neural networks"
    (2010). Also known as Glorot initialization.

    Args:
        tensor: an n-dimensional `torch.Tensor` (n >= 2)
        gain: an optional scaling factor
        generator: the torch Generator to sample from (default: None)
        seed: depthinit's counter-based RNG instead of torch's
        stream: the stream id or name (with ``seed``)

    Examples:
        >>> w = torch.empty(3, 5)
        >>> init.xavier_uniform_(w, gain=init.calculate_gain("relu"), seed=0)
    """
    if _torch_path(seed, stream):
        return _torch_init.xavier_uniform_(tensor, gain, generator)
    sid = _contract_stream(generator, seed, stream)
    bound = math.sqrt(3.0) * _xavier_std(tensor, gain)
    return _fill(tensor, _row("uniform", sid, low=-bound, high=bound), seed)


def xavier_normal_(
    tensor: Tensor,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    seed: int | None = None,
    stream: _Stream = 0,
) -> Tensor:
    r"""Fill the input `Tensor` with values using a Xavier normal distribution
    :math:`\mathcal{N}(0, \text{std}^2)`,

    .. math::
        \text{std} = \text{gain} \times \sqrt{\frac{2}{\text{fan\_in} + \text{fan\_out}}}

    Glorot, X. & Bengio, Y. (2010). Also known as Glorot initialization.

    Args:
        tensor: an n-dimensional `torch.Tensor` (n >= 2)
        gain: an optional scaling factor
        generator: the torch Generator to sample from (default: None)
        seed: depthinit's counter-based RNG instead of torch's
        stream: the stream id or name (with ``seed``)

    Examples:
        >>> w = torch.empty(3, 5)
        >>> init.xavier_normal_(w, seed=0)
    """
    if _torch_path(seed, stream):
        return _torch_init.xavier_normal_(tensor, gain, generator)
    sid = _contract_stream(generator, seed, stream)
    return _fill(tensor, _row("normal", sid, std=_xavier_std(tensor, gain)), seed)


def kaiming_uniform_(
    tensor: Tensor,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
    *,
    seed: int | None = None,
    stream: _Stream = 0,
) -> Tensor:
    r"""Fill the input `Tensor` with values using a Kaiming uniform distribution
    :math:`\mathcal{U}(-\text{bound}, \text{bound})`,

    .. math::
        \text{bound} = \text{gain} \times \sqrt{\frac{3}{\text{fan\_mode}}}

    He, K. et al., "Delving deep into rectifiers: Surpassing human-level performance on ImageNet
    classification" (2015). Also known as He initialization. ``fan_in``/``fan_out`` assume ``x @ w.T``
    (``w.shape = [fan_out, fan_in]``, as in ``Linear``); for ``x @ w`` pass ``w.T``.

    Args:
        tensor: an n-dimensional `torch.Tensor` (n >= 2)
        a: the negative slope of the rectifier used after this layer (only used with ``'leaky_relu'``)
        mode: ``'fan_in'`` (default: preserves the forward variance) or ``'fan_out'`` (backward)
        nonlinearity: the non-linear function (`nn.functional` name), ``'relu'`` or ``'leaky_relu'`` (default)
        generator: the torch Generator to sample from (default: None)
        seed: depthinit's counter-based RNG instead of torch's
        stream: the stream id or name (with ``seed``)

    Examples:
        >>> w = torch.empty(3, 5)
        >>> init.kaiming_uniform_(w, mode="fan_in", nonlinearity="relu", seed=0)
    """
    if _has_torch_function(tensor):
        if _torch_path(seed, stream):
            return _torch_init.kaiming_uniform_(tensor, a, mode, nonlinearity, generator)
        return _handle_torch_function(
            kaiming_uniform_,
            (tensor,),
            tensor=tensor,
            a=a,
            mode=mode,
            nonlinearity=nonlinearity,
            generator=generator,
            seed=seed,
            stream=stream,
        )
    sid = None if _torch_path(seed, stream) else _contract_stream(generator, seed, stream)
    if 0 in tensor.shape:
        warnings.warn(_ZERO_ELEMENT_MSG, stacklevel=2)
        return tensor
    if sid is None:
        return _torch_init.kaiming_uniform_(tensor, a, mode, nonlinearity, generator)
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return _fill(tensor, _row("uniform", sid, low=-bound, high=bound), seed)


def kaiming_normal_(
    tensor: Tensor,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
    *,
    seed: int | None = None,
    stream: _Stream = 0,
) -> Tensor:
    r"""Fill the input `Tensor` with values using a Kaiming normal distribution
    :math:`\mathcal{N}(0, \text{std}^2)`,

    .. math::
        \text{std} = \frac{\text{gain}}{\sqrt{\text{fan\_mode}}}

    He, K. et al. (2015). Also known as He initialization. Arguments as :func:`kaiming_uniform_`.

    Examples:
        >>> w = torch.empty(3, 5)
        >>> init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu", seed=0)
    """
    sid = None if _torch_path(seed, stream) else _contract_stream(generator, seed, stream)
    if 0 in tensor.shape:
        warnings.warn(_ZERO_ELEMENT_MSG, stacklevel=2)
        return tensor
    if sid is None:
        return _torch_init.kaiming_normal_(tensor, a, mode, nonlinearity, generator)
    return _fill(tensor, _row("normal", sid, std=_kaiming_std(tensor, a, mode, nonlinearity)), seed)


def orthogonal_(
    tensor: Tensor,
    gain: float = 1,
    generator: torch.Generator | None = None,
    *,
    seed: int | None = None,
    stream: _Stream = 0,
) -> Tensor:
    r"""Fill the input `Tensor` with a (semi) orthogonal matrix, scaled by ``gain``.

    Saxe, A. et al., "Exact solutions to the nonlinear dynamics of learning in deep linear neural
    networks" (2013). Trailing dimensions are flattened: the matrix is ``[shape[0], prod(shape[1:])]``.
    With ``seed`` the Gaussian matrix is the contract normal matrix of ``(seed, stream)``; the QR
    procedure is torch's (fp16/bf16: factorized in fp32).

    Args:
        tensor: an n-dimensional `torch.Tensor`, where :math:`n \geq 2`
        gain: optional scaling factor
        generator: the torch Generator to sample from (default: None)
        seed: depthinit's counter-based RNG instead of torch's
        stream: the stream id or name (with ``seed``)

    Examples:
        >>> w = torch.empty(3, 5)
        >>> init.orthogonal_(w, seed=0)
    """
    if _torch_path(seed, stream):
        return _torch_init.orthogonal_(tensor, gain, generator)
    sid = _contract_stream(generator, seed, stream)
    if tensor.ndimension() < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    if tensor.numel() == 0 or tensor.is_meta:
        return tensor
    rows = tensor.size(0)
    cols = tensor.numel() // rows
    dtype = torch.float32 if tensor.dtype in _HALF_TYPES else tensor.dtype
    flattened = _fill(tensor.new_empty((rows, cols), dtype=dtype), _row("normal", sid), seed)
    if rows < cols:
        flattened.t_()
    q, r = torch.linalg.qr(flattened)
    q *= torch.diag(r, 0).sign()  # makes Q uniform (Haar): arXiv math-ph/0609050
    if rows < cols:
        q.t_()
    with torch.no_grad():
        tensor.copy_(q.reshape(tensor.shape))
        tensor.mul_(gain)
    return tensor


def sparse_(
    tensor: Tensor,
    sparsity: float,
    std: float = 0.01,
    generator: torch.Generator | None = None,
    *,
    seed: int | None = None,
    stream: _Stream = 0,
) -> Tensor:
    r"""Fill the 2D input `Tensor` as a sparse matrix: ``ceil(sparsity * rows)`` zeros in each column, the
    other elements drawn from :math:`\mathcal{N}(0, \text{std}^2)`.

    Martens, J., "Deep learning via Hessian-free optimization" (2010). With ``seed`` the values are
    ``normal_(tensor, 0, std, seed=seed, stream=stream)`` and the zeroed rows of each column are the smallest
    of contract-uniform keys (module docstring).

    Args:
        tensor: a 2-dimensional `torch.Tensor`
        sparsity: The fraction of elements in each column to be set to zero
        std: the standard deviation of the normal distribution used to generate the non-zero values
        generator: the torch Generator to sample from (default: None; torch draws the zeroed rows from the
            global RNG even when a generator is given)
        seed: depthinit's counter-based RNG instead of torch's
        stream: the stream id or name (with ``seed``)

    Examples:
        >>> w = torch.empty(3, 5)
        >>> init.sparse_(w, sparsity=0.1, seed=0)
    """
    if _torch_path(seed, stream):
        return _torch_init.sparse_(tensor, sparsity, std, generator)
    sid = _contract_stream(generator, seed, stream)
    if tensor.ndimension() != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    if tensor.is_meta:
        return tensor
    rows, cols = tensor.shape
    num_zeros = math.ceil(sparsity * rows)
    _torch_checks(tensor, std=std)
    _fill(tensor, _row("normal", sid, std=std), seed)
    keys = torch.empty((rows, cols), dtype=torch.float32, device=tensor.device)
    _fill(keys, _row("uniform", sid, contract.ShardGeometry.along((2, rows, cols), 0, 1, 1)), seed)
    zero_rows = torch.argsort(keys, dim=0, stable=True)[:num_zeros]  # same slicing as torch's row_indices
    with torch.no_grad():
        tensor.scatter_(0, zero_rows, 0.0)
    return tensor


# --------------------------------------------------------------------------------------------- deprecated


def _make_deprecate(meth: Callable[..., _R]) -> Callable[..., _R]:
    """torch's deprecated alias: same name, docstring shape and FutureWarning message."""
    new_name = meth.__name__
    old_name = new_name[:-1]

    def deprecated_init(*args, **kwargs) -> _R:
        warnings.warn(
            f"`nn.init.{old_name}` is now deprecated in favor of `nn.init.{new_name}`.",
            FutureWarning,
            stacklevel=2,
        )
        return meth(*args, **kwargs)

    deprecated_init.__doc__ = rf"""
    {old_name}(...)

    .. warning::
        This method is now deprecated in favor of :func:`depthinit.init.{new_name}`.

    See :func:`~depthinit.init.{new_name}` for details."""
    deprecated_init.__name__ = old_name
    deprecated_init.__qualname__ = old_name
    return deprecated_init


uniform = _make_deprecate(uniform_)
normal = _make_deprecate(normal_)
constant = _make_deprecate(constant_)
eye = _make_deprecate(eye_)
dirac = _make_deprecate(dirac_)
xavier_uniform = _make_deprecate(xavier_uniform_)
xavier_normal = _make_deprecate(xavier_normal_)
kaiming_uniform = _make_deprecate(kaiming_uniform_)
kaiming_normal = _make_deprecate(kaiming_normal_)
orthogonal = _make_deprecate(orthogonal_)
sparse = _make_deprecate(sparse_)
