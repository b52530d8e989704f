"""Tests for bnlib.linreg against closed forms and np.linalg.lstsq."""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from bnlib.gradcheck import numerical_gradient
from bnlib.linreg import (
    gradient_descent,
    least_squares_gradient,
    least_squares_hessian,
    least_squares_loss,
    steps_to_tolerance,
)


@pytest.fixture
def problem():
    """Centred two-feature regression with features on very different scales."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 2)) @ np.array([[1.0, 0.3], [0.0, 1.0]]) * [5.0, 0.4]
    x = x - x.mean(axis=0)
    y = x @ np.array([2.0, -30.0]) + rng.normal(scale=0.5, size=300)
    return x, y - y.mean()


def lstsq(x, y):
    w, *_ = np.linalg.lstsq(x, y, rcond=None)
    return w


def test_loss_matches_direct_formula(problem):
    x, y = problem
    w = np.array([1.5, -3.0])
    assert_allclose(least_squares_loss(x, y, w), np.mean((x @ w - y) ** 2) / 2, rtol=1e-14)


def test_loss_on_a_grid_matches_pointwise(problem):
    x, y = problem
    grid = np.stack(np.meshgrid(np.linspace(-1, 4, 7), np.linspace(-40, 10, 5)), axis=-1)
    batch = least_squares_loss(x, y, grid)
    assert batch.shape == (5, 7)
    pointwise = np.array([[least_squares_loss(x, y, w) for w in row] for row in grid])
    assert_allclose(batch, pointwise, rtol=1e-10)


def test_gradient_matches_central_differences(problem):
    x, y = problem
    w = np.array([0.7, 4.0])
    numeric = numerical_gradient(lambda v: np.array(least_squares_loss(x, y, v)), w, np.array(1.0))
    assert_allclose(least_squares_gradient(x, y, w), numeric, rtol=1e-7)


def test_gradient_vanishes_at_the_lstsq_solution(problem):
    x, y = problem
    assert_allclose(least_squares_gradient(x, y, lstsq(x, y)), 0, atol=1e-10)


def test_hessian_is_covariance_for_centred_data(problem):
    x, _ = problem
    assert_allclose(least_squares_hessian(x), np.cov(x.T, bias=True), rtol=1e-12)


def test_gradient_descent_converges_to_lstsq(problem):
    x, y = problem
    lam = np.linalg.eigvalsh(least_squares_hessian(x))
    path = gradient_descent(x, y, lr=2 / (lam[0] + lam[-1]), n_steps=5000)
    assert not path.diverged
    assert path.weights.shape == (5001, 2) and path.losses.shape == (5001,)
    assert_allclose(path.weights[-1], lstsq(x, y), rtol=1e-9)
    assert_allclose(path.losses[-1], least_squares_loss(x, y, lstsq(x, y)), rtol=1e-12)


def test_gradient_descent_steps_follow_the_update_rule(problem):
    x, y = problem
    w0 = np.array([1.0, 1.0])
    path = gradient_descent(x, y, lr=0.01, n_steps=5, w0=w0)
    w = w0.copy()
    for k in range(1, 6):
        w = w - 0.01 * least_squares_gradient(x, y, w)
        assert_allclose(path.weights[k], w, rtol=1e-12)
        assert_allclose(path.losses[k], least_squares_loss(x, y, w), rtol=1e-10)
    assert_allclose(w0, [1.0, 1.0])  # not modified


def test_stability_threshold_is_two_over_lambda_max(problem):
    x, y = problem
    lam_max = np.linalg.eigvalsh(least_squares_hessian(x))[-1]
    assert not gradient_descent(x, y, lr=0.99 * 2 / lam_max, n_steps=3000).diverged
    unstable = gradient_descent(x, y, lr=1.01 * 2 / lam_max, n_steps=100_000)
    assert unstable.diverged
    assert np.all(np.isfinite(unstable.losses))


def test_steps_at_the_optimal_rate_match_the_condition_number(problem):
    """At lr = 2/(l_min + l_max) both eigen-directions shrink by (k-1)/(k+1) per step."""
    x, y = problem
    lam = np.linalg.eigvalsh(least_squares_hessian(x))
    kappa = lam[-1] / lam[0]
    rho = (kappa - 1) / (kappa + 1)
    path = gradient_descent(x, y, lr=2 / (lam[0] + lam[-1]), n_steps=20_000)
    min_loss = least_squares_loss(x, y, lstsq(x, y))
    gap = path.losses - min_loss
    assert_allclose(gap[1:200] / gap[0], rho ** (2 * np.arange(1, 200)), rtol=1e-6)
    tol = 1e-6
    assert steps_to_tolerance(path.losses, min_loss, tol) == math.ceil(math.log(tol) / (2 * math.log(rho)))


def test_scaling_is_a_reparameterisation(problem):
    """GD on standardised features = GD on raw features with per-feature rates lr / s_j**2."""
    x, y = problem
    s = x.std(axis=0)
    scaled = gradient_descent(x / s, y, lr=0.5, n_steps=50)
    w = np.zeros(2)
    for k in range(1, 51):
        w = w - 0.5 / s**2 * least_squares_gradient(x, y, w)
        assert_allclose(w * s, scaled.weights[k], rtol=1e-10)


def test_steps_to_tolerance():
    assert steps_to_tolerance(np.array([4.0, 3.0, 2.5, 2.1]), 2.0, 0.3) == 2
    assert steps_to_tolerance(np.array([4.0, 3.0]), 2.0, 0.3) is None
    assert steps_to_tolerance(np.array([4.0]), 2.0, 0.3) is None
    with pytest.raises(ValueError, match="tol"):
        steps_to_tolerance(np.array([1.0, 0.0]), 0.0, 1.5)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: least_squares_loss(np.ones(3), np.ones(3), np.ones(1)), "2-D"),
        (lambda: least_squares_loss(np.ones((3, 2)), np.ones(4), np.ones(2)), r"y of shape \(n_samples,\)"),
        (lambda: least_squares_loss(np.ones((3, 2)), np.ones(3), np.ones(3)), "one weight per column"),
        (lambda: gradient_descent(np.ones((3, 2)), np.ones(3), lr=-1.0, n_steps=3), "lr must be"),
        (lambda: gradient_descent(np.ones((3, 2)), np.ones(3), lr=0.1, n_steps=2.5), "n_steps"),
        (lambda: gradient_descent(np.ones((3, 2)), np.full(3, np.nan), lr=0.1, n_steps=2), "finite"),
    ],
)
def test_bad_input_gets_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
