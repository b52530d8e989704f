"""bnlib.batchnorm's forward, backward and inference: torch, central differences, properties."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.testing import assert_allclose, assert_array_equal

from bnlib.batchnorm import (
    BatchNormCache,
    batchnorm_backward,
    batchnorm_backward_graph,
    batchnorm_forward,
    batchnorm_inference,
)
from bnlib.gradcheck import numerical_gradient, relative_error

torch = pytest.importorskip("torch")
F = torch.nn.functional

SHAPES = {
    "NC": (16, 5),
    "NCL": (4, 3, 7),
    "NCHW": (3, 4, 5, 6),
    "NCDHW": (2, 3, 4, 3, 5),
}
BACKWARDS = {"compact": batchnorm_backward, "graph": batchnorm_backward_graph}


def make_batch(shape, seed=0, dtype=np.float64, scale=2.0, shift=3.0):
    """A batch with per-channel offsets and scales, plus gamma, beta and an upstream gradient."""
    rng = np.random.default_rng(seed)
    c = shape[1]
    per_channel = (1, c) + (1,) * (len(shape) - 2)
    x = rng.normal(size=shape) * rng.uniform(0.5, scale, c).reshape(per_channel)
    x += rng.normal(shift, 1.0, c).reshape(per_channel)
    gamma = rng.normal(1.0, 0.5, c)
    beta = rng.normal(0.0, 1.0, c)
    dy = rng.normal(size=shape)
    return tuple(a.astype(dtype) for a in (x, gamma, beta, dy))


def reduce_axes(ndim):
    return (0,) + tuple(range(2, ndim))


def torch_training(x, gamma, beta, dy, eps=1e-5):
    """torch's training-mode batch norm: y, its biased batch statistics, and the autograd gradients."""
    xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    y = F.batch_norm(xt, None, None, gt, bt, training=True, eps=eps)
    y.backward(torch.tensor(dy))
    axes = reduce_axes(x.ndim)
    mean = xt.detach().mean(dim=axes)
    var = xt.detach().var(dim=axes, unbiased=False)
    return (y.detach().numpy(), mean.numpy(), var.numpy(), xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy())


# ------------------------------------------------------------------- torch as oracle


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("eps", [1e-5, 1e-3])
def test_forward_matches_torch(shape, eps):
    x, gamma, beta, dy = make_batch(shape)
    y, cache = batchnorm_forward(x, gamma, beta, eps=eps)
    y_ref, mean_ref, var_ref, *_ = torch_training(x, gamma, beta, dy, eps)
    assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    assert_allclose(cache.mean, mean_ref, rtol=1e-12)
    assert_allclose(cache.var, var_ref, rtol=1e-12)
    # torch's kernel saves the batch mean and 1 / sqrt(biased var + eps) for its backward
    _, saved_mean, saved_inv_std = torch.native_batch_norm(
        torch.tensor(x), torch.tensor(gamma), torch.tensor(beta), None, None, True, 0.1, eps
    )
    assert_allclose(cache.mean, saved_mean.numpy(), rtol=1e-12, atol=1e-14)
    assert_allclose(cache.inv_std, saved_inv_std.numpy(), rtol=1e-12)
    assert isinstance(cache, BatchNormCache)
    assert cache.mean.shape == cache.var.shape == (shape[1],)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("batch", [1, 5])
