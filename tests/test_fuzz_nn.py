"""Property-based fuzz: bnlib.nn.BatchNorm*d against torch.nn.BatchNorm*d.

Hypothesis draws a module (dimension, channels, eps, momentum, affine, tracking, dtype), an input
(shape including zero sizes, dtype including integers and half precision, memory format, values
including NaN, infinity, huge and constant channels), a mode and an upstream gradient. Both
modules run the same steps; the outcome must be the same: equal results (NaN where torch has
NaN) for the output, every gradient and every buffer, or the same exception type and message.
"""

import pytest

torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import bnlib.nn as bnn  # noqa: E402

CLASSES = {1: (bnn.BatchNorm1d, torch.nn.BatchNorm1d), 2: (bnn.BatchNorm2d, torch.nn.BatchNorm2d),
           3: (bnn.BatchNorm3d, torch.nn.BatchNorm3d)}
FLOATS = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
# relative tolerance per computing dtype (bnlib sums float32 in float64 and rounds half once)
TOL = {torch.float64: 1e-7, torch.float32: 2e-4, torch.bfloat16: 5e-2, torch.float16: 5e-3}


@st.composite
def cases(draw):
    dim = draw(st.sampled_from([1, 1, 2, 3]))
    ndim = {1: draw(st.sampled_from([2, 3])), 2: 4, 3: 5}[dim]
    if draw(st.integers(0, 19)) == 0:  # now and then a wrong number of dimensions
        ndim = draw(st.integers(1, 5))
    channels = draw(st.sampled_from([1, 2, 3, 1, 2, 3, 0]))
    shape = [draw(st.sampled_from([2, 3, 4, 5, 0, 1])), channels] + [draw(st.integers(0, 3)) for _ in range(ndim - 2)]
    shape = shape[:ndim]
    module_dtype = draw(st.sampled_from(FLOATS))
    input_dtype = draw(st.sampled_from(
        [module_dtype] * 10 + FLOATS + [torch.int64, torch.uint8, torch.bool]))
    module_channels = channels if draw(st.integers(0, 9)) else channels + 1
    return {
        "dim": dim,
        "shape": tuple(shape),
        "module": {
            "num_features": module_channels,
            "eps": draw(st.sampled_from([1e-5] * 5 + [1e-3, 1e-30, 0.0, -1.0])),
            "momentum": draw(st.sampled_from([0.1, 0.1, None, 0.0, 1.0, -0.5, 1.5])),
            "affine": draw(st.booleans()),
            "track_running_stats": draw(st.booleans()),
            "dtype": module_dtype,
        },
        "input_dtype": input_dtype,
        "values": draw(st.sampled_from(["normal", "normal", "offset", "constant_channel", "nan", "inf", "huge",
                                        "tiny"])),
        "dy_values": draw(st.sampled_from(["normal", "normal", "inf", "nan"])),
        "channels_last": draw(st.booleans()),
        "modes": draw(st.lists(st.booleans(), min_size=1, max_size=3)),  # True: training
        "negative_running_var": draw(st.integers(0, 9)) == 0,
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


def make_values(case, gen):
    shape, kind = case["shape"], case["values"]
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    if x.numel():
        if kind == "offset":
            x = x * 3.0 + 50.0
        elif kind == "constant_channel" and len(shape) > 1 and shape[1]:
            x[:, 0] = 2.5
        elif kind in ("nan", "inf"):
            x.view(-1)[int(torch.randint(x.numel(), (1,), generator=gen))] = float(kind)
        elif kind == "huge":
            x = x * 1e19
        elif kind == "tiny":
            x = x * 1e-30
    dtype = case["input_dtype"]
    if dtype == torch.bool:
        return x > 0
    if not dtype.is_floating_point:
        return x.clamp(-100, 100).round().to(dtype) if dtype != torch.uint8 else x.abs().clamp(0, 200).to(dtype)
    return x.to(dtype)


def make_dy(case, gen, like):
    dy = torch.randn(like.shape, generator=gen, dtype=torch.float64)
    if dy.numel() and case["dy_values"] in ("nan", "inf"):
        dy.view(-1)[0] = float(case["dy_values"])
    return dy.to(like.dtype)


def finite_max(t):
    t = t.detach().double().abs()
    t = t[t.isfinite()]
    return float(t.max()) if t.numel() else 1.0


def gradient_scales(m, x, dy, training):
    """Magnitudes that bound each gradient (for tolerances: half precision rounds at that scale)."""
    xd, axes = x.detach().double(), [0] + list(range(2, x.dim()))
    if training or m.running_var is None:
        mean, var = xd.mean(axes, keepdim=True), xd.var(axes, unbiased=False, keepdim=True)
    else:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean, var = m.running_mean.double().view(shape), m.running_var.double().view(shape)
    inv_std = (var + m.eps).rsqrt()
    x_hat = (xd - mean) * inv_std
    values = x.numel() // max(x.shape[1], 1)
    w = finite_max(m.weight) if m.weight is not None else 1.0
    dy_max = finite_max(dy)
    return 3 * dy_max * w * finite_max(inv_std), values * dy_max * finite_max(x_hat), values * dy_max


def run(cls, case):
    """The whole scenario on one class: a list of (value, scale) pairs, or the exception raised."""
    gen = torch.Generator().manual_seed(case["seed"])
    m = cls(**case["module"])
    if m.running_var is not None and case["negative_running_var"]:
        with torch.no_grad():
            m.running_var.fill_(-0.5)
    results = []
    for training in case["modes"]:
        m.train(training)
        x = make_values(case, gen)
        if case["channels_last"] and x.dim() in (4, 5):
            x = x.to(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
        if x.is_floating_point():
            x.requires_grad_(True)
        m.zero_grad(set_to_none=True)
        scales = gradient_scales(m, x, x, training) if x.is_floating_point() and x.numel() else (1.0,) * 3
        y = m(x)
        results += [(y.detach(), 1.0), (y.is_contiguous(), None)]
        if y.requires_grad:
            dy = make_dy(case, gen, y)
            scales = gradient_scales(m, x, dy, training) if x.numel() else (1.0,) * 3
            y.backward(dy)
            results += [(x.grad, scales[0]),
                        (x.grad.is_contiguous() if x.grad is not None and x.grad.numel() else None, None)]
            results += [(p.grad, scale) for p, scale in zip(m.parameters(), scales[1:])]
        results += [(v, 1.0) for v in m.state_dict().values()]
    return results


def outcome(cls, case):
    try:
        return ("ok", run(cls, case))
    except Exception as err:  # noqa: BLE001 - any exception is an outcome to compare
        return ("raised", type(err).__name__, str(err))


def assert_same(a, b, rtol, scale):
    if isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, (a, b)
        if b.is_floating_point():
            atol = rtol * max(finite_max(b), scale, 1.0)
            torch.testing.assert_close(a.double(), b.double(), rtol=rtol, atol=atol, equal_nan=True)
        else:
            assert torch.equal(a, b)
    else:
        assert a == b, (a, b)


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_bnlib_nn_behaves_like_torch_nn(case):
    ours_cls, torch_cls = CLASSES[case["dim"]]
    ours, ref = outcome(ours_cls, case), outcome(torch_cls, case)
    event(ref[0] if ref[0] == "ok" else f"raised {ref[1]}")
    assert ours[0] == ref[0], (case, ours, ref)
    if ref[0] == "raised":
        assert ours[1:] == ref[1:], case
        return
    dtypes = [case["module"]["dtype"], case["input_dtype"]]
    rtol = max(TOL.get(d, 0.0) for d in dtypes)
    assert len(ours[1]) == len(ref[1])
    for (a, _), (b, scale) in zip(ours[1], ref[1]):
        assert_same(a, b, rtol, scale if scale is not None and scale == scale else 1.0)
