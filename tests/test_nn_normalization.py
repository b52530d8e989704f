"""bnlib.nn's normalization family against torch's modules (where torch has them) and bnlib's core."""

import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import bnlib  # noqa: E402
import bnlib.nn as bnn  # noqa: E402

# (name, torch class, bnlib class, constructor args, constructor kwargs, input shape)
CASES = [
    ("LayerNorm-last", torch.nn.LayerNorm, bnn.LayerNorm, (5,), {}, (4, 3, 5)),
    ("LayerNorm-2axes", torch.nn.LayerNorm, bnn.LayerNorm, ((3, 5),), {}, (4, 3, 5)),
    ("LayerNorm-noaffine", torch.nn.LayerNorm, bnn.LayerNorm, (6,), {"elementwise_affine": False}, (4, 6)),
    ("LayerNorm-nobias", torch.nn.LayerNorm, bnn.LayerNorm, (6,), {"bias": False}, (4, 6)),
    ("GroupNorm-2d", torch.nn.GroupNorm, bnn.GroupNorm, (3, 6), {}, (2, 6, 4, 4)),
    ("GroupNorm-flat", torch.nn.GroupNorm, bnn.GroupNorm, (2, 6), {}, (5, 6)),
    ("GroupNorm-noaffine", torch.nn.GroupNorm, bnn.GroupNorm, (1, 4), {"affine": False}, (3, 4, 7)),
    ("InstanceNorm1d", torch.nn.InstanceNorm1d, bnn.InstanceNorm1d, (4,), {}, (3, 4, 7)),
    ("InstanceNorm1d-affine", torch.nn.InstanceNorm1d, bnn.InstanceNorm1d, (4,), {"affine": True}, (3, 4, 7)),
    ("InstanceNorm1d-unbatched", torch.nn.InstanceNorm1d, bnn.InstanceNorm1d, (4,), {"affine": True}, (4, 7)),
    ("InstanceNorm2d-tracked", torch.nn.InstanceNorm2d, bnn.InstanceNorm2d, (3,),
     {"affine": True, "track_running_stats": True}, (2, 3, 4, 5)),
]
IDS = [c[0] for c in CASES]


def rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def _pair(case, dtype):
    _, tcls, bcls, args, kwargs, _ = case
    torch.manual_seed(0)
    theirs = tcls(*args, **kwargs, dtype=dtype)
    ours = bcls(*args, **kwargs, dtype=dtype)
    ours.load_state_dict(theirs.state_dict())
    with torch.no_grad():  # parameters away from their initial ones and zeros
        for p_ours, p_theirs in zip(ours.parameters(), theirs.parameters()):
            p_theirs.copy_(torch.randn_like(p_theirs))
            p_ours.copy_(p_theirs)
    return theirs, ours