def test_inference_matches_torch(shape, batch):
    x, gamma, beta, _ = make_batch((batch,) + shape[1:], seed=1)
    rng = np.random.default_rng(2)
    running_mean = rng.normal(size=shape[1])
    running_var = rng.uniform(0.1, 3.0, size=shape[1])
    y = batchnorm_inference(x, gamma, beta, running_mean, running_var, eps=1e-4)
    y_ref = F.batch_norm(
        *(torch.tensor(a) for a in (x, running_mean, running_var, gamma, beta)),
        training=False,
        eps=1e-4,
    )
    assert_allclose(y, y_ref.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backward", BACKWARDS.values(), ids=BACKWARDS.keys())
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_backward_matches_torch_autograd(backward, shape):
    x, gamma, beta, dy = make_batch(shape, seed=3)
    _, cache = batchnorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = backward(dy, cache)
    *_, dx_ref, dgamma_ref, dbeta_ref = torch_training(x, gamma, beta, dy)
    assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-12)
    assert_allclose(dgamma, dgamma_ref, rtol=1e-10, atol=1e-12)
    assert_allclose(dbeta, dbeta_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_graph_and_compact_backward_agree(shape):
    x, gamma, beta, dy = make_batch(shape, seed=4)
    _, cache = batchnorm_forward(x, gamma, beta)
    for compact, graph in zip(batchnorm_backward(dy, cache), batchnorm_backward_graph(dy, cache)):
        assert_allclose(compact, graph, rtol=1e-11, atol=1e-12)


# ------------------------------------------------------------------- central differences


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 2, 2)], ids=["NC", "NCHW"])
def test_gradients_match_central_differences(shape):
    x, gamma, beta, dy = make_batch(shape, seed=5)
    _, cache = batchnorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = batchnorm_backward(dy, cache)

    def out(x=x, gamma=gamma, beta=beta):
        return batchnorm_forward(x, gamma, beta)[0]

    assert relative_error(dx, numerical_gradient(lambda z: out(x=z), x, dy)) <= 1e-7
    assert relative_error(dgamma, numerical_gradient(lambda g: out(gamma=g), gamma, dy)) <= 1e-7
    assert relative_error(dbeta, numerical_gradient(lambda b: out(beta=b), beta, dy)) <= 1e-7


# ------------------------------------------------------------------- properties


@pytest.mark.parametrize("backward", BACKWARDS.values(), ids=BACKWARDS.keys())
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_dx_sums_to_zero_and_is_orthogonal_to_x_hat(backward, shape):
    x, gamma, beta, dy = make_batch(shape, seed=6)
    axes = reduce_axes(x.ndim)
    # The sum is zero for every eps; orthogonality to x_hat is exact only at eps=0.
    _, cache = batchnorm_forward(x, gamma, beta, eps=0.0)
    dx, _, _ = backward(dy, cache)
    scale = np.abs(dx).max()
    assert_allclose(dx.sum(axis=axes), 0.0, atol=1e-12 * scale * dx.size)
    assert_allclose((dx * cache.x_hat).sum(axis=axes), 0.0, atol=1e-12 * scale * dx.size)
    _, cache = batchnorm_forward(x, gamma, beta, eps=1e-2)
    dx, _, _ = backward(dy, cache)
    assert_allclose(dx.sum(axis=axes), 0.0, atol=1e-12 * np.abs(dx).max() * dx.size)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_output_has_mean_zero_and_variance_one_per_channel(shape):
    x, _, _, _ = make_batch(shape, seed=7, scale=10.0, shift=50.0)
    c = shape[1]
    y, cache = batchnorm_forward(x, np.ones(c), np.zeros(c), eps=0.0)
    axes = reduce_axes(x.ndim)
    assert_allclose(y.mean(axis=axes), 0.0, atol=1e-13)
    assert_allclose(y.var(axis=axes), 1.0, rtol=1e-12)
    assert_allclose(cache.x_hat, y, rtol=1e-15, atol=0)


def test_gamma_and_beta_set_each_channels_mean_and_std():
    x, gamma, beta, _ = make_batch((64, 3, 4), seed=8)
    y, _ = batchnorm_forward(x, gamma, beta, eps=0.0)
    assert_allclose(y.mean(axis=(0, 2)), beta, atol=1e-12)
    assert_allclose(y.std(axis=(0, 2)), np.abs(gamma), rtol=1e-12)


def test_gamma_sigma_beta_mu_recover_the_identity():
    x, _, _, _ = make_batch((32, 4), seed=9)
    _, cache = batchnorm_forward(x, np.ones(4), np.zeros(4), eps=0.0)
    y, _ = batchnorm_forward(x, np.sqrt(cache.var), cache.mean, eps=0.0)
    assert_allclose(y, x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 2, 2)], ids=["NC", "NCHW"])
def test_constant_channel_gives_zero_not_nan(shape):
    x, gamma, beta, dy = make_batch(shape, seed=10)
    x[:, 1] = 7.25
    y, cache = batchnorm_forward(x, gamma, beta)
    assert cache.var[1] == 0.0
    assert np.isfinite(y).all()
    assert_allclose(y[:, 1], beta[1], atol=1e-12)
    for backward in BACKWARDS.values():
        grads = backward(dy, cache)
        assert all(np.isfinite(g).all() for g in grads)
    y = batchnorm_inference(x, gamma, beta, cache.mean, cache.var)
    assert np.isfinite(y).all()


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 2, 2)], ids=["NC", "NCHW"])
def test_float32_stays_float32(shape):
    x, gamma, beta, dy = make_batch(shape, seed=11, dtype=np.float32)
    y, cache = batchnorm_forward(x, gamma, beta)
    assert y.dtype == cache.x_hat.dtype == cache.mean.dtype == cache.var.dtype == np.float32
    for backward in BACKWARDS.values():
        assert [g.dtype for g in backward(dy, cache)] == [np.float32] * 3
    y = batchnorm_inference(x, gamma, beta, cache.mean, cache.var)
    assert y.dtype == np.float32
    # float64 parameters follow the input's dtype
    y, _ = batchnorm_forward(x, gamma.astype(np.float64), beta.astype(np.float64))
    assert y.dtype == np.float32


