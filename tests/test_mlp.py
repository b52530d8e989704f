"""Tests for bnlib.mlp: gradients against central differences and torch autograd (float64)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from bnlib import init as bn_init
from bnlib.gradcheck import numerical_gradient, relative_error
from bnlib.mlp import (
    ACTIVATIONS,
    INIT_SCHEMES,
    Layer,
    MLPGrads,
    init_mlp,
    mlp_backward,
    mlp_forward,
    mse_loss,
    sgd_step,
    softmax_cross_entropy,
)

torch = pytest.importorskip("torch")

SIZES = [5, 7, 6, 3]
HIDDEN = ["sigmoid", "tanh", "relu", "linear"]


def _net(seed=0, sizes=SIZES, n=4):
    rng = np.random.default_rng(seed)
    params = init_mlp(sizes, rng, scheme="xavier_normal")
    # non-zero biases so that the bias path is exercised too
    params = [Layer(p.weight, rng.normal(scale=0.3, size=p.bias.shape)) for p in params]
    x = rng.normal(size=(n, sizes[0]))
    dout = rng.normal(size=(n, sizes[-1]))
    return params, x, dout


def _replace(params, l, which, value):
    new = list(params)
    new[l] = new[l]._replace(**{which: value})
    return new


# ---------------------------------------------------------------- gradient checks


# Weight scales that keep every layer's gradients of order one, so that the
# central differences (absolute error ~1e-11 in float64 with h=1e-5) are small
# against every entry.
GRADCHECK_STD = {"sigmoid": 1.0, "tanh": 0.6, "relu": 0.7, "linear": 0.6}


def _gradcheck_net(activation, seed):
    rng = np.random.default_rng(seed)
    params = init_mlp([4, 5, 5, 2], rng, scheme="gaussian", std=GRADCHECK_STD[activation])
    params = [Layer(p.weight, rng.normal(scale=0.3, size=p.bias.shape)) for p in params]
    return params, rng.normal(size=(3, 4)), rng.normal(size=(3, 2))


def _analytic_and_numerical(activation, output_activation, seed):
    """Yield (name, analytic, numerical) for dx and every dW, db."""
    params, x, dout = _gradcheck_net(activation, seed)
    _, cache = mlp_forward(x, params, activation, output_activation)
    grads = mlp_backward(dout, cache)
    yield "x", grads.x, numerical_gradient(
        lambda z: mlp_forward(z, params, activation, output_activation)[0], x, dout)
    for l in range(len(params)):
        for which in ("weight", "bias"):
            def f(value, l=l, which=which):
                return mlp_forward(x, _replace(params, l, which, value), activation, output_activation)[0]

            yield f"{which}[{l}]", getattr(grads.params[l], which), numerical_gradient(
                f, getattr(params[l], which), dout)


@pytest.mark.parametrize("activation", HIDDEN)
@pytest.mark.parametrize("output_activation", ["linear", "sigmoid"])
def test_backward_matches_central_differences(activation, output_activation):
    # bnlib's elementwise relative error; one fixed draw, because an entry that
    # happens to cancel to nearly zero can exceed 1e-7 elementwise on other draws.
    for name, analytic, numerical in _analytic_and_numerical(activation, output_activation, seed=0):
        assert relative_error(analytic, numerical) <= 1e-7, name


@pytest.mark.parametrize("activation", HIDDEN)
def test_backward_matches_central_differences_on_many_draws(activation):
    # Relative to each gradient's largest entry, on 10 draws.
    for seed in range(10):
        for name, analytic, numerical in _analytic_and_numerical(activation, "sigmoid", seed):
            scale = np.max(np.abs(analytic))
            assert np.max(np.abs(analytic - numerical)) <= 1e-7 * scale, (seed, name)


@pytest.mark.parametrize("activation", HIDDEN)
def test_backward_matches_torch_autograd(activation):
    params, x, dout = _net(2, sizes=[6, 16, 16, 16, 4], n=9)
    out, cache = mlp_forward(x, params, activation)
    grads = mlp_backward(dout, cache)

    act = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "linear": lambda t: t}[activation]
    tx = torch.tensor(x, requires_grad=True)
    tw = [torch.tensor(p.weight, requires_grad=True) for p in params]
    tb = [torch.tensor(p.bias, requires_grad=True) for p in params]
    h, tz = tx, []
    for l, (w, b) in enumerate(zip(tw, tb)):
        z = torch.nn.functional.linear(h, w, b)
        z.retain_grad()
        tz.append(z)
        h = z if l == len(tw) - 1 else act(z)
    h.backward(torch.tensor(dout))

    assert_allclose(out, h.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert relative_error(grads.x, tx.grad.numpy()) <= 1e-10
    for l in range(len(params)):
        assert relative_error(grads.params[l].weight, tw[l].grad.numpy()) <= 1e-10
        assert relative_error(grads.params[l].bias, tb[l].grad.numpy()) <= 1e-10
        assert relative_error(grads.preacts[l], tz[l].grad.numpy()) <= 1e-10


def test_losses_match_torch():
    rng = np.random.default_rng(3)
    pred, target = rng.normal(size=(8, 3)), rng.normal(size=(8, 3))
    loss, dpred = mse_loss(pred, target)
    tp = torch.tensor(pred, requires_grad=True)
    tl = torch.nn.functional.mse_loss(tp, torch.tensor(target))
    tl.backward()
    assert_allclose(loss, tl.item(), rtol=1e-13)
    assert_allclose(dpred, tp.grad.numpy(), rtol=1e-13)

    logits, labels = rng.normal(size=(8, 5)) * 30, rng.integers(0, 5, size=8)
    loss, dlogits = softmax_cross_entropy(logits, labels)
    tp = torch.tensor(logits, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tp, torch.tensor(labels))
    tl.backward()
    assert_allclose(loss, tl.item(), rtol=1e-12)
    assert_allclose(dlogits, tp.grad.numpy(), rtol=1e-10, atol=1e-15)


# ---------------------------------------------------------------- forward, init, step


def test_forward_cache_holds_every_layer():
    params, x, _ = _net(4)
    out, cache = mlp_forward(x, params, "tanh")
    assert len(cache.inputs) == len(cache.preacts) == len(cache.acts) == len(params)
    assert_array_equal(cache.inputs[0], x)
    for l, (w, b) in enumerate(params):
        assert_allclose(cache.preacts[l], cache.inputs[l] @ w.T + b, rtol=1e-14)
        if l + 1 < len(params):
            assert_array_equal(cache.inputs[l + 1], cache.acts[l])
            assert_allclose(cache.acts[l], np.tanh(cache.preacts[l]), rtol=1e-14)
    assert_array_equal(out, cache.preacts[-1])  # linear output


@pytest.mark.parametrize("scheme", INIT_SCHEMES)
def test_init_mlp_uses_bnlib_init(scheme):
    sizes = [30, 20, 10]
    kwargs = {"std": 0.05} if scheme == "gaussian" else {}
    params = init_mlp(sizes, np.random.default_rng(5), scheme=scheme, **kwargs)
    rng = np.random.default_rng(5)
    for p, (fan_in, fan_out) in zip(params, zip(sizes[:-1], sizes[1:])):
        if scheme == "zeros":
            expected = bn_init.zeros((fan_out, fan_in))
        elif scheme == "gaussian":
            expected = bn_init.gaussian((fan_out, fan_in), 0.05, rng)
        else:
            expected = getattr(bn_init, scheme)(fan_in, fan_out, rng)
        assert_array_equal(p.weight, expected)
        assert_array_equal(p.bias, np.zeros(fan_out))


def test_init_is_reproducible_and_float32_stays_float32():
    a = init_mlp([4, 5, 2], np.random.default_rng(9), scheme="he_normal", dtype=np.float32)
    b = init_mlp([4, 5, 2], np.random.default_rng(9), scheme="he_normal", dtype=np.float32)
    for p, q in zip(a, b):
        assert_array_equal(p.weight, q.weight)
        assert p.weight.dtype == p.bias.dtype == np.float32
    out, cache = mlp_forward(np.ones((3, 4), dtype=np.float32), a, "sigmoid")
    assert out.dtype == np.float32
    assert mlp_backward(np.ones_like(out), cache).params[0].weight.dtype == np.float32


def test_functions_are_pure():
    params, x, dout = _net(6)
    saved = [(p.weight.copy(), p.bias.copy()) for p in params]
    x0, d0 = x.copy(), dout.copy()
    out, cache = mlp_forward(x, params, "relu")
    grads = mlp_backward(dout, cache)
    new = sgd_step(params, grads, lr=0.1)
    assert_array_equal(x, x0)
    assert_array_equal(dout, d0)
    for (w, b), p in zip(saved, params):
        assert_array_equal(p.weight, w)
        assert_array_equal(p.bias, b)
    for p, g, q in zip(params, grads.params, new):
        assert_allclose(q.weight, p.weight - 0.1 * g.weight)
        assert_allclose(q.bias, p.bias - 0.1 * g.bias)


def test_zero_init_gives_exactly_zero_hidden_gradients():
    params = init_mlp([3, 8, 8, 1], scheme="zeros")
    x = np.random.default_rng(7).normal(size=(10, 3))
    out, cache = mlp_forward(x, params, "tanh")
    _, dout = mse_loss(out, np.ones((10, 1)))
    grads = mlp_backward(dout, cache)
    for g in grads.params[:-1]:
        assert_array_equal(g.weight, 0)
        assert_array_equal(g.bias, 0)
    assert grads.params[-1].bias[0] != 0  # only the output bias can learn


def test_gradient_of_sgd_step_decreases_loss():
    rng = np.random.default_rng(8)
    params = init_mlp([2, 16, 1], rng, scheme="xavier_normal")
    x = rng.normal(size=(64, 2))
    y = np.sin(x[:, :1]) * x[:, 1:]
    losses = []
    for _ in range(50):
        out, cache = mlp_forward(x, params, "tanh")
        loss, dout = mse_loss(out, y)
        losses.append(loss)
        params = sgd_step(params, mlp_backward(dout, cache), lr=0.1)
    assert losses[-1] < 0.7 * losses[0]


def test_activations_table():
    assert set(ACTIVATIONS) == {"sigmoid", "tanh", "relu", "linear"}
    assert isinstance(mlp_backward(np.ones((1, 1)), mlp_forward(np.ones((1, 1)), [Layer(np.ones((1, 1)), np.zeros(1))])[1]), MLPGrads)


# ---------------------------------------------------------------- errors


def test_clear_errors():
    params, x, _ = _net(10)
    with pytest.raises(ValueError, match="activation must be one of"):
        mlp_forward(x, params, "softplus")
    with pytest.raises(ValueError, match=r"shape \(N, n_features\)"):
        mlp_forward(x[0], params)
    with pytest.raises(ValueError, match="layer 0 expects an input with 5 features"):
        mlp_forward(x[:, :4], params)
    with pytest.raises(ValueError, match="finite"):
        mlp_forward(np.full_like(x, np.nan), params)
    out, cache = mlp_forward(x, params)
    with pytest.raises(ValueError, match="dout must have the output's shape"):
        mlp_backward(out[:, :1], cache)
    with pytest.raises(ValueError, match="needs a std"):
        init_mlp([2, 3], np.random.default_rng(0), scheme="gaussian")
    with pytest.raises(ValueError, match="only used by scheme='gaussian'"):
        init_mlp([2, 3], np.random.default_rng(0), scheme="he_normal", std=0.1)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        init_mlp([2, 3], scheme="he_normal")
    with pytest.raises(ValueError, match="scheme must be one of"):
        init_mlp([2, 3], np.random.default_rng(0), scheme="orthogonal")
    with pytest.raises(ValueError, match="at least two positive widths"):
        init_mlp([2], np.random.default_rng(0))
    with pytest.raises(ValueError, match="same shape"):
        mse_loss(np.ones((2, 1)), np.ones((2,)))
    with pytest.raises(ValueError, match="labels must be integers"):
        softmax_cross_entropy(np.ones((2, 3)), np.array([0, 3]))
