"""Tests for bnlib.activations against torch (values and autograd derivatives)."""

import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from bnlib.activations import relu, relu_grad, sigmoid, sigmoid_grad, tanh, tanh_grad

PAIRS = [
    (sigmoid, sigmoid_grad, torch.sigmoid),
    (tanh, tanh_grad, torch.tanh),
    (relu, relu_grad, torch.relu),
]
ALL = [sigmoid, tanh, relu, sigmoid_grad, tanh_grad, relu_grad]


@pytest.fixture
def x():
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [rng.normal(scale=4, size=2000), np.linspace(-30, 30, 601), [0.0, -0.0, 1e-300]]
    )
    return values.reshape(-1, 2, 2)


def torch_value_and_grad(torch_fn, x):
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = torch_fn(t)
    (grad,) = torch.autograd.grad(y.sum(), t)
    return y.detach().numpy(), grad.numpy()


@pytest.mark.parametrize("fn, grad_fn, torch_fn", PAIRS)
def test_matches_torch(x, fn, grad_fn, torch_fn):
    value, grad = torch_value_and_grad(torch_fn, x)
    assert_allclose(fn(x), value, rtol=1e-14, atol=1e-16)
    # torch computes sigma (1 - sigma) and 1 - tanh^2, which lose relative
    # accuracy in the tails; ours keeps it, hence the small absolute slack
    assert_allclose(grad_fn(x), grad, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("fn, grad_fn, torch_fn", PAIRS)
def test_matches_torch_float32(x, fn, grad_fn, torch_fn):
    x32 = x.astype(np.float32)
    t = torch.tensor(x32, requires_grad=True)
    y = torch_fn(t)
    (grad,) = torch.autograd.grad(y.sum(), t)
    assert_allclose(fn(x32), y.detach().numpy(), rtol=1e-6, atol=1e-7)
    assert_allclose(grad_fn(x32), grad.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("fn, grad_fn, torch_fn", PAIRS)
def test_grad_matches_central_differences(fn, grad_fn, torch_fn):
    x = np.linspace(-6, 6, 97) + 0.013  # avoid ReLU's kink at 0
    h = 1e-6
    numeric = (fn(x + h) - fn(x - h)) / (2 * h)
    assert_allclose(grad_fn(x), numeric, rtol=1e-6, atol=1e-9)


def test_sigmoid_grad_max_is_quarter_at_zero():
    x = np.linspace(-10, 10, 20001)
    g = sigmoid_grad(x)
    assert g.max() == 0.25
    assert x[np.argmax(g)] == 0
    assert sigmoid_grad(0.0) == 0.25
    assert_allclose(sigmoid_grad(5.0), np.exp(-5) / (1 + np.exp(-5)) ** 2, rtol=1e-15)


def test_tanh_grad_max_is_one_at_zero():
    assert tanh_grad(0.0) == 1.0
    assert tanh_grad(np.linspace(-5, 5, 1001)).max() == 1.0


def test_relu_grad_at_zero_is_zero_like_torch():
    assert_array_equal(relu_grad(np.array([-1.0, 0.0, -0.0, 1e-300, 2.0])), [0, 0, 0, 1, 1])
    _, grad = torch_value_and_grad(torch.relu, np.array([0.0]))
    assert grad[0] == relu_grad(0.0) == 0


@pytest.mark.parametrize("fn", ALL)
def test_no_overflow_warnings_for_large_inputs(fn):
    x = np.array([-1e308, -1000.0, -710.0, 710.0, 1000.0, 1e308])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            y = fn(x)
            y32 = fn(x[1:-1].astype(np.float32))
    assert np.isfinite(y).all() and np.isfinite(y32).all()


def test_sigmoid_saturates_exactly():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_array_equal(sigmoid(np.array([-1000.0, 1000.0])), [0.0, 1.0])
        assert_array_equal(tanh(np.array([-1000.0, 1000.0])), [-1.0, 1.0])
    # and the derivatives vanish there
    assert_array_equal(sigmoid_grad(np.array([-1000.0, 1000.0])), 0)
    assert_array_equal(tanh_grad(np.array([-1000.0, 1000.0])), 0)


def test_sigmoid_tails_keep_relative_accuracy():
    # 1 - sigmoid(40) rounds to 0 in float64; the derivative must not
    assert_allclose(sigmoid_grad(40.0), np.exp(-40.0), rtol=1e-12)
    assert_allclose(tanh_grad(20.0), 4 * np.exp(-40.0), rtol=1e-12)
    assert_allclose(sigmoid(-40.0), np.exp(-40.0), rtol=1e-12)


def test_sigmoid_symmetry(x):
    assert_allclose(sigmoid(x) + sigmoid(-x), 1, rtol=1e-15)
    assert_array_equal(sigmoid_grad(x), sigmoid_grad(-x))


def test_infinities_follow_torch():
    x = np.array([-np.inf, np.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fn, _, torch_fn in PAIRS:
            assert_array_equal(fn(x), torch_fn(torch.tensor(x)).numpy())
    assert np.isnan(sigmoid(np.array([np.nan]))).all()
    assert np.isnan(relu(np.array([np.nan]))).all()


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_and_shape_preserved(fn, dtype, x):
    xd = x.astype(dtype)
    y = fn(xd)
    assert y.dtype == dtype
    assert y.shape == x.shape


@pytest.mark.parametrize("fn", ALL)
def test_ints_and_scalars(fn):
    assert fn(np.array([-2, 0, 3])).dtype == np.float64
    assert fn(np.array([True, False])).dtype == np.float64
    assert np.ndim(fn(0.5)) == 0
    assert fn(np.float32(0.5)).dtype == np.float32
    assert fn([[1.0, -1.0]]).shape == (1, 2)


@pytest.mark.parametrize("fn", ALL)
def test_inputs_not_modified(fn, x):
    original = x.copy()
    y = fn(x)
    assert_array_equal(x, original)
    assert not np.shares_memory(y, x)


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("bad", [np.array([1 + 2j]), np.array(["a"]), np.array([None])])
def test_non_real_is_type_error(fn, bad):
    with pytest.raises(TypeError, match="real numbers"):
        fn(bad)


# ---------------------------------------------------------------- robustness (issue #16)


@pytest.mark.parametrize("func", [sigmoid, tanh, relu, sigmoid_grad, tanh_grad, relu_grad])
def test_unconvertible_input_names_x(func):
    with pytest.raises(ValueError, match="x must be an array of real numbers, got a list that is not a rectangular"):
        func([[1.0, 2.0], [3.0]])
    with pytest.raises(TypeError, match=r"x must be an array of real numbers, got a Tensor that numpy cannot convert.*requires grad"):
        func(torch.ones(3, requires_grad=True))


@pytest.mark.skipif(np.finfo(np.longdouble).maxexp <= 1024, reason="longdouble is float64 here")
@pytest.mark.parametrize("func", ALL)
def test_longdouble_beyond_float64_names_x(func):
    x = np.array([1.0, np.longdouble("1e4000")])
    with pytest.raises(ValueError, match="x holds values beyond float64's range"):
        func(x)
    assert func(np.array([0.5], dtype=np.longdouble)).dtype == np.float64