@pytest.mark.parametrize("shape", [(256, 3), (16, 3, 8, 8)], ids=["NC", "NCHW"])
def test_float32_with_a_large_offset_keeps_its_variance(shape):
    rng = np.random.default_rng(12)
    x = (rng.normal(size=shape) + 1e4).astype(np.float32)
    c = shape[1]
    y, cache = batchnorm_forward(x, np.ones(c, np.float32), np.zeros(c, np.float32), eps=0.0)
    axes = reduce_axes(x.ndim)
    y64 = y.astype(np.float64)
    assert_allclose(y64.var(axis=axes), 1.0, atol=1e-3)
    assert_allclose(y64.mean(axis=axes), 0.0, atol=1e-3)
    exact = x.astype(np.float64).var(axis=axes)
    assert_allclose(cache.var, exact, rtol=1e-3)


@pytest.mark.parametrize("shape", [(512, 64), (8, 16, 16, 16)], ids=["NC", "NCHW"])
def test_float32_is_close_to_float64(shape):
    x, gamma, beta, dy = make_batch(shape, seed=13, scale=5.0, shift=10.0)
    x32, g32, b32, dy32 = (a.astype(np.float32) for a in (x, gamma, beta, dy))
    y, cache = batchnorm_forward(x, gamma, beta)
    y32, cache32 = batchnorm_forward(x32, g32, b32)
    assert np.abs(y32 - y).max() <= 1e-5 * np.abs(y).max()
    for exact, approx in zip(batchnorm_backward(dy, cache), batchnorm_backward(dy32, cache32)):
        assert np.abs(approx - exact).max() <= 1e-4 * np.abs(exact).max()


def test_arguments_are_never_modified():
    x, gamma, beta, dy = make_batch((6, 3, 4), seed=14)
    running_mean, running_var = np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 3.0])
    args = (x, gamma, beta, dy, running_mean, running_var)
    copies = [a.copy() for a in args]

    def unchanged():
        for arg, original in zip(args, copies):
            assert_array_equal(arg, original)

    _, cache = batchnorm_forward(x, gamma, beta)
    unchanged()
    cache_copy = [np.copy(field) for field in cache]
    for backward in BACKWARDS.values():
        backward(dy, cache)
        unchanged()
        for field, original in zip(cache, cache_copy):
            assert_array_equal(field, original)
    batchnorm_inference(x, gamma, beta, running_mean, running_var)
    unchanged()


@pytest.mark.parametrize("shape", [(4, 0), (4, 0, 3)])
def test_zero_channels_give_empty_results(shape):
    y, cache = batchnorm_forward(np.ones(shape), np.ones(0), np.zeros(0))
    assert y.shape == shape and cache.mean.shape == cache.var.shape == (0,)
    for backward in BACKWARDS.values():
        assert [g.shape for g in backward(np.ones(shape), cache)] == [shape, (0,), (0,)]


def test_inference_on_an_empty_batch():
    y = batchnorm_inference(np.ones((0, 3, 2)), np.ones(3), np.zeros(3), np.zeros(3), np.ones(3))
    assert y.shape == (0, 3, 2)


def test_non_contiguous_input_gives_the_same_result():
    x, gamma, beta, dy = make_batch((6, 3, 5), seed=15)
    x_f, dy_f = np.asfortranarray(x), np.asfortranarray(dy)
    y, cache = batchnorm_forward(x, gamma, beta)
    y_f, cache_f = batchnorm_forward(x_f, gamma, beta)
    assert_allclose(y_f, y, rtol=1e-14, atol=1e-14)
    for a, b in zip(batchnorm_backward(dy_f, cache_f), batchnorm_backward(dy, cache)):
        assert_allclose(a, b, rtol=1e-13, atol=1e-14)
    view = make_batch((6, 10), seed=16)[0][:, ::2]  # strided columns
    assert_allclose(batchnorm_forward(view, np.ones(5), np.zeros(5))[0],
                    batchnorm_forward(view.copy(), np.ones(5), np.zeros(5))[0], rtol=1e-14, atol=1e-14)


