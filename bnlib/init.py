"""Weight initialisers with the same formulas as ``torch.nn.init``.

Every random initialiser takes an explicit ``numpy.random.Generator`` as
``rng``; nothing here reads or changes NumPy's global random state. Weights of
a fully connected layer have torch's ``Linear`` layout ``(fan_out, fan_in)``:
``y = x @ W.T`` maps ``fan_in`` inputs to ``fan_out`` outputs. ``dtype`` is
float64 (default) or float32.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ._checks import check_eps, check_float_dtype

__all__ = ["zeros", "gaussian", "xavier_normal", "xavier_uniform", "he_normal"]


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            "rng must be a numpy.random.Generator, e.g. np.random.default_rng(0), "
            f"got {type(rng).__name__} {rng!r}"
        )
    return rng




def _check_shape(shape):
    if isinstance(shape, (numbers.Integral, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if dims is None or not all(
        isinstance(d, (numbers.Integral, np.integer)) and not isinstance(d, bool) and d >= 0
        for d in dims
    ):
        raise ValueError(
            f"shape must be a non-negative int or a tuple of them, got {shape!r}"
        )
    return tuple(int(d) for d in dims)


def _check_weights_fit(w, name, value):
    """``w``, or a ``ValueError`` when a too large ``name=value`` overflowed its dtype."""
    if not np.isfinite(w).all():
        raise ValueError(
            f"{name}={value!r} is too large for {w.dtype}: weights drawn with it exceed "
            f"the largest {w.dtype} value, {np.finfo(w.dtype).max:.3g}"
        )
    return w


def _check_fan(fan, name):
    if (
        isinstance(fan, bool)
        or not isinstance(fan, (numbers.Integral, np.integer))
        or fan < 1
    ):
        raise ValueError(f"{name} must be a positive integer, got {fan!r}")
    return int(fan)




def zeros(shape, dtype=np.float64):
    """All-zero weights.

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the array, e.g. ``(fan_out, fan_in)``.
    dtype : {np.float64, np.float32}, default np.float64

    Returns
    -------
    w : ndarray of shape ``shape``
        Zeros.

    Notes
    -----
    ``torch.nn.init.zeros_``. Every unit of a zero-initialised layer computes
    the same output and receives the same gradient, so the units stay
    identical during training (symmetry is never broken).

    Examples
    --------
    >>> from bnlib.init import zeros
    >>> zeros((2, 3))
    array([[0., 0., 0.],
           [0., 0., 0.]])
    """
    return np.zeros(_check_shape(shape), dtype=check_float_dtype(dtype))


def gaussian(shape, std, rng, dtype=np.float64):
    """Weights drawn from a normal distribution with mean 0 and the given std.

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the array, e.g. ``(fan_out, fan_in)``.
    std : float
        Standard deviation, finite and non-negative.
    rng : numpy.random.Generator
        Source of randomness (required; global state is never used).
    dtype : {np.float64, np.float32}, default np.float64

    Returns
    -------
    w : ndarray of shape ``shape``

    Notes
    -----
    ``w ~ N(0, std^2)``, ``torch.nn.init.normal_(w, 0, std)``. With tanh, a
    small std makes activations collapse to 0 through depth and a large one
    saturates them at +-1.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.init import gaussian
    >>> gaussian((3, 4), std=0.01, rng=np.random.default_rng(0)).shape
    (3, 4)
    """
    std = check_eps(std, "std")
    return _normal(shape, std, rng, dtype, culprit=("std", std))


def _normal(shape, std, rng, dtype, culprit):
    """N(0, std^2) draws; ``culprit`` names the argument that set ``std``, for errors."""
    shape = _check_shape(shape)
    rng = _check_rng(rng)
    dtype = check_float_dtype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        w = np.asarray(rng.standard_normal(shape, dtype=dtype) * np.asarray(std, dtype=dtype))
    return _check_weights_fit(w, *culprit)


def xavier_normal(fan_in, fan_out, rng, gain=1.0, dtype=np.float64):
    """Xavier/Glorot normal initialisation of a ``(fan_out, fan_in)`` weight.

    Parameters
    ----------
    fan_in : int
        Number of inputs of the layer.
    fan_out : int
        Number of outputs of the layer.
    rng : numpy.random.Generator
        Source of randomness (required).
    gain : float, default 1.0
        Scale factor (torch's ``calculate_gain``: 1 for linear/sigmoid, 5/3
        for tanh).
    dtype : {np.float64, np.float32}, default np.float64

    Returns
    -------
    w : ndarray of shape (fan_out, fan_in)

    Notes
    -----
    ``w ~ N(0, std^2)`` with ``std = gain * sqrt(2 / (fan_in + fan_out))``
    (Glorot & Bengio, 2010), as ``torch.nn.init.xavier_normal_``: it keeps
    the variance of activations and of gradients roughly constant across
    layers of a network with symmetric, near-linear activations (tanh).

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.init import xavier_normal
    >>> xavier_normal(4, 3, rng=np.random.default_rng(0)).shape
    (3, 4)
    """
    fan_in = _check_fan(fan_in, "fan_in")
    fan_out = _check_fan(fan_out, "fan_out")
    gain = check_eps(gain, "gain")
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return _normal((fan_out, fan_in), std, rng, dtype, culprit=("gain", gain))


def xavier_uniform(fan_in, fan_out, rng, gain=1.0, dtype=np.float64):
    """Xavier/Glorot uniform initialisation of a ``(fan_out, fan_in)`` weight.

    Parameters
    ----------
    fan_in : int
        Number of inputs of the layer.
    fan_out : int
        Number of outputs of the layer.
    rng : numpy.random.Generator
        Source of randomness (required).
    gain : float, default 1.0
        Scale factor (see :func:`xavier_normal`).
    dtype : {np.float64, np.float32}, default np.float64

    Returns
    -------
    w : ndarray of shape (fan_out, fan_in)
        Values in ``[-bound, bound)``.

    Notes
    -----
    ``w ~ U(-bound, bound)`` with ``bound = gain * sqrt(6 / (fan_in + fan_out))``,
    as ``torch.nn.init.xavier_uniform_``; its std is
    ``bound / sqrt(3) = gain * sqrt(2 / (fan_in + fan_out))``, the same as
    :func:`xavier_normal`.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.init import xavier_uniform
    >>> w = xavier_uniform(2, 1, rng=np.random.default_rng(0))
    >>> w.shape, bool(np.all(np.abs(w) <= np.sqrt(2.0)))
    ((1, 2), True)
    """
    fan_in = _check_fan(fan_in, "fan_in")
    fan_out = _check_fan(fan_out, "fan_out")
    gain = check_eps(gain, "gain")
    rng = _check_rng(rng)
    dtype = check_float_dtype(dtype)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    u = rng.random((fan_out, fan_in), dtype=dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        w = (2 * u - 1) * np.asarray(bound, dtype=dtype)
    return _check_weights_fit(w, "gain", gain)


def he_normal(fan_in, fan_out, rng, dtype=np.float64):
    """He/Kaiming normal initialisation of a ``(fan_out, fan_in)`` weight.

    Parameters
    ----------
    fan_in : int
        Number of inputs of the layer.
    fan_out : int
        Number of outputs of the layer.
    rng : numpy.random.Generator
        Source of randomness (required).
    dtype : {np.float64, np.float32}, default np.float64

    Returns
    -------
    w : ndarray of shape (fan_out, fan_in)

    Notes
    -----
    ``w ~ N(0, std^2)`` with ``std = sqrt(2 / fan_in)`` (He et al., 2015), as
    ``torch.nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu")``.
    The factor 2 compensates for ReLU zeroing half of its inputs.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.init import he_normal
    >>> he_normal(4, 3, rng=np.random.default_rng(0)).shape
    (3, 4)
    """
    fan_in = _check_fan(fan_in, "fan_in")
    fan_out = _check_fan(fan_out, "fan_out")
    std = np.sqrt(2.0 / fan_in)
    return gaussian((fan_out, fan_in), std, rng, dtype=dtype)
