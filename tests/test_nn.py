"""bnlib.nn against torch.nn: the same modules, bnlib's arithmetic, torch's numbers."""

import copy

import pytest

torch = pytest.importorskip("torch")

from torch.func import functional_call  # noqa: E402

import bnlib.nn as bnn  # noqa: E402

F64 = torch.float64
RTOL, ATOL = 1e-10, 1e-12

# (ours, torch's, input shape)
CASES = {
    "1d-2D": (bnn.BatchNorm1d, torch.nn.BatchNorm1d, (8, 3)),
    "1d-3D": (bnn.BatchNorm1d, torch.nn.BatchNorm1d, (4, 3, 5)),
    "2d": (bnn.BatchNorm2d, torch.nn.BatchNorm2d, (4, 3, 5, 2)),
    "3d": (bnn.BatchNorm3d, torch.nn.BatchNorm3d, (2, 3, 2, 3, 2)),
}


def generator(seed):
    return torch.Generator().manual_seed(seed)


def randn(shape, gen, dtype=F64, scale=1.0, shift=0.0):
    return torch.randn(shape, generator=gen, dtype=dtype) * scale + shift


def make_pair(ours_cls, torch_cls, num_features, gen, dtype=F64, **kwargs):
    """Torch's module with non-trivial weight/bias/buffers, and ours loaded from its state_dict."""
    ref = torch_cls(num_features, dtype=dtype, **kwargs)
    with torch.no_grad():
        if ref.weight is not None:
            ref.weight.copy_(randn(num_features, gen, dtype, 0.5, 1.0))
        if ref.bias is not None:
            ref.bias.copy_(randn(num_features, gen, dtype))
    ours = ours_cls(num_features, dtype=dtype, **kwargs)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def assert_close(a, b, rtol=RTOL, atol=ATOL):
    assert (a is None) == (b is None)
    if a is not None:
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


def step(module, x, dy):
    """Forward, backward with upstream gradient ``dy``; returns (y, dx, dweight, dbias)."""
    x = x.clone().requires_grad_(True)
    module.zero_grad(set_to_none=True)
    y = module(x)
    y.backward(dy)
    grads = [p.grad if p is not None else None for p in (module.weight, module.bias)]
    return (y.detach(), x.grad, *grads)


def assert_same_state(ours, ref, rtol=RTOL, atol=ATOL):
    sd_ours, sd_ref = ours.state_dict(), ref.state_dict()
    assert list(sd_ours) == list(sd_ref)
    for key in sd_ref:
        if key == "num_batches_tracked":
            assert sd_ours[key].dtype == torch.long
            assert int(sd_ours[key]) == int(sd_ref[key])
        else:
            assert_close(sd_ours[key], sd_ref[key], rtol, atol)


# --------------------------------------------------------------------------- parity in training and eval


@pytest.mark.parametrize("momentum", [0.1, 0.7, None])
@pytest.mark.parametrize("case", list(CASES))
def test_train_steps_then_eval_match_torch(case, momentum):
    ours_cls, torch_cls, shape = CASES[case]
    gen = generator(1)
    ours, ref = make_pair(ours_cls, torch_cls, shape[1], gen, momentum=momentum)
    for k in range(5):
        # each batch its own offset and scale, so the running statistics move
        x = randn(shape, gen, scale=1.0 + k, shift=2.0 - k)
        dy = randn(shape, gen)
        for got, want in zip(step(ours, x, dy), step(ref, x, dy)):
            assert_close(got, want)
        assert_same_state(ours, ref)
        with torch.no_grad():  # the same SGD step on both
            for p, q in zip(ours.parameters(), ref.parameters()):
                p -= 0.3 * p.grad
                q -= 0.3 * q.grad
    assert int(ours.num_batches_tracked) == 5

    ours.eval()
    ref.eval()
    for _ in range(2):
        x, dy = randn(shape, gen, shift=0.5), randn(shape, gen)
        for got, want in zip(step(ours, x, dy), step(ref, x, dy)):
            assert_close(got, want)
    assert_same_state(ours, ref)  # eval leaves the buffers alone
    assert int(ours.num_batches_tracked) == 5