def test_integer_input_is_promoted_to_float64():
    x = np.array([[1, 10], [3, 30], [5, 20]])
    y, cache = batchnorm_forward(x, [1, 1], [0, 0])
    assert y.dtype == cache.mean.dtype == np.float64
    assert_allclose(cache.mean, [3.0, 20.0])


# ------------------------------------------------------------------- awkward shapes, float32 accuracy

# (300, 256) is above the size below which the batch-axis sums go through BLAS
AWKWARD_SHAPES = [(7, 3), (10, 1000), (300, 256), (13, 5, 3), (3, 2, 5, 7), (2, 3, 1, 1, 9)]


def reference(x, gamma, beta, dy, eps):
    """The textbook whole-array formulas in float64."""
    x, gamma, beta, dy = (np.asarray(a, np.float64) for a in (x, gamma, beta, dy))
    axes = reduce_axes(x.ndim)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    x_hat = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    y = gamma.reshape(shape) * x_hat + beta.reshape(shape)
    m = x.size // x.shape[1]
    dbeta, dgamma = dy.sum(axis=axes), (dy * x_hat).sum(axis=axes)
    scale = (gamma / np.sqrt(var + eps)).reshape(shape)
    dx = scale * (dy - dbeta.reshape(shape) / m - x_hat * dgamma.reshape(shape) / m)
    return y, mean, var, dx, dgamma, dbeta


@pytest.mark.parametrize("shape", AWKWARD_SHAPES)
def test_awkward_shapes_match_the_textbook_formulas(shape):
    x, gamma, beta, dy = make_batch(shape, seed=20)
    y, cache = batchnorm_forward(x, gamma, beta, eps=1e-3)
    dx, dgamma, dbeta = batchnorm_backward(dy, cache)
    expected = reference(x, gamma, beta, dy, 1e-3)
    for got, want in zip((y, cache.mean, cache.var, dx, dgamma, dbeta), expected):
        assert_allclose(got, want, rtol=1e-11, atol=1e-12)
    y_inf = batchnorm_inference(x, gamma, beta, cache.mean, cache.var, eps=1e-3)
    assert_allclose(y_inf, y, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize(
    "shape", [(64, 5), (300, 256), (8, 3, 4, 4), (4, 3, 16, 64)], ids=["NC", "NC-large", "NCHW", "NCHW-long"]
)
def test_float32_is_within_a_few_roundings_of_float64(shape):
    x, gamma, beta, dy = make_batch(shape, seed=22)
    expected = reference(x, gamma, beta, dy, 1e-5)
    y, cache = batchnorm_forward(*(a.astype(np.float32) for a in (x, gamma, beta)))
    dx, dgamma, dbeta = batchnorm_backward(dy.astype(np.float32), cache)
    for got, want in zip((y, dx, dgamma, dbeta), (expected[0],) + expected[3:]):
        assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_beta_is_added_exactly(dtype):
    # gamma = 0 with beta != 0, and a constant channel far from zero: y is exactly beta
    # (folding beta into a centring shift would round it).
    x = np.random.default_rng(23).normal(size=(32, 2))
    x[:, 1] = 1000.0
    gamma, beta = np.array([0.0, 0.375]), np.array([0.125, 0.125])
    y, _ = batchnorm_forward(*(a.astype(dtype) for a in (x, gamma, beta)), eps=1e-5)
    assert_array_equal(y, np.full((32, 2), 0.125, dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_gradient_constant_per_channel_gives_dx_zero(dtype):
    # dy constant per channel: sum(dy * x_hat) is zero up to rounding and dx must vanish.
    x, gamma, beta, _ = make_batch((40, 3), seed=24, dtype=dtype)
    dy = np.broadcast_to(np.array([1.0, -2.0, 0.0], dtype), x.shape)
    _, cache = batchnorm_forward(x, gamma, beta)
    dx, _, dbeta = batchnorm_backward(dy, cache)
    assert_allclose(dbeta, [40.0, -80.0, 0.0])
    scale = np.abs(gamma / np.sqrt(cache.var + 1e-5))
    assert (np.abs(dx) <= 8 * np.finfo(dtype).eps * 2.0 * scale).all()


@pytest.mark.parametrize("offset", [0.0, 3.0, 1e3])
def test_float32_dgamma_stays_accurate_far_from_zero(offset):
    # Summing dy * x uncentred would lose about log2(offset / std) bits of dgamma: it sums
    # dy * x_hat, from centred values.
    rng = np.random.default_rng(25)
    x = rng.normal(size=(2048, 4)) + offset
    dy, gamma, beta = rng.normal(size=x.shape), np.ones(4), np.zeros(4)
    _, cache32 = batchnorm_forward(*(a.astype(np.float32) for a in (x, gamma, beta)))
    approx = batchnorm_backward(dy.astype(np.float32), cache32)[1]
    x32 = x.astype(np.float32).astype(np.float64)  # the input as float32 sees it
    exact = batchnorm_backward(dy, batchnorm_forward(x32, gamma, beta)[1])[1]
    assert np.abs(approx - exact).max() <= 2e-5 * np.abs(exact).max()


def test_float32_statistics_with_outliers_far_from_the_mean():
    # The first 4 samples sit 1e4 and 3e4 standard deviations away from the others.
    rng = np.random.default_rng(21)
    x = rng.normal(size=(4000, 2))
    x[:4] += [1e4, 3e4]
    x = x.astype(np.float32)
    y, cache = batchnorm_forward(x, np.ones(2), np.zeros(2), eps=0.0)
    exact = x.astype(np.float64)
    assert_allclose(cache.mean, exact.mean(axis=0), rtol=1e-6)
    assert_allclose(cache.var, exact.var(axis=0), rtol=1e-6)
    assert_allclose(y.astype(np.float64).mean(axis=0), 0.0, atol=1e-5)


# ------------------------------------------------------------------- bad input


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1), (1, 3, 1, 1), (1, 2, 1, 1, 1)])
def test_one_value_per_channel_is_rejected_in_training(shape):
    c = shape[1]
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        batchnorm_forward(np.ones(shape), np.ones(c), np.zeros(c))
    # torch agrees, and inference accepts a single sample
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        F.batch_norm(torch.ones(shape), None, None, training=True)
    y = batchnorm_inference(np.ones(shape), np.ones(c), np.zeros(c), np.zeros(c), np.ones(c))
    assert y.shape == shape


