"""The exercise self-checks pass right answers and name the first problem of wrong ones."""

import numpy as np
import pytest

import bnlib
from bnlib import checks


def naive_forward(x, gamma, beta, eps):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return gamma.reshape(shape) * (x - mean) / np.sqrt(var + eps) + beta.reshape(shape)


def naive_backward(dy, x, gamma, eps):
    _, cache = bnlib.batchnorm_forward(x, gamma, np.zeros_like(gamma), eps)
    return bnlib.batchnorm_backward_graph(dy, cache)


@pytest.mark.parametrize(
    "check, right",
    [
        (checks.check_center, lambda x: x - x.mean(axis=0)),
        (checks.check_standardize, lambda x: np.divide(x - x.mean(0), x.std(0), out=np.zeros_like(x), where=x.std(0) > 0)),
        (checks.check_min_max_scale, bnlib.min_max_scale),
        (checks.check_covariance, lambda x: (x - x.mean(0)).T @ (x - x.mean(0)) / len(x)),
        (checks.check_zca_whiten, bnlib.zca_whiten),
        (checks.check_batchnorm_forward, naive_forward),
        (checks.check_batchnorm_backward, naive_backward),
        (checks.check_batchnorm_inference, bnlib.batchnorm_inference),
        (checks.check_update_running_stats, bnlib.update_running_stats),
        (checks.check_population_statistics, bnlib.population_statistics),
        (checks.check_fold_batchnorm, bnlib.fold_batchnorm),
        (checks.check_sigmoid_grad, lambda x: np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))) ** 2),
    ],
)
def test_right_answers_pass(check, right, capsys):
    result = check(right)
    assert result and result.passed
    assert "passed all" in capsys.readouterr().out


def test_unbiased_variance_is_caught():
    def wrong(x, gamma, beta, eps):
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, -1) + (1,) * (x.ndim - 2)
        var = x.var(axis=axes, ddof=1, keepdims=True)
        return gamma.reshape(shape) * (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(var + eps) + beta.reshape(shape)

    result = checks.check_batchnorm_forward(wrong, verbose=False)
    assert not result
    assert "case 1 of" in result.message and "y differs" in result.message


def test_missing_eps_is_caught():
    def no_eps(x, gamma, beta, eps):
        return naive_forward(x, gamma, beta, 0.0)

    result = checks.check_batchnorm_forward(no_eps, verbose=False)
    assert not result and "y differs" in result.message


def test_nan_output_is_named():
    def no_eps_on_constant(x, gamma, beta, eps):
        y = naive_forward(x, gamma, beta, eps)
        return np.where(x.std(axis=0) == 0, np.nan, y) if x.ndim == 2 else y

    result = checks.check_batchnorm_forward(no_eps_on_constant, verbose=False)
    assert not result and "constant channel" in result.message and "NaN" in result.message


def test_wrong_shape_is_named():
    result = checks.check_center(lambda x: (x - x.mean(axis=0)).ravel(), verbose=False)
    assert not result and "shape" in result.message and "expected shape" in result.message


def test_in_place_modification_is_reported():
    def in_place(x):
        x -= x.mean(axis=0)
        return x

    result = checks.check_center(in_place, verbose=False)
    assert not result and "modified its input" in result.message


def test_exceptions_are_reported_not_raised():
    def broken(dy, x, gamma, eps):
        raise RuntimeError("not written yet")

    result = checks.check_batchnorm_backward(broken, verbose=False)
    assert not result and "RuntimeError: not written yet" in result.message


def test_wrong_number_of_outputs():
    result = checks.check_batchnorm_backward(lambda dy, x, g, e: dy, verbose=False)
    assert not result and "3 outputs" in result.message


def test_wrong_momentum_convention_is_caught():
    def keras_style(rm, rv, bm, bv, n, momentum):
        return momentum * rm + (1 - momentum) * bm, momentum * rv + (1 - momentum) * bv * n / (n - 1)

    result = checks.check_update_running_stats(keras_style, verbose=False)
    assert not result and "mean differs" in result.message


def test_message_does_not_reveal_expected_values():
    def off_by_one(x):
        return x - x.mean(axis=0) + 1.0

    result = checks.check_center(off_by_one, verbose=False)
    assert not result
    assert "array(" not in result.message and "[" not in result.message.split("index")[0]