def test_cumulative_average_is_mean_of_batch_statistics():
    gen = generator(2)
    bn = bnn.BatchNorm1d(3, momentum=None, dtype=F64)
    batches = [randn((6, 3), gen, shift=k) for k in range(4)]
    for x in batches:
        bn(x)
    stacked = torch.stack(batches)
    torch.testing.assert_close(bn.running_mean, stacked.mean(dim=1).mean(dim=0), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(bn.running_var, stacked.var(dim=1).mean(dim=0), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("track", [True, False])
@pytest.mark.parametrize("case", ["1d-3D", "2d"])
def test_affine_and_tracking_options_match_torch(case, affine, track):
    ours_cls, torch_cls, shape = CASES[case]
    gen = generator(3)
    ours, ref = make_pair(ours_cls, torch_cls, shape[1], gen, affine=affine, track_running_stats=track)
    assert (ours.weight is None) == (not affine) and (ours.running_mean is None) == (not track)
    for mode in ("train", "eval", "train"):
        ours.train(mode == "train")
        ref.train(mode == "train")
        x, dy = randn(shape, gen, shift=1.0), randn(shape, gen)
        got, want = step(ours, x, dy), step(ref, x, dy)
        for a, b in zip(got, want):
            assert_close(a, b)
        assert_same_state(ours, ref)


def test_bias_false_keyword_matches_torch():
    gen = generator(4)
    ours, ref = make_pair(bnn.BatchNorm1d, torch.nn.BatchNorm1d, 3, gen, bias=False)
    assert ours.bias is None and ours.weight is not None
    x, dy = randn((5, 3), gen), randn((5, 3), gen)
    for mode in (True, False):
        ours.train(mode)
        ref.train(mode)
        for a, b in zip(step(ours, x, dy), step(ref, x, dy)):
            assert_close(a, b)
    assert repr(ours) == repr(ref)


def test_computation_does_not_use_torch_batch_norm(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("torch's batch_norm was called")

    monkeypatch.setattr(torch, "batch_norm", forbidden)
    monkeypatch.setattr(torch.nn.functional, "batch_norm", forbidden)
    bn = bnn.BatchNorm2d(2, dtype=F64)
    x = randn((3, 2, 2, 2), generator(5)).requires_grad_(True)
    bn(x).sum().backward()
    bn.eval()
    bn(x).sum().backward()
    assert x.grad is not None
    with pytest.raises(AssertionError, match="was called"):
        torch.nn.BatchNorm2d(2)(torch.zeros(3, 2, 2, 2))


# --------------------------------------------------------------------------- gradcheck


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("case", ["1d-2D", "1d-3D", "2d"])
def test_gradcheck_module(case, training):
    ours_cls, _, shape = CASES[case]
    gen = generator(6)
    bn = ours_cls(shape[1], dtype=F64, momentum=0.5).train(training)
    with torch.no_grad():
        bn.running_mean.copy_(randn(shape[1], gen))
        bn.running_var.copy_(randn(shape[1], gen).abs() + 0.5)
    x = randn(shape, gen, shift=1.0).requires_grad_(True)
    w = randn(shape[1], gen, scale=0.5, shift=1.0).requires_grad_(True)
    b = randn(shape[1], gen).requires_grad_(True)

    def f(x, w, b):
        return functional_call(bn, {"weight": w, "bias": b}, (x,))

    assert torch.autograd.gradcheck(f, (x, w, b), eps=1e-6, atol=1e-8, rtol=1e-7)


@pytest.mark.parametrize("training", [True, False])
def test_gradcheck_module_without_affine(training):
    bn = bnn.BatchNorm1d(3, affine=False, dtype=F64).train(training)
    x = randn((5, 3), generator(7), shift=1.0).requires_grad_(True)
    assert torch.autograd.gradcheck(bn, (x,), eps=1e-6, atol=1e-8, rtol=1e-7)


def test_gradcheck_functions_directly():
    gen = generator(8)
    x = randn((4, 3, 2), gen).requires_grad_(True)
    w = randn(3, gen, shift=1.0).requires_grad_(True)
    b = randn(3, gen).requires_grad_(True)
    rm, rv = randn(3, gen), randn(3, gen).abs() + 0.5

    def train_fn(x, w, b):
        return bnn.BatchNormFunction.apply(x, w, b, 1e-5)[0]

    def eval_fn(x, w, b):
        return bnn.BatchNormInferenceFunction.apply(x, w, b, rm, rv, 1e-5)

    assert torch.autograd.gradcheck(train_fn, (x, w, b), eps=1e-6, atol=1e-8, rtol=1e-7)
    assert torch.autograd.gradcheck(eval_fn, (x, w, b), eps=1e-6, atol=1e-8, rtol=1e-7)
    # None for weight/bias means gamma = 1, beta = 0
    assert torch.autograd.gradcheck(lambda x: bnn.BatchNormFunction.apply(x, None, None, 1e-5)[0], (x,))
    assert torch.autograd.gradcheck(lambda x: bnn.BatchNormInferenceFunction.apply(x, None, None, rm, rv, 1e-5), (x,))


def test_function_returns_batch_statistics_without_gradient():
    x = randn((6, 2), generator(9)).requires_grad_(True)
    y, mean, var = bnn.BatchNormFunction.apply(x, None, None, 1e-5)
    assert y.requires_grad and not mean.requires_grad and not var.requires_grad
    torch.testing.assert_close(mean, x.detach().mean(0), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(var, x.detach().var(0, unbiased=False), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("which", ["x only", "weight only", "bias only"])
def test_partial_requires_grad_matches_torch(which, training):
    gen = generator(10)
    ours, ref = make_pair(bnn.BatchNorm2d, torch.nn.BatchNorm2d, 3, gen)
    x, dy = randn((2, 3, 2, 2), gen), randn((2, 3, 2, 2), gen)
    results = []
    for m in (ours, ref):
        m.train(training)
        m.weight.requires_grad_(which == "weight only")
        m.bias.requires_grad_(which == "bias only")
        xi = x.clone().requires_grad_(which == "x only")
        m(xi).backward(dy)
        results.append((xi.grad, m.weight.grad, m.bias.grad))
    for a, b in zip(*results):
        assert_close(a, b)
    got = results[0]
    assert [g is not None for g in got] == [which == "x only", which == "weight only", which == "bias only"]


def test_in_place_change_between_forward_and_backward_raises_like_torch():
    for cls in (bnn.BatchNorm1d, torch.nn.BatchNorm1d):
        bn = cls(2, dtype=F64)
        y = bn(randn((4, 2), generator(11)))
        with torch.no_grad():
            bn.weight.mul_(2.0)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.sum().backward()


# --------------------------------------------------------------------------- state, repr, reset


@pytest.mark.parametrize("kwargs", [{}, {"affine": False}, {"track_running_stats": False}, {"momentum": None}])
@pytest.mark.parametrize("classes", [(bnn.BatchNorm1d, torch.nn.BatchNorm1d), (bnn.BatchNorm2d, torch.nn.BatchNorm2d)])
def test_state_dict_and_repr_identical_to_torch(classes, kwargs):
    ours, ref = classes[0](4, **kwargs), classes[1](4, **kwargs)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in ref.named_buffers()]
    assert repr(ours) == repr(ref)
    assert isinstance(ours, classes[1])
    assert_same_state(ours, ref)  # same initial values: ones, zeros, zeros, ones, 0


def test_load_state_dict_both_ways():
    gen = generator(12)
    ref = torch.nn.BatchNorm2d(3, dtype=F64)
    for _ in range(3):
        ref(randn((4, 3, 2, 2), gen, shift=3.0))
    ours = bnn.BatchNorm2d(3, dtype=F64)
    ours.load_state_dict(ref.state_dict())  # torch -> ours
    assert_same_state(ours, ref)
    assert int(ours.num_batches_tracked) == 3

    for _ in range(2):
        ours(randn((4, 3, 2, 2), gen, shift=-1.0))
    back = torch.nn.BatchNorm2d(3, dtype=F64)
    back.load_state_dict(ours.state_dict())  # ours -> torch
    assert_same_state(back, ours)
    assert int(back.num_batches_tracked) == 5
    x = randn((2, 3, 2, 2), gen)
    assert_close(ours.eval()(x), back.eval()(x))

    # a whole model saved with torch's BN loads into the same model with ours
    model_ref = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    model_ours = torch.nn.Sequential(torch.nn.Linear(2, 3), bnn.BatchNorm1d(3))
    model_ours.load_state_dict(model_ref.state_dict(), strict=True)


def test_reset_methods_like_torch():
    bn = bnn.BatchNorm1d(3, dtype=F64)
    gen = generator(13)
    bn(randn((4, 3), gen, shift=5.0))
    with torch.no_grad():
        bn.weight.fill_(3.0)
        bn.bias.fill_(-2.0)
    bn.reset_running_stats()
    assert torch.equal(bn.running_mean, torch.zeros(3, dtype=F64))
    assert torch.equal(bn.running_var, torch.ones(3, dtype=F64))
    assert int(bn.num_batches_tracked) == 0
    assert torch.equal(bn.weight, torch.full((3,), 3.0, dtype=F64))
    bn.reset_parameters()
    assert torch.equal(bn.weight, torch.ones(3, dtype=F64)) and torch.equal(bn.bias, torch.zeros(3, dtype=F64))


# --------------------------------------------------------------------------- edge cases and errors


def test_eval_with_batch_size_one_matches_torch():
    gen = generator(14)
    ours, ref = make_pair(bnn.BatchNorm1d, torch.nn.BatchNorm1d, 3, gen)
    x = randn((6, 3), gen, shift=1.0)
    ours(x)
    ref(x)
    ours.eval()
    ref.eval()
    x1, dy1 = randn((1, 3), gen), randn((1, 3), gen)
    for a, b in zip(step(ours, x1, dy1), step(ref, x1, dy1)):
        assert_close(a, b)
    bn2 = bnn.BatchNorm2d(2).eval()
    assert bn2(torch.ones(1, 2, 1, 1)).shape == (1, 2, 1, 1)


@pytest.mark.parametrize(
    "classes, shape",
    [
        ((bnn.BatchNorm1d, torch.nn.BatchNorm1d), (1, 3)),
        ((bnn.BatchNorm1d, torch.nn.BatchNorm1d), (1, 3, 1)),
        ((bnn.BatchNorm2d, torch.nn.BatchNorm2d), (1, 3, 1, 1)),
    ],
)
def test_one_value_per_channel_in_training_raises_like_torch(classes, shape):
    messages, counts = [], []
    for cls in classes:
        bn = cls(3)
        with pytest.raises(ValueError, match="Expected more than 1 value per channel when training") as err:
            bn(torch.zeros(shape))
        messages.append(str(err.value))
        counts.append(int(bn.num_batches_tracked))
    assert messages[0] == messages[1]
    assert counts[0] == counts[1]  # torch counts the batch before it checks it; so do we


@pytest.mark.parametrize(
    "classes, ndim",
    [
        ((bnn.BatchNorm1d, torch.nn.BatchNorm1d), 1),
        ((bnn.BatchNorm1d, torch.nn.BatchNorm1d), 4),
        ((bnn.BatchNorm2d, torch.nn.BatchNorm2d), 3),
        ((bnn.BatchNorm2d, torch.nn.BatchNorm2d), 5),
        ((bnn.BatchNorm3d, torch.nn.BatchNorm3d), 4),
    ],
)
def test_wrong_input_dims_raise_like_torch(classes, ndim):
    x = torch.zeros((2,) * ndim)
    messages = []
    for cls in classes:
        with pytest.raises(ValueError, match=r"expected .*D input \(got %dD input\)" % ndim) as err:
            cls(2)(x)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    if classes[0] is bnn.BatchNorm1d and ndim == 1:
        assert messages[0] == "expected 2D or 3D input (got 1D input)"


def test_non_positive_eps_in_training_raises_like_torch():
    for cls in (bnn.BatchNorm1d, torch.nn.BatchNorm1d):
        with pytest.raises(ValueError, match="eps must be positive during training"):
            cls(2, eps=0.0)(torch.zeros(3, 2))


def test_functional_eval_without_running_stats_raises_like_torch():
    with pytest.raises(RuntimeError, match="running_mean must be defined in evaluation mode"):
        bnn.batch_norm(torch.zeros(3, 2), None, None, training=False)


def test_no_grad_inference_and_training():
    bn = bnn.BatchNorm1d(2)
    with torch.no_grad():
        y = bn(torch.randn(5, 2, generator=generator(15)))
    assert not y.requires_grad and int(bn.num_batches_tracked) == 1


# --------------------------------------------------------------------------- float32


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("case", ["1d-2D", "2d"])
def test_float32_keeps_dtype_and_matches_torch(case, training):
    ours_cls, torch_cls, shape = CASES[case]
    gen = generator(16)
    ours, ref = make_pair(ours_cls, torch_cls, shape[1], gen, dtype=torch.float32)
    for k in range(3):
        ours.train(training or k < 2)
        ref.train(training or k < 2)
        x = randn(shape, gen, dtype=torch.float32, scale=2.0, shift=1.0)
        dy = randn(shape, gen, dtype=torch.float32)
        got, want = step(ours, x, dy), step(ref, x, dy)
        for a, b in zip(got, want):
            assert a.dtype == torch.float32
            assert_close(a, b, rtol=1e-5, atol=1e-5)
        assert_same_state(ours, ref, rtol=1e-5, atol=1e-6)
    assert ours.running_mean.dtype == ours.running_var.dtype == torch.float32


def test_float64_module_with_large_offset_matches_torch():
    gen = generator(17)
    ours, ref = make_pair(bnn.BatchNorm1d, torch.nn.BatchNorm1d, 3, gen)
    x, dy = randn((16, 3), gen, shift=1e4), randn((16, 3), gen)
    for a, b in zip(step(ours, x, dy), step(ref, x, dy)):
        assert_close(a, b, rtol=1e-8, atol=1e-10)


# --------------------------------------------------------------------------- inside models


def seeded(build, seed=0):
    """Build a model with torch's global generator seeded, leaving the global state as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build()


def test_sgd_training_in_sequential_matches_torch():
    model_ref = seeded(
        lambda: torch.nn.Sequential(
            torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, 2)
        ).double()
    )
    model_ours = copy.deepcopy(model_ref)
    model_ours[1] = bnn.BatchNorm1d(6, dtype=F64)
    model_ours.load_state_dict(model_ref.state_dict())
    opt_ref = torch.optim.SGD(model_ref.parameters(), lr=0.1, momentum=0.9)
    opt_ours = torch.optim.SGD(model_ours.parameters(), lr=0.1, momentum=0.9)
    gen = generator(18)
    for _ in range(6):
        x, target = randn((8, 4), gen), randn((8, 2), gen)
        for model, opt in ((model_ref, opt_ref), (model_ours, opt_ours)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), target).backward()
            opt.step()
    for (name, p), (_, q) in zip(model_ours.state_dict().items(), model_ref.state_dict().items()):
        if name.endswith("num_batches_tracked"):
            assert int(p) == int(q) == 6
        else:
            assert_close(p, q, rtol=1e-9, atol=1e-11)
    model_ours.eval()
    model_ref.eval()
    x = randn((3, 4), gen)
    assert_close(model_ours(x).detach(), model_ref(x).detach(), rtol=1e-9, atol=1e-11)


def test_gradients_flow_through_conv_model_like_torch():
    model_ref = seeded(lambda: torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(3),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(3 * 4 * 4, 5),
        torch.nn.BatchNorm1d(5),
        torch.nn.Tanh(),
        torch.nn.Linear(5, 1),
    ).double())
    model_ours = copy.deepcopy(model_ref)
    model_ours[1] = bnn.BatchNorm2d(3, dtype=F64)
    model_ours[5] = bnn.BatchNorm1d(5, dtype=F64)
    model_ours.load_state_dict(model_ref.state_dict())
    gen = generator(19)
    x = randn((6, 2, 4, 4), gen)
    grads = []
    for model in (model_ours, model_ref):
        xi = x.clone().requires_grad_(True)
        model(xi).pow(2).mean().backward()
        grads.append([xi.grad] + [p.grad for p in model.parameters()])
    for a, b in zip(*grads):
        assert a is not None
        assert_close(a, b)


# --------------------------------------------------------------------------- torch's semantics (#12, #16)


def outcome(f):
    """``("ok", result)`` or ``("raised", exception type, message)``."""
    try:
        return ("ok", f())
    except Exception as err:  # noqa: BLE001 - the point is to compare whatever happens
        return ("raised", type(err), str(err))


def assert_same_outcome(f, classes, rtol=RTOL, atol=ATOL):
    """``f(cls)`` for bnlib's class and torch's: equal results (NaN where torch has NaN), or the same error."""
    ours, ref = outcome(lambda: f(classes[0])), outcome(lambda: f(classes[1]))
    assert ours[0] == ref[0], (ours, ref)
    if ref[0] == "raised":
        assert ours[1:] == ref[1:]
    else:
        torch.testing.assert_close(ours[1], ref[1], rtol=rtol, atol=atol, equal_nan=True)
    return ours


BN1D = (bnn.BatchNorm1d, torch.nn.BatchNorm1d)
BN2D = (bnn.BatchNorm2d, torch.nn.BatchNorm2d)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("case", ["1d-2D", "2d"])
def test_gradgradcheck_module(case, training):
    ours_cls, _, shape = CASES[case]
    gen = generator(20)
    bn = ours_cls(shape[1], dtype=F64).train(training)
    with torch.no_grad():
        bn.running_mean.copy_(randn(shape[1], gen))
        bn.running_var.copy_(randn(shape[1], gen).abs() + 0.5)
    x = randn(shape, gen, shift=1.0).requires_grad_(True)
    w = randn(shape[1], gen, scale=0.5, shift=1.0).requires_grad_(True)
    b = randn(shape[1], gen).requires_grad_(True)

    def f(x, w, b):
        return functional_call(bn, {"weight": w, "bias": b}, (x,))

    assert torch.autograd.gradgradcheck(f, (x, w, b), eps=1e-6, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("training", [True, False])
def test_second_derivatives_equal_torchs(training):
    """A gradient penalty and a Hessian-vector product through the layer, as with torch's layer."""
    gen = generator(21)
    x0, v = randn((6, 3), gen, shift=1.0), randn((6, 3), gen)
    results = []
    for cls in BN1D:
        bn = cls(3, dtype=F64).train(training)
        with torch.no_grad():
            bn.weight.copy_(randn(3, gen, F64, 0.5, 1.0) if not results else results[0][-1])
        x = x0.clone().requires_grad_(True)
        gx, gw = torch.autograd.grad(bn(x).pow(3).sum(), (x, bn.weight), create_graph=True)
        penalty = gx.pow(2).sum() + gw.pow(2).sum()
        hx, hw, hb = torch.autograd.grad(penalty, (x, bn.weight, bn.bias), allow_unused=True, retain_graph=True)
        (hvp,) = torch.autograd.grad(gx, x, v, retain_graph=True)
        results.append((hx, hw, hb, hvp, bn.weight.detach().clone()))
    for a, b in zip(*results):
        assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("classes, shape", [(BN1D, (0, 5)), (BN1D, (0, 5, 9)), (BN1D, (3, 5, 0)), (BN2D, (0, 5, 2, 2))])
def test_empty_batch_like_torch(classes, shape):
    got = []
    for cls in classes:
        bn = cls(5, dtype=F64)
        x = torch.zeros(shape, dtype=F64, requires_grad=True)
        y = bn(x)
        y.sum().backward()
        got.append((y.shape, y.dtype, int(bn.num_batches_tracked), bn.running_mean.clone(),
                    bn.running_var.clone(), bn.weight.grad, bn.bias.grad, x.grad.shape))
    ours, ref = got
    assert ours[:3] == ref[:3] and ours[2] == 1 and ours[-1] == ref[-1]
    for a, b in zip(ours[3:7], ref[3:7]):
        assert_close(a, b)
    assert torch.equal(ours[3], torch.zeros(5, dtype=F64)) and torch.equal(ours[4], torch.ones(5, dtype=F64))


@pytest.mark.parametrize("dtype", [torch.int64, torch.float64])
@pytest.mark.parametrize("training", [True, False])
def test_empty_batch_dtypes_and_zero_channels_like_torch(training, dtype):
    # torch's empty path: input.clone() * weight[0] + bias[0], checked before dtypes and channels
    assert_same_outcome(lambda cls: cls(3).train(training)(torch.zeros(0, 3, dtype=dtype)), BN1D)
    assert_same_outcome(lambda cls: cls(4).train(training)(torch.zeros(0, 3)), BN1D)
    # BatchNorm1d(0): torch fails indexing weight[0]; affine=False runs
    assert_same_outcome(lambda cls: cls(0).train(training)(torch.zeros(4, 0)), BN1D)
    assert_same_outcome(lambda cls: cls(0, affine=False).train(training)(torch.zeros(4, 0)), BN1D)


def nan_inf_batch(gen):
    x = randn((5, 3), gen)
    x[1, 0] = float("nan")
    x[2, 1] = float("inf")
    return x


@pytest.mark.parametrize("training", [True, False])
def test_nan_and_inf_propagate_like_torch(training):
    gen = generator(22)
    x, dy = nan_inf_batch(gen), randn((5, 3), gen)
    dy_inf = dy.clone()
    dy_inf[0, 2] = float("inf")
    results = []
    for cls in BN1D:
        bn = cls(3, dtype=F64).train(training)
        out = []
        for xi, dyi in ((x, dy), (x.nan_to_num(0.0, 0.0, 0.0), dy_inf)):
            xi = xi.clone().requires_grad_(True)
            bn.zero_grad(set_to_none=True)
            y = bn(xi)
            y.backward(dyi)
            out += [y.detach(), xi.grad, bn.weight.grad, bn.bias.grad]
        results.append(out + [bn.running_mean.clone(), bn.running_var.clone()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, equal_nan=True)
    assert results[0][0].isnan().any()  # the test does exercise non-finite values


def test_eval_with_negative_running_var_gives_nan_like_torch():
    def f(cls):
        bn = cls(2, dtype=F64).eval()
        with torch.no_grad():
            bn.running_var.copy_(torch.tensor([-1.0, 2.0], dtype=F64))
        return bn(torch.ones(3, 2, dtype=F64))

    y = assert_same_outcome(f, BN1D)[1]
    assert y[:, 0].isnan().all() and y[:, 1].isfinite().all()


@pytest.mark.parametrize("momentum", [-0.5, 1.5, float("nan")])
def test_momentum_outside_unit_interval_accepted_like_torch(momentum):
    def f(cls):
        bn = cls(2, momentum=momentum, dtype=F64)
        bn(torch.tensor([[1.0, 2.0], [3.0, 6.0], [2.0, 0.0]], dtype=F64))
        return torch.stack([bn.running_mean, bn.running_var])

    assert_same_outcome(f, BN1D)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64])
@pytest.mark.parametrize("training", [True, False])
def test_non_float_input_raises_like_torch(training, dtype):
    _, err_type, message = assert_same_outcome(lambda cls: cls(3).train(training)(torch.ones(4, 3, dtype=dtype)), BN1D)
    assert err_type is NotImplementedError and "not implemented for" in message


@pytest.mark.parametrize("module_dtype, input_dtype", [
    (torch.float32, torch.float64), (torch.float64, torch.float32), (torch.float16, torch.float32),
    (torch.bfloat16, torch.float64), (torch.float32, torch.bfloat16), (torch.float32, torch.float16),
])
@pytest.mark.parametrize("training", [True, False])
def test_mixed_dtypes_like_torch(training, module_dtype, input_dtype):
    x = randn((4, 3), generator(23)).to(input_dtype)
    assert_same_outcome(lambda cls: cls(3, dtype=module_dtype).train(training)(x), BN1D, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("kwargs", [{}, {"affine": False}, {"track_running_stats": False},
                                    {"affine": False, "track_running_stats": False}])
@pytest.mark.parametrize("training", [True, False])
def test_wrong_channel_count_raises_like_torch(training, kwargs):
    outcome_ = assert_same_outcome(lambda cls: cls(4, **kwargs).train(training)(torch.ones(5, 3)), BN1D)
    if kwargs != {"affine": False, "track_running_stats": False}:
        assert outcome_[1] is RuntimeError and "should contain 3 elements not 4" in outcome_[2]


@pytest.mark.parametrize("training", [True, False])
def test_channels_last_kept_like_torch(training):
    gen = generator(24)
    x = randn((2, 3, 4, 5), gen).to(memory_format=torch.channels_last)
    dy = randn((2, 3, 4, 5), gen)
    got = []
    for cls in BN2D:
        bn = cls(3, dtype=F64).train(training)
        xi = x.clone().requires_grad_(True)
        y = bn(xi)
        y.backward(dy)
        assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
        assert xi.grad.is_contiguous(memory_format=torch.channels_last)
        got.append((y.detach(), xi.grad))
    for a, b in zip(*got):
        assert_close(a, b)


# --------------------------------------------------------------------------- torch.func, TorchScript, compile


def test_torch_func_transforms_like_torch():
    from torch.func import grad, jacrev, vmap

    gen = generator(25)
    x, xs = randn((5, 3), gen), randn((4, 5, 3), gen)
    for kwargs, training in (({}, False), ({"track_running_stats": False}, True)):
        ours, ref = make_pair(bnn.BatchNorm1d, torch.nn.BatchNorm1d, 3, gen, **kwargs)
        ours.train(training)
        ref.train(training)
        assert_close(vmap(ours)(xs), vmap(ref)(xs))
        assert_close(jacrev(ours)(x), jacrev(ref)(x))
        assert_close(grad(lambda x, m=ours: m(x).pow(3).sum())(x), grad(lambda x, m=ref: m(x).pow(3).sum())(x))
        params = {k: v.detach() for k, v in ours.named_parameters()}
        jac_ours = jacrev(lambda p: functional_call(ours, p, (x,)))(params)
        jac_ref = jacrev(lambda p: functional_call(ref, p, (x,)))(params)
        for k in params:
            assert_close(jac_ours[k], jac_ref[k])
    # running statistics updated in place under a transform: both refuse
    for transform in (vmap, lambda m: grad(lambda x: m(x).sum())):
        errors = [outcome(lambda cls=cls: transform(cls(3, dtype=F64))(xs if transform is vmap else x))
                  for cls in BN1D]
        assert errors[0][0] == errors[1][0] == "raised" and errors[0][1] is errors[1][1] is RuntimeError


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
def test_torchscript_raises_a_clear_error():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), bnn.BatchNorm1d(3))
    with pytest.raises(RuntimeError, match=r"bnlib\.nn\.BatchNorm1d cannot be compiled by TorchScript.*torch\.nn\.BatchNorm1d"):
        torch.jit.script(model)
    with pytest.raises(RuntimeError, match="torch.jit.trace cannot record"):
        torch.jit.trace(model, torch.randn(4, 2))
    torch.jit.script(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3)))  # the alternative works


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_torch_compile_matches_torch(backend):
    torch._dynamo.reset()
    ref = seeded(lambda: torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(),
                                             torch.nn.Linear(6, 2)).double())
    ours = copy.deepcopy(ref)
    ours[1] = bnn.BatchNorm1d(6, dtype=F64)
    ours.load_state_dict(ref.state_dict())
    compiled = torch.compile(ours, backend=backend)
    gen = generator(26)
    for _ in range(2):
        x = randn((8, 4), gen)
        y, y_ref = compiled(x), ref(x)
        y.pow(2).sum().backward()
        y_ref.pow(2).sum().backward()
        assert_close(y.detach(), y_ref.detach())
        for p, q in zip(ours.parameters(), ref.parameters()):
            assert_close(p.grad, q.grad)
    assert_same_state(ours[1], ref[1])
    compiled.eval()
    ref.eval()
    x = randn((3, 4), gen)
    assert_close(compiled(x).detach(), ref(x).detach())


