"""Central differences and the relative error used to compare gradients."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from bnlib.gradcheck import numerical_gradient, relative_error


def test_numerical_gradient_of_a_square():
    x = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -1.5]])
    dout = np.array([[1.0, 2.0, -1.0], [0.5, 1.0, 3.0]])
    assert_allclose(numerical_gradient(lambda z: z**2, x, dout), 2 * x * dout, rtol=1e-9, atol=1e-12)


def test_numerical_gradient_of_sine():
    x = np.linspace(-3.0, 3.0, 13)
    dout = np.random.default_rng(0).normal(size=13)
    grad = numerical_gradient(np.sin, x, dout)
    assert relative_error(grad, np.cos(x) * dout) < 1e-8


def test_numerical_gradient_of_a_reduction():
    # f maps (2, 3) to (3,): the column sums of x times its first row
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    dout = np.array([1.0, -1.0, 2.0])
    grad = numerical_gradient(lambda z: z.sum(axis=0) * z[0], x, dout)
    expected = np.array([dout * (x.sum(axis=0) + x[0]), dout * x[0]])
    assert_allclose(grad, expected, rtol=1e-9)


def test_numerical_gradient_does_not_modify_x_and_returns_float64():
    x = np.array([0.3, -1.2, 2.0], dtype=np.float32)
    original = x.copy()
    seen = []

    def f(z):
        seen.append(z)
        return z**3

    grad = numerical_gradient(f, x, np.ones(3))
    assert_array_equal(x, original)
    assert grad.dtype == np.float64
    assert_allclose(grad, 3 * x.astype(np.float64) ** 2, rtol=1e-6)
    # f gets a fresh array on every call, so keeping or mutating it is harmless
    assert len({id(z) for z in seen}) == len(seen) == 6


def test_numerical_gradient_rejects_bad_arguments():
    with pytest.raises(TypeError, match="f must be callable"):
        numerical_gradient(3.0, np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="h must be a positive finite number, got 0.0"):
        numerical_gradient(np.sin, np.ones(2), np.ones(2), h=0.0)
    with pytest.raises(TypeError, match="x must be an array of real numbers"):
        numerical_gradient(np.sin, np.ones(2, dtype=complex), np.ones(2))


def test_numerical_gradient_rejects_dout_of_another_shape():
    # no silent broadcasting of dout against f(x)
    with pytest.raises(ValueError, match=r"dout must have the shape of f\(x\), \(3,\), got shape \(\)"):
        numerical_gradient(np.sin, np.ones(3), 1.0)
    with pytest.raises(ValueError, match=r"dout must have the shape of f\(x\), \(\), got shape \(3,\)"):
        numerical_gradient(np.sum, np.ones(3), np.ones(3))
    grad = numerical_gradient(np.sum, np.arange(3.0), np.float64(2.0))
    assert_allclose(grad, [2.0, 2.0, 2.0])


def test_relative_error_basic_cases():
    assert relative_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error([1.0], [3.0]) == pytest.approx(0.5)
    # elementwise: the small entry's error dominates
    assert relative_error([100.0, 1e-3], [100.0, 2e-3]) == pytest.approx(1e-3 / 3e-3)
    # the 1e-8 floor: tiny absolute differences between near-zeros stay small
    assert relative_error([0.0], [1e-12]) == pytest.approx(1e-4)
    assert relative_error(np.array([]), np.array([])) == 0.0
    assert isinstance(relative_error([1.0], [2.0]), float)


def test_relative_error_is_symmetric():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=10), rng.normal(size=10)
    assert relative_error(a, b) == relative_error(b, a)


def test_relative_error_rejects_a_shape_mismatch():
    with pytest.raises(ValueError, match=r"a and b must have the same shape, got \(3,\) and \(3, 1\)"):
        relative_error(np.ones(3), np.ones((3, 1)))


# ---------------------------------------------------------------- robustness (issue #16)


def _forward(z):
    """Stands for a function returning (y, cache), like batchnorm_forward."""
    return z * 2, {"z": z}


def test_f_returning_a_tuple_names_f():
    with pytest.raises(TypeError, match=r"f \(_forward\) must return one array shaped like dout, got a tuple of 2 items.*\[0\]"):
        numerical_gradient(_forward, np.ones((3, 2)), np.ones((3, 2)))
    grad = numerical_gradient(lambda z: _forward(z)[0], np.ones((3, 2)), np.ones((3, 2)))
    assert_allclose(grad, 2.0)


def test_f_returning_none_names_f_not_dout():
    def forgot_return(z):
        z * 2

    with pytest.raises(TypeError, match=r"f \(forgot_return\) must return an array shaped like dout, got None") as excinfo:
        numerical_gradient(forgot_return, np.ones(3), np.ones(3))
    assert "dout must have" not in str(excinfo.value)


@pytest.mark.parametrize("value, error, message", [
    ([[1.0, 2.0], [3.0]], ValueError, r"f\(x\) \(the value of <lambda>\) must be an array of real numbers, got a list that is not a rectangular"),
    ("abc", TypeError, r"f\(x\) \(the value of <lambda>\) must be an array of real numbers"),
    (np.ones(3, dtype=complex), TypeError, r"f\(x\) \(the value of <lambda>\).*complex"),
])
def test_f_returning_something_that_is_not_an_array(value, error, message):
    with pytest.raises(error, match=message):
        numerical_gradient(lambda z: value, np.ones(3), np.ones(3))


@pytest.mark.parametrize("h, error, message", [
    (None, TypeError, "h must be a positive real number, got None"),
    ("1e-5", TypeError, "h must be a positive real number, got '1e-5'"),
    (-1e-5, ValueError, "h must be a positive finite number, got -1e-05"),
    (np.nan, ValueError, "h must be a positive finite number, got nan"),
    (np.inf, ValueError, "h must be a positive finite number, got inf"),
    (True, TypeError, "h must be a positive real number, got True"),
])
def test_numerical_gradient_rejects_bad_steps(h, error, message):
    with pytest.raises(error, match=message):
        numerical_gradient(np.sin, np.ones(2), np.ones(2), h=h)


def test_numerical_gradient_rejects_non_finite_x_dout_and_values():
    with pytest.raises(ValueError, match="x must contain only finite values"):
        numerical_gradient(np.sin, np.array([1.0, np.nan]), np.ones(2))
    with pytest.raises(ValueError, match="dout must contain only finite values"):
        numerical_gradient(np.sin, np.ones(2), np.array([1.0, np.inf]))
    with pytest.raises(TypeError, match="dout must be an array of real numbers"):
        numerical_gradient(np.sin, np.ones(2), np.ones(2, dtype=complex))
    with pytest.raises(ValueError, match=r"f has NaN or infinite values within h=1e-05 of x"):
        numerical_gradient(np.log, np.array([1.0, 0.0]), np.ones(2))


def test_relative_error_of_tuples_of_gradients_is_a_clear_error():
    grads = (np.ones((3, 2)), np.ones(2), np.ones(2))
    with pytest.raises(TypeError, match=r"a must be one array, got a tuple of 3 arrays; compare gradients one at a time"):
        relative_error(grads, grads)
    with pytest.raises(TypeError, match=r"b must be one array, got a list of 2 arrays"):
        relative_error(np.ones(2), [np.ones(2), np.ones(2)])


def test_relative_error_rejects_non_finite_and_non_real_values():
    with pytest.raises(ValueError, match="a must contain only finite values"):
        relative_error([np.nan], [1.0])
    with pytest.raises(ValueError, match="b must contain only finite values"):
        relative_error([1.0], [np.inf])
    with pytest.raises(TypeError, match="a must be an array of real numbers"):
        relative_error(["x"], [1.0])


def test_relative_error_near_the_top_of_float64():
    big = np.finfo(np.float64).max
    assert relative_error([big], [-big]) == 1.0
    assert relative_error([big], [big]) == 0.0
    assert relative_error([big], [big / 2]) == pytest.approx(1 / 3)


@pytest.mark.parametrize("layout", ["F", "strided", "broadcast"])
def test_numerical_gradient_of_any_layout(layout):
    # found by the fuzz: a Fortran-order x made probe.reshape(-1) a copy, and every entry 0
    x = np.arange(6.0).reshape(2, 3) / 7
    arg = {"F": np.asfortranarray(x), "strided": np.repeat(x, 2, axis=1)[:, ::2],
           "broadcast": np.broadcast_to(x[:1], (2, 3))}[layout]
    grad = numerical_gradient(np.sin, arg, np.ones((2, 3)))
    assert_allclose(grad, np.cos(np.asarray(arg)), rtol=1e-8)