def test_two_values_per_channel_are_enough():
    # (1, C, 2): one sample, two positions per channel
    y, cache = batchnorm_forward(np.array([[[0.0, 2.0]]]), [1.0], [0.0], eps=0.0)
    assert_allclose(y, [[[-1.0, 1.0]]])


@pytest.mark.parametrize("name", ["gamma", "beta"])
@pytest.mark.parametrize("bad", [np.ones(2), np.ones(4), np.ones((3, 1)), np.ones((1, 3, 1, 1)), 1.0])
def test_parameters_of_the_wrong_shape_are_rejected(name, bad):
    x = make_batch((4, 3, 2))[0]
    params = {"gamma": np.ones(3), "beta": np.zeros(3), name: bad}
    with pytest.raises(ValueError, match=rf"{name} must have shape \(C,\) = \(3,\)"):
        batchnorm_forward(x, **params)
    with pytest.raises(ValueError, match=rf"{name} must have shape \(C,\) = \(3,\)"):
        batchnorm_inference(x, running_mean=np.zeros(3), running_var=np.ones(3), **params)


@pytest.mark.parametrize("name", ["running_mean", "running_var"])
def test_running_statistics_of_the_wrong_shape_are_rejected(name):
    stats = {"running_mean": np.zeros(3), "running_var": np.ones(3), name: np.ones(2)}
    with pytest.raises(ValueError, match=rf"{name} must have shape \(C,\) = \(3,\)"):
        batchnorm_inference(np.ones((4, 3)), np.ones(3), np.zeros(3), **stats)


def test_negative_running_var_is_rejected():
    with pytest.raises(ValueError, match="running_var must be non-negative"):
        batchnorm_inference(np.ones((4, 2)), np.ones(2), np.zeros(2), np.zeros(2), np.array([1.0, -1.0]))