def test_convert_sync_batchnorm_refuses_to_swap_bnlib_modules():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), bnn.BatchNorm1d(3))
    with pytest.raises(TypeError, match=r"bnlib\.nn\.SyncBatchNorm\.convert_sync_batchnorm"):
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert type(model[1]) is bnn.BatchNorm1d
    # elsewhere the module has no qconfig until one is set, as torch's
    bn = bnn.BatchNorm1d(3)
    assert not hasattr(bn, "qconfig")
    bn.qconfig = "q"
    assert bn.qconfig == "q"


# --------------------------------------------------------------------------- mixed precision


def test_autocast_bfloat16_step_with_gradscaler_overflow_skips_like_torch():
    """A CPU autocast (bfloat16) training loop with GradScaler: an overflowing loss scale and a
    NaN batch each make the scaler skip the step, with bnlib's layer exactly as with torch's."""
    ref = seeded(lambda: torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Sigmoid(),
                                             torch.nn.Linear(8, 3)))
    ours = copy.deepcopy(ref)
    ours[1] = bnn.BatchNorm1d(8)
    ours.load_state_dict(ref.state_dict())
    gen = generator(27)
    batches = [(randn((16, 4), gen, dtype=torch.float32), torch.randint(0, 3, (16,), generator=gen)) for _ in range(5)]
    batches[3][0][2, 1] = float("nan")  # a bad batch
    histories = []
    for model in (ours, ref):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        # 8 * loss * 2**127 overflows float32: the first scaled loss is inf; the backoff lands on 2**15
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127, backoff_factor=2.0**-112, growth_interval=100)
        history = []
        for x, target in batches:
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x)
                assert model[1](model[0](x)).dtype == torch.bfloat16
                loss = 8.0 * torch.nn.functional.cross_entropy(out.float(), target)
            scaler.scale(loss).backward()
            before = [p.detach().clone() for p in model.parameters()]
            scaler.step(opt)
            scaler.update()
            moved = any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
            history.append((moved, scaler.get_scale()))
        histories.append(history)
    assert histories[0] == histories[1]
    assert [moved for moved, _ in histories[0]] == [False, True, True, False, True]
    for p, q in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=2e-2, atol=2e-2)


def test_torch_compile_fullgraph_says_why_and_export_works():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), bnn.BatchNorm1d(3)).double()
    x = randn((6, 2), generator(28))
    torch._dynamo.reset()
    with pytest.raises(Exception, match="bnlib.nn computes batch norm with numpy"):
        torch.compile(model, backend="eager", fullgraph=True)(x)
    for training in (False, True):
        ref = copy.deepcopy(model)
        ref[1] = torch.nn.BatchNorm1d(3, dtype=F64)
        ref.load_state_dict(model.state_dict())
        model.train(training)
        ref.train(training)
        exported = torch.export.export(model, (x,)).module()
        assert_close(exported(x).detach(), ref(x).detach())
