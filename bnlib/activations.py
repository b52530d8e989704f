"""Elementwise activation functions and their derivatives.

Every function takes an array of any shape (or a scalar) and returns a new
array of the same shape: float32 in gives float32 out, float64 gives float64,
integers and booleans give float64. Derivatives are taken with respect to the
*input* ``x`` (the pre-activation), not the output. NaN and infinities are
propagated elementwise the way PyTorch does (``sigmoid(inf) = 1``).
"""

from __future__ import annotations

import numpy as np

from bnlib._checks import as_float_array

__all__ = ["sigmoid", "relu", "tanh", "sigmoid_grad", "tanh_grad", "relu_grad"]


def sigmoid(x):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, without overflow.

    Parameters
    ----------
    x : ndarray of any shape
        Pre-activation values.

    Returns
    -------
    y : ndarray of the same shape as ``x``
        Values in ``[0, 1]``, in ``x``'s float dtype.

    Notes
    -----
    ``sigmoid(x) = 1 / (1 + exp(-x))`` for ``x >= 0`` and
    ``exp(x) / (1 + exp(x))`` for ``x < 0``: both forms only ever evaluate
    ``exp(-|x|) <= 1``, so ``sigmoid(-1000)`` is 0 and ``sigmoid(1000)`` is 1
    with no overflow warning.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.activations import sigmoid
    >>> sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    array([0. , 0.5, 1. ])
    """
    x = as_float_array(x)
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


def sigmoid_grad(x):
    """Derivative of the sigmoid with respect to its input.

    Parameters
    ----------
    x : ndarray of any shape
        Pre-activation values (the sigmoid's input, not its output).

    Returns
    -------
    dy_dx : ndarray of the same shape as ``x``
        ``sigmoid(x) * (1 - sigmoid(x))``, in ``x``'s float dtype; at most
        0.25, reached at ``x = 0``.

    Notes
    -----
    ``sigma'(x) = sigma(x) (1 - sigma(x)) = exp(-|x|) / (1 + exp(-|x|))^2``.
    The second form is used: it keeps full relative accuracy in the tails,
    where ``1 - sigma(x)`` would round to 0. The bound 1/4 is why gradients
    shrink by at least a factor 4 per sigmoid layer.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.activations import sigmoid_grad
    >>> np.round(sigmoid_grad(np.array([0.0, 5.0])), 4)
    array([0.25  , 0.0066])
    """
    x = as_float_array(x)
    z = np.exp(-np.abs(x))
    return z / ((1 + z) * (1 + z))


def tanh(x):
    """Hyperbolic tangent.

    Parameters
    ----------
    x : ndarray of any shape
        Pre-activation values.

    Returns
    -------
    y : ndarray of the same shape as ``x``
        Values in ``[-1, 1]``, in ``x``'s float dtype.

    Notes
    -----
    ``tanh(x) = (e^x - e^-x) / (e^x + e^-x) = 2 sigmoid(2x) - 1``; zero-centred,
    unlike the sigmoid. Computed by ``np.tanh``.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.activations import tanh
    >>> tanh(np.array([-1000.0, 0.0, 1000.0]))
    array([-1.,  0.,  1.])
    """
    return np.tanh(as_float_array(x))


def tanh_grad(x):
    """Derivative of tanh with respect to its input.

    Parameters
    ----------
    x : ndarray of any shape
        Pre-activation values (tanh's input, not its output).

    Returns
    -------
    dy_dx : ndarray of the same shape as ``x``
        ``1 - tanh(x)**2``, in ``x``'s float dtype; at most 1, at ``x = 0``.

    Notes
    -----
    ``tanh'(x) = 1 - tanh(x)^2 = sech(x)^2``, evaluated as
    ``(2 exp(-|x|) / (1 + exp(-2|x|)))^2``, which neither overflows nor loses
    relative accuracy for large ``|x|``.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.activations import tanh_grad
    >>> tanh_grad(np.array([0.0, 1000.0]))
    array([1., 0.])
    """
    x = as_float_array(x)
    w = np.exp(-np.abs(x))
    sech = 2 * w / (1 + w * w)
    return sech * sech


def relu(x):
    """Rectified linear unit ``max(x, 0)``.

    Parameters
    ----------
    x : ndarray of any shape
        Pre-activation values.

    Returns
    -------
    y : ndarray of the same shape as ``x``
        ``x`` where positive, 0 elsewhere, in ``x``'s float dtype (NaN stays
        NaN, as in ``torch.relu``).

    Notes
    -----
    ``relu(x) = max(x, 0)``. On inputs that are all positive it is the
    identity, i.e. linear.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.activations import relu
    >>> relu(np.array([-2.0, 0.0, 3.0]))
    array([0., 0., 3.])
    """
    return np.maximum(as_float_array(x), 0)


def relu_grad(x):
    """Derivative of ReLU with respect to its input.

    Parameters
    ----------
    x : ndarray of any shape
        Pre-activation values (ReLU's input).

    Returns
    -------
    dy_dx : ndarray of the same shape as ``x``
        1 where ``x > 0``, 0 elsewhere, in ``x``'s float dtype.

    Notes
    -----
    ``relu'(x) = 1 if x > 0 else 0``. ReLU has no derivative at 0; like
    PyTorch's autograd we use 0 there.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.activations import relu_grad
    >>> relu_grad(np.array([-2.0, 0.0, 3.0]))
    array([0., 0., 1.])
    """
    x = as_float_array(x)
    return (x > 0).astype(x.dtype)