@pytest.mark.parametrize("x", [np.ones(5), np.float64(1.0)], ids=["1-D", "0-D"])
def test_fewer_than_two_dimensions_are_rejected(x):
    with pytest.raises(ValueError, match=r"Expected x with at least 2 dimensions, \(N, C\)"):
        batchnorm_forward(x, np.ones(1), np.zeros(1))
    with pytest.raises(ValueError, match=r"Expected x with at least 2 dimensions"):
        batchnorm_inference(x, np.ones(1), np.zeros(1), np.zeros(1), np.ones(1))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_input_is_rejected(bad, dtype):
    x = make_batch((4, 3, 2), dtype=dtype)[0]
    x[2, 1, 0] = bad
    with pytest.raises(ValueError, match=r"x must contain only finite values, got 1 NaN or infinite"):
        batchnorm_forward(x, np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match="x must contain only finite values"):
        batchnorm_inference(x, np.ones(3), np.zeros(3), np.zeros(3), np.ones(3))


def test_non_finite_parameters_are_rejected():
    with pytest.raises(ValueError, match="gamma must contain only finite values"):
        batchnorm_forward(np.ones((4, 2)), np.array([1.0, np.nan]), np.zeros(2))


def test_a_variance_that_overflows_float32_is_rejected():
    x = np.full((4, 2), 3e38, dtype=np.float32)
    x[::2] = -3e38  # variance 9e76: beyond float32
    message = "The batch statistics of x overflow float32: x has finite values as large as 3e"
    with pytest.raises(ValueError, match=message):
        batchnorm_forward(x, np.ones(2), np.zeros(2))


@pytest.mark.parametrize("shape", [(4, 2), (2, 2, 3, 3)], ids=["NC", "NCHW"])
def test_float32_near_the_top_of_its_range_is_normalised(shape):
    # Sums of 3e38 and squares of 1e19 overflow float32; torch returns y = 0 (and NaN for
    # the constant channel). The statistics fit in float32, so bnlib computes them.
    x, gamma, beta, dy = make_batch(shape, seed=26)
    axes = reduce_axes(len(shape))
    x = (x - x.mean(axis=axes, keepdims=True)) / x.std(axis=axes, keepdims=True)
    big = (x * 1e19).astype(np.float32)  # variance 1e38, squares up to about 4e38
    big[:, 1] = 3e38  # a constant channel at the top of the range
    y, cache = batchnorm_forward(big, gamma.astype(np.float32), beta.astype(np.float32))
    y_ref, mean_ref, var_ref, *_ = reference(big, gamma, beta, dy, 1e-5)
    assert np.isfinite(y).all() and np.isfinite(cache.var).all()
    assert np.abs(y - y_ref).max() <= 1e-6 * np.abs(y_ref).max()
    assert_allclose(cache.mean, mean_ref, rtol=1e-6)
    assert_allclose(cache.var, var_ref, rtol=1e-6)
    dx, dgamma, dbeta = batchnorm_backward(dy.astype(np.float32), cache)
    assert all(np.isfinite(g).all() for g in (dx, dgamma, dbeta))


def test_dy_that_overflows_the_cache_dtype_is_named_as_such():
    x, gamma, beta, dy = make_batch((8, 3), seed=27, dtype=np.float32)
    _, cache = batchnorm_forward(x, gamma, beta)
    message = r"dy has finite values as large as [\d.]+e\+40, beyond the range of float32"
    for backward in BACKWARDS.values():
        with pytest.raises(ValueError, match=message):
            backward(1e40 * dy.astype(np.float64), cache)
    # a float32 dy whose gradients are beyond float32 even when computed in float64: said so,
    # not "NaN or inf in dy"
    huge = np.full((8, 3), 3e38, np.float32)
    huge[::2] = -3e38
    with pytest.raises(ValueError, match=r"for this dy\) overflows float32"):
        batchnorm_backward(huge, cache)


@pytest.mark.parametrize("eps", [-1e-5, -1.0])
def test_negative_eps_is_rejected(eps):
    x = make_batch((4, 3))[0]
    with pytest.raises(ValueError, match=r"eps must be a non-negative finite number, got -"):
        batchnorm_forward(x, np.ones(3), np.zeros(3), eps=eps)
    with pytest.raises(ValueError, match=r"eps must be a non-negative finite number"):
        batchnorm_inference(x, np.ones(3), np.zeros(3), np.zeros(3), np.ones(3), eps=eps)


