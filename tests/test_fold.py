"""Folding inference-mode BN into the Linear or Conv layer before it, against torch's fusion utilities."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from bnlib.batchnorm import batchnorm_inference, fold_batchnorm

torch = pytest.importorskip("torch")
from torch.nn.utils.fusion import fuse_conv_bn_weights, fuse_linear_bn_weights  # noqa: E402

F = torch.nn.functional


def bn_params(out, seed):
    rng = np.random.default_rng(seed)
    gamma = rng.normal(1.0, 0.5, out)
    beta = rng.normal(size=out)
    running_mean = rng.normal(size=out)
    running_var = rng.uniform(0.2, 3.0, out)
    return gamma, beta, running_mean, running_var


def torch_fused(fuse, weight, bias, gamma, beta, running_mean, running_var, eps):
    t = torch.tensor
    bias = None if bias is None else t(bias)
    w, b = fuse(t(weight), bias, t(running_mean), t(running_var), eps, t(gamma), t(beta))
    return w.detach().numpy(), b.detach().numpy()


@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_fold_matches_torch(with_bias):
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(5, 7))
    bias = rng.normal(size=5) if with_bias else None
    params = bn_params(5, 1)
    w, b = fold_batchnorm(weight, bias, *params, eps=1e-3)
    w_ref, b_ref = torch_fused(fuse_linear_bn_weights, weight, bias, *params, 1e-3)
    assert_allclose(w, w_ref, rtol=1e-12, atol=1e-14)
    assert_allclose(b, b_ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kernel", [(3,), (3, 2), (2, 2, 2)], ids=["conv1d", "conv2d", "conv3d"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv_fold_matches_torch(kernel, with_bias):
    rng = np.random.default_rng(2)
    weight = rng.normal(size=(4, 3) + kernel)
    bias = rng.normal(size=4) if with_bias else None
    params = bn_params(4, 3)
    w, b = fold_batchnorm(weight, bias, *params)
    w_ref, b_ref = torch_fused(fuse_conv_bn_weights, weight, bias, *params, 1e-5)
    assert_allclose(w, w_ref, rtol=1e-12, atol=1e-14)
    assert_allclose(b, b_ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("with_bias", [True, False])
def test_folded_linear_equals_linear_then_bn(with_bias):
    rng = np.random.default_rng(4)
    weight = rng.normal(size=(6, 8))
    bias = rng.normal(size=6) if with_bias else None
    params = bn_params(6, 5)
    x = rng.normal(size=(32, 8))
    pre = x @ weight.T + (0.0 if bias is None else bias)
    expected = batchnorm_inference(pre, *params)
    w, b = fold_batchnorm(weight, bias, *params)
    assert_allclose(x @ w.T + b, expected, rtol=1e-12, atol=1e-12)
    # and torch's modules agree
    linear = torch.nn.Linear(8, 6, bias=with_bias, dtype=torch.float64)
    bn = torch.nn.BatchNorm1d(6, dtype=torch.float64).eval()
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight))
        if with_bias:
            linear.bias.copy_(torch.tensor(bias))
        for name, value in zip(["weight", "bias", "running_mean", "running_var"], params):
            getattr(bn, name).copy_(torch.tensor(value))
        reference = bn(linear(torch.tensor(x))).numpy()
    assert_allclose(x @ w.T + b, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("with_bias", [True, False])
def test_folded_conv_equals_conv_then_bn(with_bias):
    rng = np.random.default_rng(6)
    weight = rng.normal(size=(5, 3, 3, 3))
    bias = rng.normal(size=5) if with_bias else None
    params = bn_params(5, 7)
    x = torch.tensor(rng.normal(size=(2, 3, 8, 8)))
    tbias = None if bias is None else torch.tensor(bias)
    pre = F.conv2d(x, torch.tensor(weight), tbias, padding=1).numpy()
    expected = batchnorm_inference(pre, *params)
    w, b = fold_batchnorm(weight, bias, *params)
    folded = F.conv2d(x, torch.tensor(w), torch.tensor(b), padding=1).numpy()
    assert_allclose(folded, expected, rtol=1e-12, atol=1e-12)


def test_fold_keeps_float32_and_arguments():
    args = [a.astype(np.float32) for a in (np.ones((3, 2, 2, 2)), np.ones(3), *bn_params(3, 8))]
    copies = [a.copy() for a in args]
    w, b = fold_batchnorm(*args)
    assert w.dtype == b.dtype == np.float32
    for arg, original in zip(args, copies):
        assert_array_equal(arg, original)
    w, b = fold_batchnorm(args[0], None, *args[2:])
    assert w.dtype == b.dtype == np.float32


def test_fold_by_hand():
    # a = 1 / sqrt(4) = 0.5: weight halves; bias = 0.5 * (1 - 1) + 0.5
    w, b = fold_batchnorm([[2.0, -4.0]], [1.0], [1.0], [0.5], [1.0], [4.0], eps=0.0)
    assert_array_equal(w, [[1.0, -2.0]])
    assert_array_equal(b, [0.5])


def test_fold_with_a_one_dimensional_weight_is_rejected():
    message = r"weight must have shape \(out, in\) or \(out, in, \*kernel\), got shape \(3,\)"
    with pytest.raises(ValueError, match=message):
        fold_batchnorm(np.ones(3), None, *bn_params(3, 0))


@pytest.mark.parametrize("name", ["bias", "gamma", "beta", "running_mean", "running_var"])
def test_fold_with_parameters_of_the_wrong_length_is_rejected(name):
    args = dict(zip(["gamma", "beta", "running_mean", "running_var"], bn_params(3, 0)), bias=np.zeros(3))
    args[name] = np.ones(4)
    with pytest.raises(ValueError, match=rf"{name} must have shape \(C,\) = \(3,\)"):
        fold_batchnorm(np.ones((3, 2)), **args)


def test_fold_with_bad_values_is_rejected():
    gamma, beta, running_mean, _ = bn_params(2, 0)
    with pytest.raises(ValueError, match="running_var must be non-negative"):
        fold_batchnorm(np.ones((2, 2)), None, gamma, beta, running_mean, np.array([1.0, -0.5]))
    with pytest.raises(ValueError, match="weight must contain only finite values"):
        fold_batchnorm(np.array([[1.0, np.inf], [0.0, 1.0]]), None, gamma, beta, running_mean, np.ones(2))
    with pytest.raises(ValueError, match="eps must be a non-negative finite number"):
        fold_batchnorm(np.ones((2, 2)), None, gamma, beta, running_mean, np.ones(2), eps=-1.0)
    with pytest.raises(TypeError, match="weight must be an array of real numbers"):
        fold_batchnorm(np.ones((2, 2), dtype=complex), None, gamma, beta, running_mean, np.ones(2))
