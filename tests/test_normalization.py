"""The normalization family (bnlib.normalization) against torch, autograd and central differences."""

import numpy as np
import pytest

import bnlib
from bnlib.gradcheck import numerical_gradient, relative_error

torch = pytest.importorskip("torch")
F = torch.nn.functional

SHAPES = [(4, 6), (3, 6, 5), (2, 6, 3, 4), (2, 4, 2, 2, 3)]
GN_CASES = [((4, 6), 3), ((3, 6, 5), 2), ((2, 6, 3, 4), 3), ((2, 6, 3, 4), 1), ((2, 6, 3, 4), 6)]


def rel(a, b):
    """Relative error of arrays, normalised by the size of the reference."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def _data(shape, pshape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(1.5, 2.0, size=shape)
    return x, rng.normal(1.0, 0.5, size=pshape), rng.normal(size=pshape), rng.normal(size=shape)


def _torch_grads(fn, x, gamma, beta, dy):
    xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    y = fn(xt, gt, bt)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy()


def _compare(ours_fwd, ours_bwd, torch_fn, x, gamma, beta, dy):
    y, cache = ours_fwd(x, gamma, beta)
    dx, dg, db = ours_bwd(dy, cache)
    ty, tdx, tdg, tdb = _torch_grads(torch_fn, x, gamma, beta, dy)
    errors = [rel(y, ty), rel(dx, tdx), rel(dg, tdg), rel(db, tdb)]
    assert max(errors) <= 1e-10, errors
    assert y.shape == x.shape and dg.shape == gamma.shape and db.shape == beta.shape


@pytest.mark.parametrize("shape", SHAPES)
def test_layernorm_matches_torch(shape):
    x, g, b, dy = _data(shape, shape[1:])
    _compare(bnlib.layernorm_forward, bnlib.layernorm_backward,
             lambda xt, gt, bt: F.layer_norm(xt, xt.shape[1:], gt, bt, 1e-5), x, g, b, dy)


@pytest.mark.parametrize("shape", SHAPES[1:])
def test_instancenorm_matches_torch(shape):
    x, g, b, dy = _data(shape, shape[1])
    _compare(bnlib.instancenorm_forward, bnlib.instancenorm_backward,
             lambda xt, gt, bt: F.instance_norm(xt, weight=gt, bias=bt, eps=1e-5), x, g, b, dy)


@pytest.mark.parametrize(("shape", "groups"), GN_CASES)
def test_groupnorm_matches_torch(shape, groups):
    x, g, b, dy = _data(shape, shape[1])
    _compare(lambda *a: bnlib.groupnorm_forward(a[0], groups, *a[1:]), bnlib.groupnorm_backward,
             lambda xt, gt, bt: F.group_norm(xt, groups, gt, bt, 1e-5), x, g, b, dy)


def test_groupnorm_extremes_are_layer_and_instance_norm():
    x, g, b, _ = _data((3, 4, 5), 4)
    y1, _ = bnlib.groupnorm_forward(x, 1, np.ones(4), np.zeros(4))
    yl, _ = bnlib.layernorm_forward(x, np.ones((4, 5)), np.zeros((4, 5)))
    assert rel(y1, yl) <= 1e-14
    yc, _ = bnlib.groupnorm_forward(x, 4, g, b)
    yi, _ = bnlib.instancenorm_forward(x, g, b)
    assert rel(yc, yi) <= 1e-14


def _numeric_check(forward, backward, x, gamma, beta, dy):
    """Every gradient against central differences (h = 1e-4: below it, rounding dominates)."""
    _, cache = forward(x, gamma, beta)
    dx, dg, db = backward(dy, cache)
    for arr, grad, which in ((x, dx, 0), (gamma, dg, 1), (beta, db, 2)):
        def f(v, which=which):
            args = [x, gamma, beta]
            args[which] = v
            return forward(*args)[0]
        assert relative_error(grad, numerical_gradient(f, arr.copy(), dy, h=1e-4)) <= 1e-7


@pytest.mark.parametrize(("method", "shape"), [(m, s) for m in ("layer", "instance", "group") for s in SHAPES
                                               if m != "instance" or len(s) > 2])  # IN needs space
def test_central_differences(method, shape):
    pshape = shape[1:] if method == "layer" else shape[1]
    x, g, b, dy = _data(shape, pshape, seed=3)
    fwd = {"layer": bnlib.layernorm_forward, "instance": bnlib.instancenorm_forward,
           "group": lambda x, g, b: bnlib.groupnorm_forward(x, 2, g, b)}[method]
    bwd = getattr(bnlib, f"{method}norm_backward")
    _numeric_check(fwd, bwd, x, g, b, dy)


def test_batchrenorm_central_differences_with_r_and_d_fixed():
    """With r and d fixed at the values of the forward pass, the gradient is the derivative."""
    x, g, b, rm, rv, dy = _brn_data((5, 4, 3))
    _, cache = bnlib.batchrenorm_forward(x, g, b, rm, rv, r_max=1.2, d_max=0.1)
    dx, _, _ = bnlib.batchrenorm_backward(dy, cache)
    r, d = cache.r.reshape(1, -1, 1), cache.d.reshape(1, -1, 1)

    def fixed(v):  # batch renormalization with r and d frozen
        x_hat = bnlib.batchnorm_forward(v, np.ones(4), np.zeros(4))[0] * r + d
        return g.reshape(1, -1, 1) * x_hat + b.reshape(1, -1, 1)

    assert relative_error(dx, numerical_gradient(fixed, x.copy(), dy, h=1e-4)) <= 1e-7


def test_float32_stays_float32_and_arguments_untouched():
    x, g, b, dy = _data((4, 6, 3), 6)
    x32 = x.astype(np.float32)
    copies = [a.copy() for a in (x32, g, b, dy)]
    for fwd, bwd in ((lambda x, g, b: bnlib.groupnorm_forward(x, 3, g, b), bnlib.groupnorm_backward),
                     (bnlib.instancenorm_forward, bnlib.instancenorm_backward)):
        y, cache = fwd(x32, g, b)
        grads = bwd(dy, cache)
        assert y.dtype == np.float32 and all(gr.dtype == np.float32 for gr in grads)
    for a, c in zip((x32, g, b, dy), copies):
        np.testing.assert_array_equal(a, c)


def test_layer_and_group_norm_are_independent_of_the_batch():
    """A sample's output does not depend on the other samples: a batch of one is fine."""
    x, g, b, _ = _data((5, 6, 4), 6)
    y, _ = bnlib.groupnorm_forward(x, 3, g, b)
    y0, _ = bnlib.groupnorm_forward(x[:1], 3, g, b)
    np.testing.assert_allclose(y[:1], y0, rtol=0, atol=1e-14)
    yl, _ = bnlib.layernorm_forward(x, np.ones((6, 4)), np.zeros((6, 4)))
    yl0, _ = bnlib.layernorm_forward(x[2:3], np.ones((6, 4)), np.zeros((6, 4)))
    np.testing.assert_allclose(yl[2:3], yl0, rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: bnlib.layernorm_forward(np.ones(3), np.ones(()), np.ones(())), ValueError, "at least 2 dimensions"),
        (lambda: bnlib.layernorm_forward(np.ones((2, 3)), np.ones(3), np.ones(2)), ValueError, r"beta must have the shape"),
        (lambda: bnlib.layernorm_forward(np.ones((2, 3)), np.ones((2, 3)), np.ones(3)), ValueError, r"x.shape\[1:\]"),
        (lambda: bnlib.layernorm_forward(np.array([[1.0, np.nan]]), np.ones(2), np.ones(2)), ValueError, "finite"),
        (lambda: bnlib.layernorm_forward(np.ones((2, 3)), np.ones(3), np.ones(3), eps=-1.0), ValueError, "eps"),
        (lambda: bnlib.instancenorm_forward(np.ones((2, 3)), np.ones(3), np.ones(3)), ValueError, "spatial axis"),
        (lambda: bnlib.instancenorm_forward(np.ones((2, 3, 1)), np.ones(3), np.ones(3)), ValueError,
         "more than 1 spatial element"),
        (lambda: bnlib.instancenorm_forward(np.ones((2, 3, 4)), np.ones(2), np.ones(3)), ValueError, r"shape \(C,\)"),
        (lambda: bnlib.groupnorm_forward(np.ones((2, 6)), 4, np.ones(6), np.ones(6)), ValueError, "divisible"),
        (lambda: bnlib.groupnorm_forward(np.ones((2, 6)), 0, np.ones(6), np.ones(6)), ValueError, "num_groups"),
        (lambda: bnlib.groupnorm_forward(np.ones((2, 6), dtype=complex), 2, np.ones(6), np.ones(6)), TypeError,
         "real numbers"),
        (lambda: bnlib.layernorm_forward(np.ones((2, 3)), np.ones(3), np.ones(3), eps=0.0), ValueError,
         "divides by zero"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_backward_checks_dy_and_cache():
    x, g, b, _ = _data((4, 6, 3), 6)
    _, cache = bnlib.groupnorm_forward(x, 2, g, b)
    with pytest.raises(ValueError, match="same shape as the cached input"):
        bnlib.groupnorm_backward(np.ones((4, 6)), cache)
    with pytest.raises(ValueError, match="finite"):
        bnlib.groupnorm_backward(np.full(x.shape, np.inf), cache)
    with pytest.raises(TypeError, match="groupnorm_forward"):
        bnlib.layernorm_backward(np.ones(x.shape), cache)


# --------------------------------------------------------------------------- batch renormalization


def _brn_data(shape=(6, 4, 3), seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.5, 2.0, size=shape)
    c = shape[1]
    return (x, rng.normal(1.0, 0.3, size=c), rng.normal(size=c), rng.normal(size=c),
            rng.uniform(0.2, 9.0, size=c), rng.normal(size=shape))


@pytest.mark.parametrize("shape", [(6, 4), (6, 4, 3), (3, 4, 2, 2)])
def test_batchrenorm_at_rmax_1_dmax_0_is_batchnorm(shape):
    x, g, b, rm, rv, dy = _brn_data(shape)
    y, cache = bnlib.batchrenorm_forward(x, g, b, rm, rv, r_max=1.0, d_max=0.0)
    y_bn, cache_bn = bnlib.batchnorm_forward(x, g, b)
    assert np.array_equal(y, y_bn)
    for ours, bn in zip(bnlib.batchrenorm_backward(dy, cache), bnlib.batchnorm_backward(dy, cache_bn)):
        assert rel(ours, bn) <= 1e-14


def _brn_autograd(x, g, b, rm, rv, dy, r_max, d_max, eps=1e-5):
    xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, g, b))
    axes = [0] + list(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu = xt.mean(axes, keepdim=True)
    sigma_b = torch.sqrt(((xt - mu) ** 2).mean(axes, keepdim=True) + eps)
    sigma = torch.sqrt(torch.tensor(rv).reshape(shape) + eps)
    r = (sigma_b / sigma).clamp(1 / r_max, r_max).detach()
    d = ((mu - torch.tensor(rm).reshape(shape)) / sigma).clamp(-d_max, d_max).detach()
    y = gt.reshape(shape) * ((xt - mu) / sigma_b * r + d) + bt.reshape(shape)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy(), r.reshape(-1).numpy()


@pytest.mark.parametrize(("r_max", "d_max"), [(3.0, 5.0), (1.2, 0.1), (1e6, 1e6)])
def test_batchrenorm_matches_autograd_with_r_and_d_detached(r_max, d_max):
    x, g, b, rm, rv, dy = _brn_data((5, 4, 3))
    y, cache = bnlib.batchrenorm_forward(x, g, b, rm, rv, r_max=r_max, d_max=d_max)
    grads = bnlib.batchrenorm_backward(dy, cache)
    ty, *tgrads, tr = _brn_autograd(x, g, b, rm, rv, dy, r_max, d_max)
    assert rel(y, ty) <= 1e-12
    assert rel(cache.r, tr) <= 1e-12
    for ours, theirs in zip(grads, tgrads):
        assert rel(ours, theirs) <= 1e-10
    if r_max == 1.2:  # the clipping was active in this case
        assert np.isclose(cache.r, 1.2).any() or np.isclose(cache.r, 1 / 1.2).any()
        assert np.isclose(np.abs(cache.d), 0.1).any()


def test_batchrenorm_unclipped_equals_inference():
    """With r and d unclipped, training-mode output is inference with the running statistics."""
    x, g, b, rm, rv, _ = _brn_data((5, 4, 3))
    y, _ = bnlib.batchrenorm_forward(x, g, b, rm, rv, r_max=1e6, d_max=1e6)
    assert rel(y, bnlib.batchnorm_inference(x, g, b, rm, rv)) <= 1e-12


def test_batchrenorm_bad_input():
    x, g, b, rm, rv, dy = _brn_data((5, 4))
    with pytest.raises(ValueError, match="r_max"):
        bnlib.batchrenorm_forward(x, g, b, rm, rv, r_max=0.5)
    with pytest.raises(ValueError, match="d_max"):
        bnlib.batchrenorm_forward(x, g, b, rm, rv, d_max=-1.0)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bnlib.batchrenorm_forward(x[:1], g, b, rm, rv)
    with pytest.raises(ValueError, match="running_var must be non-negative"):
        bnlib.batchrenorm_forward(x, g, b, rm, -rv)
    with pytest.raises(ValueError, match=r"running_mean must have shape \(C,\)"):
        bnlib.batchrenorm_forward(x, g, b, rm[:2], rv)
    _, cache = bnlib.batchrenorm_forward(x, g, b, rm, rv)
    with pytest.raises(ValueError, match="same shape"):
        bnlib.batchrenorm_backward(dy[:2], cache)


# --------------------------------------------------------------------------- the chapter's self-checks


def _my_layernorm(x, gamma, beta, eps=1e-5):
    axes = tuple(range(1, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def _my_groupnorm(x, num_groups, gamma, beta, eps=1e-5):
    n = x.shape[0]
    xg = x.reshape(n, num_groups, -1)
    mu = xg.mean(axis=-1, keepdims=True)
    var = ((xg - mu) ** 2).mean(axis=-1, keepdims=True)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return ((xg - mu) / np.sqrt(var + eps)).reshape(x.shape) * gamma.reshape(shape) + beta.reshape(shape)


def test_family_self_checks_pass_a_correct_answer_and_fail_wrong_ones():
    from bnlib import checks

    assert checks.check_layernorm_forward(_my_layernorm, verbose=False)
    assert checks.check_groupnorm_forward(_my_groupnorm, verbose=False)
    # statistics over the batch axis (BN's area) instead of the sample's: fails
    wrong_area = checks.check_layernorm_forward(
        lambda x, g, b, eps: (x - x.mean(0)) / np.sqrt(x.var(0) + eps) * g + b, verbose=False)
    assert not wrong_area and "check_layernorm_forward: case" in wrong_area.message
    # one group whatever num_groups says: fails on the first case (2 groups)
    one_group = checks.check_groupnorm_forward(lambda x, G, g, b, eps: _my_groupnorm(x, 1, g, b, eps),
                                               verbose=False)
    assert not one_group and "case 1 of 4" in one_group.message


def test_family_self_checks_report_a_placeholder():
    from bnlib import checks

    def placeholder(x, num_groups, gamma, beta, eps=1e-5):
        raise NotImplementedError  # your code here

    result = checks.check_groupnorm_forward(placeholder, verbose=False)
    assert not result and "not written yet" in result.message