def test_a_constant_channel_with_eps_zero_is_rejected_not_nan():
    from bnlib.batchnorm import fold_batchnorm

    x = np.array([[1.0, 2.0], [1.0, 3.0]])
    ones, zeros = np.ones(2), np.zeros(2)
    with pytest.raises(ValueError, match=r"the batch variance is 0 in channel\(s\) \[0\] and eps=0"):
        batchnorm_forward(x, ones, zeros, eps=0.0)
    batchnorm_forward(x, ones, zeros, eps=1e-5)  # eps > 0 is fine
    with pytest.raises(ValueError, match=r"running_var is 0 in channel\(s\) \[1\] and eps=0"):
        batchnorm_inference(x, ones, zeros, zeros, np.array([1.0, 0.0]), eps=0.0)
    with pytest.raises(ValueError, match=r"running_var is 0 in channel\(s\) \[1\] and eps=0"):
        fold_batchnorm(np.ones((2, 3)), None, ones, zeros, zeros, np.array([1.0, 0.0]), eps=0.0)


def test_an_eps_that_is_zero_in_float32_is_caught_too():
    x = np.array([[1.0, 2.0], [1.0, 3.0]], np.float32)
    with pytest.raises(ValueError, match=r"is 0 in channel\(s\) \[0\] and eps=1e-50, which is 0 in float32"):
        batchnorm_forward(x, np.ones(2, np.float32), np.zeros(2, np.float32), eps=1e-50)


def test_non_numeric_eps_is_rejected():
    with pytest.raises(TypeError, match="eps must be a non-negative real number, got '1e-5'"):
        batchnorm_forward(np.ones((4, 3)), np.ones(3), np.zeros(3), eps="1e-5")


@pytest.mark.parametrize("backward", BACKWARDS.values(), ids=BACKWARDS.keys())
@pytest.mark.parametrize("dy_shape", [(4, 3), (4, 3, 1), (3, 4, 2), (24,)])
def test_dy_of_another_shape_is_rejected(backward, dy_shape):
    x, gamma, beta, _ = make_batch((4, 3, 2))
    _, cache = batchnorm_forward(x, gamma, beta)
    with pytest.raises(ValueError, match=r"dy must have the same shape as the cached input \(4, 3, 2\)"):
        backward(np.ones(dy_shape), cache)


@pytest.mark.parametrize("backward", BACKWARDS.values(), ids=BACKWARDS.keys())
def test_non_finite_dy_is_rejected(backward):
    x, gamma, beta, dy = make_batch((4, 3))
    _, cache = batchnorm_forward(x, gamma, beta)
    dy[1, 2] = np.nan
    with pytest.raises(ValueError, match="dy must contain only finite values"):
        backward(dy, cache)


@pytest.mark.parametrize("backward", BACKWARDS.values(), ids=BACKWARDS.keys())
def test_backward_needs_the_forward_cache(backward):
    with pytest.raises(TypeError, match="cache must be the BatchNormCache returned by batchnorm_forward"):
        backward(np.ones((4, 3)), (np.ones((4, 3)), np.ones(3)))


def test_complex_input_is_rejected():
    x = np.ones((4, 3), dtype=complex)
    with pytest.raises(TypeError, match="x must be an array of real numbers .* got dtype complex128"):
        batchnorm_forward(x, np.ones(3), np.zeros(3))
    with pytest.raises(TypeError, match="x must be an array of real numbers"):
        batchnorm_inference(x, np.ones(3), np.zeros(3), np.zeros(3), np.ones(3))
    with pytest.raises(TypeError, match="gamma must be an array of real numbers"):
        batchnorm_forward(np.ones((4, 3)), np.ones(3, dtype=complex), np.zeros(3))
    _, cache = batchnorm_forward(make_batch((4, 3))[0], np.ones(3), np.zeros(3))
    for backward in BACKWARDS.values():
        with pytest.raises(TypeError, match="dy must be an array of real numbers"):
            backward(np.ones((4, 3), dtype=complex), cache)


# ------------------------------------------------------------------- properties over random shapes and dtypes


@st.composite
def batches(draw):
    """A float32/float64 batch of 2-5 dims with at least 2 values per channel, gamma, beta and dy.

    Entries are multiples of 1/8, exact in float32, so that channel sums are exact and the
    two backward passes see the same statistics (a near-constant float32 channel would
    otherwise amplify rounding differences in the mean without bound).
    """
    ndim = draw(st.integers(2, 5))
    shape = (draw(st.integers(1, 5)), draw(st.integers(1, 3))) + tuple(
        draw(st.integers(1, 3)) for _ in range(ndim - 2)
    )
    if np.prod(shape) // shape[1] < 2:
        shape = (2,) + shape[1:]
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    eighths = st.integers(-400, 400)
    x = draw(arrays(np.int16, shape, elements=eighths)).astype(dtype) / dtype(8)
    dy = draw(arrays(np.int16, shape, elements=eighths)).astype(dtype) / dtype(8)
    gamma = draw(arrays(np.int16, shape[1], elements=eighths)).astype(dtype) / dtype(8)
    beta = draw(arrays(np.int16, shape[1], elements=eighths)).astype(dtype) / dtype(8)
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.1]))
    return x, gamma, beta, dy, eps


