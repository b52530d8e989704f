"""A small fully connected network in numpy, built to be looked inside.

The forward pass keeps every layer's input, pre-activation and activation; the
backward pass returns the gradient of every weight, bias and pre-activation.
That is what a chapter needs to draw per-layer histograms, to watch gradients
vanish through depth, or to track one layer's input distribution over training.

Conventions follow ``torch.nn.Linear``: a layer's weight has shape
``(fan_out, fan_in)`` and maps a batch ``h`` of shape ``(N, fan_in)`` to
``h @ W.T + b``. Parameters are a list of :class:`Layer` pairs; every function
is pure (it returns new arrays and never modifies its arguments) and every
random draw comes from an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import init as _init
from ._checks import as_float_array, check_finite
from .activations import relu, relu_grad, sigmoid, sigmoid_grad, tanh, tanh_grad

__all__ = [
    "ACTIVATIONS",
    "INIT_SCHEMES",
    "Layer",
    "MLPCache",
    "MLPGrads",
    "init_mlp",
    "mlp_forward",
    "mlp_backward",
    "mse_loss",
    "softmax_cross_entropy",
    "sgd_step",
]


def _identity(x):
    return as_float_array(x).copy()


def _identity_grad(x):
    return np.ones_like(as_float_array(x))


#: Activation name -> (function, derivative with respect to its input).
ACTIVATIONS = {
    "sigmoid": (sigmoid, sigmoid_grad),
    "tanh": (tanh, tanh_grad),
    "relu": (relu, relu_grad),
    "linear": (_identity, _identity_grad),
}

#: Weight initialisation schemes understood by :func:`init_mlp`.
INIT_SCHEMES = ("zeros", "gaussian", "xavier_normal", "xavier_uniform", "he_normal")


class Layer(NamedTuple):
    """One fully connected layer's parameters.

    Attributes
    ----------
    weight : ndarray of shape (fan_out, fan_in)
    bias : ndarray of shape (fan_out,)
    """

    weight: np.ndarray
    bias: np.ndarray


class MLPCache(NamedTuple):
    """Everything the forward pass computed, layer by layer.

    Attributes
    ----------
    inputs : list of ndarray
        ``inputs[l]`` is layer ``l``'s input, shape ``(N, fan_in_l)``;
        ``inputs[0]`` is ``x``.
    preacts : list of ndarray
        ``preacts[l] = inputs[l] @ W_l.T + b_l``, shape ``(N, fan_out_l)``.
    acts : list of ndarray
        ``acts[l] = f(preacts[l])``; ``acts[-1]`` is the network's output.
    params : list of Layer
        The parameters used (references, not copies).
    activation : str
        Hidden layers' activation name.
    output_activation : str
        Last layer's activation name.
    """

    inputs: list
    preacts: list
    acts: list
    params: list
    activation: str
    output_activation: str


class MLPGrads(NamedTuple):
    """Gradients of a scalar loss, layer by layer.

    Attributes
    ----------
    params : list of Layer
        ``Layer(dL/dW_l, dL/db_l)``, shaped like the parameters.
    preacts : list of ndarray
        ``dL/dz_l`` for every layer's pre-activation, shape ``(N, fan_out_l)``.
    x : ndarray of shape (N, fan_in_0)
        ``dL/dx``, the gradient with respect to the network's input.
    """

    params: list
    preacts: list
    x: np.ndarray


def _check_activation(name, what="activation"):
    if name not in ACTIVATIONS:
        raise ValueError(
            f"{what} must be one of {sorted(ACTIVATIONS)}, got {name!r}"
        )
    return ACTIVATIONS[name]


def init_mlp(layer_sizes, rng=None, scheme="xavier_normal", std=None, gain=1.0,
             dtype=np.float64):
    """Initialise the weights and biases of a fully connected network.

    Parameters
    ----------
    layer_sizes : sequence of int
        Widths ``[n_in, n_hidden_1, ..., n_out]``; ``len(layer_sizes) - 1``
        layers are created.
    rng : numpy.random.Generator, optional
        Source of randomness; required by every scheme except ``"zeros"``.
    scheme : {"zeros", "gaussian", "xavier_normal", "xavier_uniform", "he_normal"}
        Weight initialiser from :mod:`bnlib.init`, applied to every layer.
    std : float, optional
        Standard deviation for ``scheme="gaussian"`` (required there, and
        rejected by the other schemes).
    gain : float, default 1.0
        Gain of the Xavier schemes (torch uses 5/3 for tanh).
    dtype : {np.float64, np.float32}, default np.float64

    Returns
    -------
    params : list of Layer
        ``params[l].weight`` has shape ``(layer_sizes[l+1], layer_sizes[l])``;
        biases are zero.

    Notes
    -----
    Biases start at zero under every scheme, as in most textbook
    initialisations; the random draws are made layer by layer, first layer
    first, so the same seed gives the same network.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.mlp import init_mlp
    >>> params = init_mlp([4, 8, 2], np.random.default_rng(0), scheme="he_normal")
    >>> [p.weight.shape for p in params], [p.bias.shape for p in params]
    ([(8, 4), (2, 8)], [(8,), (2,)])
    """
    sizes = [int(s) for s in layer_sizes]
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise ValueError(
            "layer_sizes must list at least two positive widths [n_in, ..., n_out], "
            f"got {list(layer_sizes)!r}"
        )
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"scheme must be one of {INIT_SCHEMES}, got {scheme!r}")
    if scheme == "gaussian" and std is None:
        raise ValueError('scheme="gaussian" needs a std, e.g. std=0.01')
    if scheme != "gaussian" and std is not None:
        raise ValueError(f"std is only used by scheme='gaussian', got scheme={scheme!r}")
    if scheme != "zeros" and not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"scheme={scheme!r} needs rng, a numpy.random.Generator such as "
            f"np.random.default_rng(0), got {type(rng).__name__}"
        )
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        if scheme == "zeros":
            w = _init.zeros((fan_out, fan_in), dtype=dtype)
        elif scheme == "gaussian":
            w = _init.gaussian((fan_out, fan_in), std, rng, dtype=dtype)
        elif scheme == "xavier_normal":
            w = _init.xavier_normal(fan_in, fan_out, rng, gain=gain, dtype=dtype)
        elif scheme == "xavier_uniform":
            w = _init.xavier_uniform(fan_in, fan_out, rng, gain=gain, dtype=dtype)
        else:
            w = _init.he_normal(fan_in, fan_out, rng, dtype=dtype)
        params.append(Layer(w, np.zeros(fan_out, dtype=w.dtype)))
    return params


def mlp_forward(x, params, activation="tanh", output_activation="linear"):
    """Run a fully connected network and keep every layer's values.

    Parameters
    ----------
    x : ndarray of shape (N, fan_in_0)
        A batch of inputs.
    params : list of Layer
        As returned by :func:`init_mlp`.
    activation : {"tanh", "sigmoid", "relu", "linear"}, default "tanh"
        Activation after every layer but the last.
    output_activation : {"linear", "tanh", "sigmoid", "relu"}, default "linear"
        Activation after the last layer.

    Returns
    -------
    out : ndarray of shape (N, fan_out_last)
        The network's output, ``cache.acts[-1]``.
    cache : MLPCache
        Per-layer inputs, pre-activations and activations, for
        :func:`mlp_backward` and for inspection.

    Notes
    -----
    For ``l = 0, ..., L-1``: ``z_l = h_l W_l^T + b_l`` and ``h_{l+1} = f_l(z_l)``,
    with ``h_0 = x``, ``f_l`` the hidden activation and ``f_{L-1}`` the output
    activation.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.mlp import Layer, mlp_forward
    >>> params = [Layer(np.array([[1.0, -1.0]]), np.array([0.5]))]
    >>> out, cache = mlp_forward(np.array([[2.0, 1.0]]), params)
    >>> out, cache.preacts[0]
    (array([[1.5]]), array([[1.5]]))
    """
    hidden_f, _ = _check_activation(activation)
    out_f, _ = _check_activation(output_activation, "output_activation")
    h = as_float_array(x)
    if h.ndim != 2:
        raise ValueError(
            f"Expected x of shape (N, n_features), got a {h.ndim}-D array of shape "
            f"{h.shape}; reshape a single sample with x.reshape(1, -1)"
        )
    check_finite(h)
    if len(params) == 0:
        raise ValueError("params must hold at least one Layer, got an empty list")
    inputs, preacts, acts = [], [], []
    for l, (w, b) in enumerate(params):
        if w.ndim != 2 or w.shape[1] != h.shape[1] or b.shape != (w.shape[0],):
            raise ValueError(
                f"layer {l} expects an input with {w.shape[1] if w.ndim == 2 else '?'} "
                f"features and a bias of shape ({w.shape[0]},); got input of shape "
                f"{h.shape}, weight {w.shape}, bias {b.shape}"
            )
        z = h @ w.T + b
        f = out_f if l == len(params) - 1 else hidden_f
        inputs.append(h)
        preacts.append(z)
        h = f(z)
        acts.append(h)
    return h, MLPCache(inputs, preacts, acts, list(params), activation, output_activation)


def mlp_backward(dout, cache):
    """Backpropagate an upstream gradient through the network of ``cache``.

    Parameters
    ----------
    dout : ndarray of shape (N, fan_out_last)
        Gradient of the loss with respect to the network's output.
    cache : MLPCache
        From :func:`mlp_forward`.

    Returns
    -------
    grads : MLPGrads
        ``grads.params[l]`` is ``Layer(dW_l, db_l)``; ``grads.preacts[l]`` is
        ``dL/dz_l``; ``grads.x`` is ``dL/dx``.

    Notes
    -----
    From the last layer down: ``dz_l = dh_{l+1} * f_l'(z_l)``,
    ``dW_l = dz_l^T h_l``, ``db_l = sum_n dz_l``, ``dh_l = dz_l W_l``. Each
    layer multiplies the gradient by ``f'`` (at most 1/4 for the sigmoid) and
    by ``W_l``; over many layers these products shrink or grow geometrically.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.mlp import Layer, mlp_forward, mlp_backward
    >>> params = [Layer(np.array([[1.0, -1.0]]), np.array([0.5]))]
    >>> out, cache = mlp_forward(np.array([[2.0, 1.0]]), params)
    >>> g = mlp_backward(np.ones_like(out), cache)
    >>> g.params[0].weight, g.params[0].bias, g.x
    (array([[2., 1.]]), array([1.]), array([[ 1., -1.]]))
    """
    dh = as_float_array(dout)
    if dh.shape != cache.acts[-1].shape:
        raise ValueError(
            f"dout must have the output's shape {cache.acts[-1].shape}, got {dh.shape}"
        )
    _, hidden_df = ACTIVATIONS[cache.activation]
    _, out_df = ACTIVATIONS[cache.output_activation]
    n_layers = len(cache.params)
    param_grads = [None] * n_layers
    preact_grads = [None] * n_layers
    for l in reversed(range(n_layers)):
        df = out_df if l == n_layers - 1 else hidden_df
        dz = dh * df(cache.preacts[l])
        w = cache.params[l].weight
        param_grads[l] = Layer(dz.T @ cache.inputs[l], dz.sum(axis=0))
        preact_grads[l] = dz
        dh = dz @ w
    return MLPGrads(param_grads, preact_grads, dh)


def mse_loss(pred, target):
    """Mean squared error and its gradient, as ``torch.nn.MSELoss()``.

    Parameters
    ----------
    pred : ndarray of shape (N, D)
    target : ndarray of shape (N, D)

    Returns
    -------
    loss : float
        ``mean((pred - target) ** 2)`` over all ``N * D`` entries.
    dpred : ndarray of shape (N, D)
        ``2 (pred - target) / (N * D)``.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.mlp import mse_loss
    >>> loss, d = mse_loss(np.array([[1.0], [3.0]]), np.array([[0.0], [0.0]]))
    >>> loss, d.ravel()
    (5.0, array([1., 3.]))
    """
    pred = as_float_array(pred, "pred")
    target = np.asarray(target, dtype=pred.dtype)
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {pred.shape} and {target.shape}"
        )
    diff = pred - target
    return float(np.mean(diff * diff)), 2 * diff / diff.size


def softmax_cross_entropy(logits, labels):
    """Softmax cross-entropy and its gradient, as ``torch.nn.CrossEntropyLoss()``.

    Parameters
    ----------
    logits : ndarray of shape (N, K)
        Unnormalised class scores.
    labels : ndarray of int, shape (N,)
        Class indices in ``[0, K)``.

    Returns
    -------
    loss : float
        ``mean_n(-log softmax(logits_n)[labels_n])``.
    dlogits : ndarray of shape (N, K)
        ``(softmax(logits) - onehot(labels)) / N``.

    Notes
    -----
    The log-softmax is computed after subtracting each row's maximum, so large
    logits do not overflow.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.mlp import softmax_cross_entropy
    >>> loss, d = softmax_cross_entropy(np.zeros((2, 4)), np.array([0, 3]))
    >>> round(loss, 4), d[0]
    (1.3863, array([-0.375,  0.125,  0.125,  0.125]))
    """
    logits = as_float_array(logits, "logits")
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(
            f"Expected logits of shape (N, K) and labels of shape (N,), got "
            f"{logits.shape} and {labels.shape}"
        )
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(f"labels must be integers in [0, {logits.shape[1]}), got {labels!r}")
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = logits.shape[0]
    loss = -float(np.mean(log_probs[np.arange(n), labels]))
    dlogits = np.exp(log_probs)
    dlogits[np.arange(n), labels] -= 1
    return loss, dlogits / n


def sgd_step(params, grads, lr):
    """One plain gradient-descent step, returning new parameters.

    Parameters
    ----------
    params : list of Layer
    grads : MLPGrads or list of Layer
        Gradients shaped like ``params`` (an :class:`MLPGrads` is accepted
        as is).
    lr : float
        Learning rate.

    Returns
    -------
    new_params : list of Layer
        ``W - lr * dW`` and ``b - lr * db`` for every layer; ``params`` is
        left unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> from bnlib.mlp import Layer, sgd_step
    >>> p = [Layer(np.ones((1, 2)), np.zeros(1))]
    >>> sgd_step(p, [Layer(np.ones((1, 2)), np.ones(1))], lr=0.5)[0]
    Layer(weight=array([[0.5, 0.5]]), bias=array([-0.5]))
    """
    if isinstance(grads, MLPGrads):
        grads = grads.params
    if len(grads) != len(params):
        raise ValueError(f"got {len(params)} layers of params but {len(grads)} of grads")
    return [Layer(p.weight - lr * g.weight, p.bias - lr * g.bias)
            for p, g in zip(params, grads)]