def _step(module, x, dy):
    x = x.clone().requires_grad_(True)
    y = module(x)
    y.backward(dy)
    return y, x.grad, [p.grad for p in module.parameters()]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_and_backward_match_torch(case, training, dtype):
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    theirs, ours = _pair(case, dtype)
    gen = torch.Generator().manual_seed(1)
    for step in range(3):  # several steps: running statistics, where there are any, evolve alike
        x = torch.randn(case[5], generator=gen, dtype=dtype) * 2 + 1
        dy = torch.randn(case[5], generator=gen, dtype=dtype)
        theirs.train(training)
        ours.train(training)
        (ty, tdx, tdp), (y, dx, dp) = _step(theirs, x, dy), _step(ours, x, dy)
        assert y.dtype == ty.dtype and y.shape == ty.shape
        assert rel(y, ty) <= tol and rel(dx, tdx) <= tol
        for a, b in zip(dp, tdp):
            assert rel(a, b) <= tol
        for name, buf in theirs.named_buffers():
            assert rel(dict(ours.named_buffers())[name], buf) <= tol, name
        for m in (ours, theirs):
            m.zero_grad()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_state_dict_repr_and_pickle_as_torch(case):
    theirs, ours = _pair(case, torch.float64)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert repr(ours) == repr(theirs)
    buffer = io.BytesIO()
    torch.save(ours, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    x = torch.randn(case[5], dtype=torch.float64)
    assert torch.equal(loaded(x), ours(x))


def test_layer_and_group_norm_same_in_train_and_eval():
    x = torch.randn(4, 6, 3, dtype=torch.float64)
    for module in (bnn.LayerNorm((6, 3), dtype=torch.float64), bnn.GroupNorm(3, 6, dtype=torch.float64)):
        assert torch.equal(module.train()(x), module.eval()(x))


def _error(f):
    try:
        f()
    except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
        return type(exc), str(exc)
    return None


@pytest.mark.parametrize(
    ("name", "make", "shape"),
    [("LayerNorm", lambda m: m(5), (2, 4)), ("GroupNorm", lambda m: m(4, 6), None),
     ("InstanceNorm1d", lambda m: m(3), (2, 3, 4, 5)), ("InstanceNorm2d", lambda m: m(3, affine=True), (2, 4, 5, 5))],
)
def test_bad_input_errors_as_torch(name, make, shape):
    def outcome(module_cls):
        def run():
            module = make(module_cls)
            module(torch.randn(shape))
        return _error(run)

    theirs, ours = outcome(getattr(torch.nn, name)), outcome(getattr(bnn, name))
    assert theirs is not None and ours is not None
    assert ours[0] is theirs[0]
    assert ours[1].split()[:2] == theirs[1].split()[:2]  # the same sentence (torch's may add details)


def test_second_derivative_is_refused_clearly():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(bnn.LayerNorm(4, dtype=torch.float64)(x).pow(3).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad"):
        g.sum().backward()


# --------------------------------------------------------------------------- batch renormalization


@pytest.mark.parametrize(("cls", "tcls", "shape"), [(bnn.BatchRenorm1d, torch.nn.BatchNorm1d, (6, 4)),
                                                     (bnn.BatchRenorm2d, torch.nn.BatchNorm2d, (3, 4, 2, 5))])
def test_batchrenorm_at_rmax_1_dmax_0_is_torch_batchnorm(cls, tcls, shape):
    brn = cls(4, dtype=torch.float64, r_max=1.0, d_max=0.0, warmup=None)
    bn = tcls(4, dtype=torch.float64)
    assert list(brn.state_dict()) == list(bn.state_dict())
    gen = torch.Generator().manual_seed(0)
    for training in (True, True, True, False):
        x = torch.randn(shape, generator=gen, dtype=torch.float64) * 3 + 2
        dy = torch.randn(shape, generator=gen, dtype=torch.float64)
        brn.train(training)
        bn.train(training)
        (y, dx, dp), (ty, tdx, tdp) = _step(brn, x, dy), _step(bn, x, dy)
        assert rel(y, ty) <= 1e-10 and rel(dx, tdx) <= 1e-10
        assert all(rel(a, b) <= 1e-10 for a, b in zip(dp, tdp))
        assert rel(brn.running_var, bn.running_var) <= 1e-12 and rel(brn.running_mean, bn.running_mean) <= 1e-12
        assert int(brn.num_batches_tracked) == int(bn.num_batches_tracked)
        brn.zero_grad()
        bn.zero_grad()


def test_batchrenorm_module_matches_core():
    brn = bnn.BatchRenorm1d(3, dtype=torch.float64, r_max=1.5, d_max=0.5, warmup=None)
    with torch.no_grad():
        brn.running_mean.copy_(torch.tensor([1.0, -1.0, 0.0]))
        brn.running_var.copy_(torch.tensor([0.5, 4.0, 1.0]))
    rm, rv = brn.running_mean.numpy().copy(), brn.running_var.numpy().copy()
    x = torch.randn(5, 3, dtype=torch.float64)
    y = brn(x)
    y_core, cache = bnlib.batchrenorm_forward(x.numpy(), np.ones(3), np.zeros(3), rm, rv, 1.5, 0.5)
    assert np.array_equal(y.detach().numpy(), y_core)
    assert np.array_equal(brn.last_r, cache.r) and np.array_equal(brn.last_d, cache.d)
    expected = bnlib.update_running_stats(rm, rv, cache.mean, cache.var, 5)
    assert np.allclose(brn.running_mean.numpy(), expected[0], rtol=1e-14, atol=0)
    assert np.allclose(brn.running_var.numpy(), expected[1], rtol=1e-14, atol=0)


def test_batchrenorm_warmup_schedule():
    brn = bnn.BatchRenorm1d(2, r_max=3.0, d_max=5.0, warmup=(10, 50, 30))
    assert brn.limits(0) == (1.0, 0.0) and brn.limits(10) == (1.0, 0.0)
    assert brn.limits(30) == (2.0, 5.0)  # r_max halfway, d_max reached
    assert brn.limits(50) == (3.0, 5.0) and brn.limits(10**6) == (3.0, 5.0)
    x = torch.randn(4, 2)
    for _ in range(3):
        brn(x)
    assert int(brn.num_batches_tracked) == 3 and brn.limits() == (1.0, 0.0)
    with pytest.raises(ValueError, match="track_running_stats"):
        bnn.BatchRenorm1d(2, track_running_stats=False)


# --------------------------------------------------------------------------- decorrelated BN


@pytest.mark.parametrize("shape", [(40, 8), (6, 8, 3, 3)])
def test_decorrelated_bn_whitens_as_bnlib_zca(shape):
    torch.manual_seed(0)
    mix = torch.randn(8, 8, dtype=torch.float64)
    x = torch.einsum("dc,nc...->nd...", mix, torch.randn(shape, dtype=torch.float64)) + 3.0
    dbn = bnn.DecorrelatedBatchNorm(8, group_size=4, affine=False, dtype=torch.float64)
    y = dbn(x)
    cols = x.transpose(0, 1).reshape(8, -1).T.numpy()  # (m, C): one row per value
    y_cols = y.detach().transpose(0, 1).reshape(8, -1).T.numpy()
    for group in (slice(0, 4), slice(4, 8)):
        expected = bnlib.zca_whiten(cols[:, group], eps=1e-5)
        err = np.abs(y_cols[:, group] - expected).max() / np.abs(expected).max()
        assert err <= 1e-10
        cov = bnlib.covariance(y_cols[:, group])
        assert np.abs(cov - np.eye(4)).max() < 1e-3  # the identity up to eps
    # across groups nothing is whitened
    assert np.abs(bnlib.covariance(y_cols)[:4, 4:]).max() > 1e-2


def test_decorrelated_bn_gradients_and_eval():
    torch.manual_seed(1)
    dbn = bnn.DecorrelatedBatchNorm(4, group_size=2, dtype=torch.float64)
    x = torch.randn(10, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(dbn, (x,), eps=1e-6, atol=1e-7)
    dbn.eval()
    x2 = torch.randn(3, 4, dtype=torch.float64)
    mean, w = dbn.running_mean, dbn.running_whitening
    expected = (w @ (x2.T.reshape(2, 2, 3) - mean)).reshape(4, 3).T
    assert torch.allclose(dbn(x2), expected, rtol=1e-12, atol=1e-12)
    assert dbn(x2[:1]).shape == (1, 4)  # a batch of one in eval mode
    assert list(dbn.state_dict()) == ["weight", "bias", "running_mean", "running_whitening"]


def test_decorrelated_bn_group_size_1_is_batchnorm():
    x = torch.randn(7, 3, 2, dtype=torch.float64)
    y = bnn.DecorrelatedBatchNorm(3, group_size=1, dtype=torch.float64)(x)
    ref = torch.nn.functional.batch_norm(x, None, None, training=True, eps=1e-5)
    assert rel(y, ref) <= 1e-12


def test_iternorm_converges_to_zca_and_trains_on_tiny_batches():
    torch.manual_seed(2)
    x = torch.randn(50, 4, dtype=torch.float64) @ (torch.eye(4, dtype=torch.float64) + 0.3)
    exact = bnn.DecorrelatedBatchNorm(4, group_size=4, affine=False, dtype=torch.float64)
    newton = bnn.DecorrelatedBatchNorm(4, group_size=4, affine=False, dtype=torch.float64, iterations=10)
    assert rel(newton(x), exact(x)) <= 1e-10
    assert rel(newton(x), torch.from_numpy(bnlib.zca_whiten(x.numpy()))) <= 1e-10
    five = bnn.DecorrelatedBatchNorm(4, group_size=4, affine=False, dtype=torch.float64, iterations=5)
    assert 1e-6 < rel(five(x), exact(x)) < 0.5  # five iterations: approximate
    # a batch of 2 for a group of 16 channels: Sigma is singular, the gradient stays finite
    layer = bnn.DecorrelatedBatchNorm(16, group_size=16, iterations=5)
    xs = torch.randn(2, 16, requires_grad=True)
    layer(xs).pow(2).sum().backward()
    assert torch.isfinite(xs.grad).all() and torch.isfinite(layer.weight.grad).all()
    assert torch.autograd.gradcheck(
        bnn.DecorrelatedBatchNorm(4, group_size=2, dtype=torch.float64, iterations=3),
        (torch.randn(6, 4, dtype=torch.float64, requires_grad=True),), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("name, make, shape", [
    ("LayerNorm", lambda cls: cls(8), (4, 8)),
    ("GroupNorm", lambda cls: cls(2, 4), (3, 4, 5)),
    ("InstanceNorm1d", lambda cls: cls(4, affine=True), (3, 4, 5)),
])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_propagates_as_in_torch(name, make, shape, bad):
    """torch's modules propagate NaN/inf (GradScaler relies on it); bnlib's do the same, not raise."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    x[0, 0] = bad
    results = []
    for cls in (getattr(torch.nn, name), getattr(bnn, name)):
        xi = x.clone().requires_grad_()
        y = make(cls)(xi)
        y.sum().backward()
        results.append((y.detach(), xi.grad))
    (y_torch, g_torch), (y_ours, g_ours) = results
    assert torch.equal(torch.isfinite(y_torch), torch.isfinite(y_ours))
    assert torch.equal(torch.isfinite(g_torch), torch.isfinite(g_ours))
    torch.testing.assert_close(y_ours.nan_to_num(), y_torch.nan_to_num())