@settings(max_examples=40, deadline=None)
@given(batches())
def test_random_batches_keep_shape_dtype_and_inputs(batch):
    x, gamma, beta, dy, eps = batch
    copies = [a.copy() for a in (x, gamma, beta, dy)]
    y, cache = batchnorm_forward(x, gamma, beta, eps=eps)
    compact = batchnorm_backward(dy, cache)
    graph = batchnorm_backward_graph(dy, cache)
    y_inf = batchnorm_inference(x, gamma, beta, cache.mean, cache.var, eps=eps)
    for arg, original in zip((x, gamma, beta, dy), copies):
        assert_array_equal(arg, original)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y_inf.shape == x.shape and y_inf.dtype == x.dtype
    assert compact[0].shape == x.shape
    assert compact[1].shape == compact[2].shape == gamma.shape
    assert all(g.dtype == x.dtype for g in compact + graph)
    # inference with the batch's own statistics is the training forward pass
    tol = 1e-5 if x.dtype == np.float32 else 1e-12
    assert_allclose(y_inf, y, rtol=tol, atol=tol * (1 + np.abs(y).max()))


@settings(max_examples=40, deadline=None)
@given(batches())
def test_random_batches_compact_and_graph_backward_agree(batch):
    x, gamma, beta, dy, eps = batch
    _, cache = batchnorm_forward(x, gamma, beta, eps=eps)
    tol = 1e-4 if x.dtype == np.float32 else 1e-10
    # The graph version's terms are as large as gamma * inv_std * dy and cancel in dx.
    terms = float(np.abs(cache.gamma * cache.inv_std).max() * np.abs(dy).max())
    for compact, graph in zip(batchnorm_backward(dy, cache), batchnorm_backward_graph(dy, cache)):
        scale = max(np.abs(compact).max(), np.abs(graph).max(), terms, 1.0)
        assert np.abs(compact - graph).max() <= tol * scale


@settings(max_examples=40, deadline=None)
@given(batches())
def test_random_batches_are_centred_and_scaled(batch):
    x, _, _, _, eps = batch
    c = x.shape[1]
    y, cache = batchnorm_forward(x, np.ones(c), np.zeros(c), eps=eps)
    axes = reduce_axes(x.ndim)
    tol = 1e-5 if x.dtype == np.float32 else 1e-12
    y64 = y.astype(np.float64)
    assert_allclose(y64.mean(axis=axes), 0.0, atol=tol)
    # var(x_hat) = var / (var + eps) <= 1
    var = cache.var.astype(np.float64)
    assert_allclose(y64.var(axis=axes), var / (var + eps), atol=10 * tol)


# ------------------------------------------------------------------- the shared standardisation


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_standardize_over_other_axes_is_layer_norm(dtype):
    # The helper BN uses, over every axis but the batch, is torch's layer_norm (no affine),
    # and its backward pass is torch's gradient.
    from bnlib._standardize import standardize, standardize_backward

    x, _, _, dy = make_batch((4, 3, 5, 2), seed=30)
    axes = (1, 2, 3)
    x_hat, mean, var, inv_std = standardize(x.astype(dtype), axes, 1e-5)
    dx, sum_dy, sum_dy_x_hat = standardize_backward(dy.astype(dtype), x_hat, inv_std, axes)
    xt = torch.tensor(x, requires_grad=True)
    y_ref = F.layer_norm(xt, x.shape[1:], eps=1e-5)
    y_ref.backward(torch.tensor(dy))
    tol = 1e-6 if dtype == np.float32 else 1e-12
    assert x_hat.dtype == dx.dtype == mean.dtype == dtype and mean.shape == var.shape == (4, 1, 1, 1)
    assert np.abs(x_hat - y_ref.detach().numpy()).max() <= tol * 4
    assert np.abs(dx - xt.grad.numpy()).max() <= tol * np.abs(xt.grad.numpy()).max()
    assert_allclose(sum_dy, dy.sum(axis=axes, keepdims=True), rtol=tol)
    assert_allclose(sum_dy_x_hat, (dy * x_hat).sum(axis=axes, keepdims=True), rtol=10 * tol, atol=tol)
