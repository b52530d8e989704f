"""PyTorch's generic module checks (``test/test_modules.py``, class ``TestModule``) for BatchNorm1d/2d/3d.

Each check below restates one of TestModule's tests, on the sample inputs and error inputs
PyTorch declares for BatchNorm in ``torch/testing/_internal/common_modules.py``, and runs it on
torch's class (the control: the check must pass there, or the check is wrong) and on bnlib's.
Written for bnlib: TestModule's own machinery (device-generic instantiation, ModuleInfo) is not
used. Checks that need CUDA (``test_cpu_gpu_parity``, ``test_multiple_device_transfer``) and the
one for modules with an ``inplace`` argument (``test_check_inplace``) do not apply here.
On top, where TestModule only checks each class against itself, bnlib's results are compared
with torch's.
"""

import io
from dataclasses import dataclass, field

import pytest

torch = pytest.importorskip("torch")

import bnlib.nn as bnn  # noqa: E402

IMPLS = {
    "torch": {1: torch.nn.BatchNorm1d, 2: torch.nn.BatchNorm2d, 3: torch.nn.BatchNorm3d},
    "bnlib": {1: bnn.BatchNorm1d, 2: bnn.BatchNorm2d, 3: bnn.BatchNorm3d},
}


@dataclass
class Sample:
    dim: int  # BatchNorm{dim}d
    args: tuple
    shape: tuple
    desc: str
    kwargs: dict = field(default_factory=dict)

    @property
    def id(self):
        return f"{self.dim}d-{self.desc}"


# The BatchNorm sample inputs of common_modules.py: constructor arguments
# (num_features, eps, momentum, affine, track_running_stats) and the input's shape.
SAMPLES = [
    Sample(1, (10,), (4, 10), "affine"),
    Sample(1, (5,), (4, 5, 3), "3d_input"),
    Sample(1, (10, 1e-3, None), (4, 10), "affine_simple_average"),
    Sample(1, (10, 1e-3, 0.3, False), (4, 10), "not_affine"),
    Sample(1, (10, 1e-3, 0.3, True, False), (4, 10), "not_tracking_stats"),
    Sample(1, (5, 1e-3, 0.3, False), (4, 5, 3), "3d_input_not_affine"),
    Sample(1, (5, 1e-3, 0.3, False), (0, 5, 9), "zero_batch"),
    Sample(1, (10,), (4, 10), "affine_not_bias", {"bias": False}),
    Sample(2, (3,), (2, 3, 6, 6), "default"),
    Sample(2, (3, 1e-3, None), (2, 3, 6, 6), "2d_simple_average"),
    Sample(2, (3, 1e-3, 0.8), (2, 3, 6, 6), "momentum"),
    Sample(2, (3, 1e-3, 0.8, False), (2, 3, 6, 6), "not_affine"),
    Sample(2, (3, 1e-3, 0.8, True, False), (2, 3, 6, 6), "not_tracking_stats"),
    Sample(2, (5, 1e-3, 0.3, False), (0, 5, 2, 2), "zero_batch"),
    Sample(2, (3,), (2, 3, 6, 6), "affine_not_bias", {"bias": False}),
    Sample(3, (3,), (2, 3, 4, 4, 4), "default"),
    Sample(3, (3, 1e-3, None), (2, 3, 4, 4, 4), "3d_simple_average"),
    Sample(3, (3, 1e-3, 0.7), (2, 3, 4, 4, 4), "momentum"),
    Sample(3, (3, 1e-3, 0.7, False), (2, 3, 4, 4, 4), "not_affine"),
    Sample(3, (3, 1e-3, 0.7, True, False), (2, 3, 4, 4, 4), "not_tracking_stats"),
    Sample(3, (5, 1e-3, 0.3, False), (0, 5, 2, 2, 2), "zero_batch"),
    Sample(3, (3,), (2, 3, 4, 4, 4), "affine_not_bias", {"bias": False}),
]
SAMPLE_IDS = [s.id for s in SAMPLES]
DTYPES = [torch.float32, torch.float64]


def make_input(sample, dtype, requires_grad=False, seed=0):
    """Like common_modules' ``make_tensor``: uniform values in [-9, 9]."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return torch.testing.make_tensor(sample.shape, device="cpu", dtype=dtype, requires_grad=requires_grad)


def build(impl, sample, dtype, training, **extra):
    m = IMPLS[impl][sample.dim](*sample.args, **sample.kwargs, **extra)
    m.to(dtype)
    m.train(training)
    return m


def assert_params_and_buffers(module, device, dtype):
    for kind, items in (("parameter", module.named_parameters()), ("buffer", module.named_buffers())):
        for name, t in items:
            assert t.device == torch.device(device), f"{kind} {name} on {t.device}"
            if t.dtype.is_floating_point:
                assert t.dtype == dtype, f"{kind} {name} is {t.dtype}, expected {dtype}"


parametrize_impl = pytest.mark.parametrize("impl", list(IMPLS))
parametrize_training = pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
parametrize_dtype = pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
parametrize_sample = pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)


# --------------------------------------------------------------------------- test_forward


@parametrize_sample
@parametrize_dtype
@parametrize_training
@parametrize_impl
def test_forward_then_dtype_methods(impl, training, dtype, sample):
    m = build(impl, sample, dtype, training)
    x = make_input(sample, dtype)
    y = m(x)
    assert y.shape == x.shape and y.dtype == dtype
    # float() / double() convert parameters and buffers, and the module still runs
    (m.float() if dtype == torch.float32 else m.double())(x)
    assert_params_and_buffers(m, "cpu", dtype)


@parametrize_sample
@parametrize_dtype
@parametrize_training
def test_forward_matches_torch_over_steps(training, dtype, sample):
    """Beyond TestModule: three calls in a row, outputs and every buffer as torch's."""
    ours, ref = (build(impl, sample, dtype, training) for impl in ("bnlib", "torch"))
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}
    for seed in range(3):
        x = make_input(sample, dtype, seed=seed)
        torch.testing.assert_close(ours(x), ref(x), **tol)
        for (name, a), (_, b) in zip(ours.state_dict().items(), ref.state_dict().items()):
            torch.testing.assert_close(a, b, **tol, msg=name)


# --------------------------------------------------------------------------- test_factory_kwargs


@parametrize_sample
@parametrize_dtype
@parametrize_impl
def test_factory_kwargs(impl, dtype, sample):
    m = IMPLS[impl][sample.dim](*sample.args, **sample.kwargs, device="cpu", dtype=dtype)
    assert_params_and_buffers(m, "cpu", dtype)
    if m.num_batches_tracked is not None:
        assert m.num_batches_tracked.dtype == torch.long


# --------------------------------------------------------------------------- test_repr, test_pickle


@parametrize_sample
@parametrize_impl
def test_repr(impl, sample):
    m = build(impl, sample, torch.float32, True)
    ref = build("torch", sample, torch.float32, True)
    assert repr(m) == repr(ref) and str(m) == str(ref)


@parametrize_sample
@parametrize_dtype
@parametrize_training
@parametrize_impl
def test_pickle(impl, training, dtype, sample):
    m = build(impl, sample, dtype, training)
    x = make_input(sample, dtype)
    y = m(x)
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    copy = torch.load(buf, weights_only=False)
    assert type(copy) is type(m)
    m.load_state_dict(copy.state_dict())  # the same state for the next call
    torch.testing.assert_close(copy(x), m(x), rtol=0, atol=0)
    assert y.shape == x.shape


# --------------------------------------------------------------------------- test_non_contiguous_tensors


def non_contiguous(t):
    """TestModule's construction: every value twice along the last axis, then every other one."""
    out = torch.repeat_interleave(t, 2, dim=-1)[..., ::2].detach()
    return out.requires_grad_(t.requires_grad)


@parametrize_sample
@parametrize_dtype
@parametrize_training
@parametrize_impl
def test_non_contiguous_tensors(impl, training, dtype, sample):
    m = build(impl, sample, dtype, training)
    x = make_input(sample, dtype, requires_grad=True)
    gen = torch.Generator().manual_seed(1)
    dy = torch.randn(sample.shape, generator=gen, dtype=dtype)

    def run(x_in, dy_in):
        x_in = x_in.detach().requires_grad_(True)
        m.zero_grad(set_to_none=True)
        y = m(x_in)
        y.backward(dy_in)
        return y.detach(), x_in.grad, [p.grad for p in m.parameters()]

    m.eval() if not training else None
    reference = run(x, dy)
    for x_in, dy_in in ((x, non_contiguous(dy)), (non_contiguous(x), dy), (non_contiguous(x), non_contiguous(dy))):
        if x_in.numel() and x_in.dim() > 1 and x_in is not x:
            assert not x_in.is_contiguous()
        y, dx, dparams = run(x_in, dy_in)
        torch.testing.assert_close(y, reference[0])
        torch.testing.assert_close(dx, reference[1], atol=1e-4, rtol=0)
        for a, b in zip(dparams, reference[2]):
            torch.testing.assert_close(a, b)


# --------------------------------------------------------------------------- test_grad, test_gradgrad


def check_gradients(impl, training, sample, check):
    """TestModule's helper: the total derivative, then each parameter alone with the input."""
    m = build(impl, sample, torch.float64, training)
    params = tuple(m.parameters())
    x = make_input(sample, torch.float64, requires_grad=True)

    def fn(x, *ps):
        return m(x)

    assert check(fn, (x,) + params)
    for p in params:
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
        assert check(fn, (x,) + params)
        p.requires_grad_(False)


@parametrize_sample
@parametrize_training
@parametrize_impl
def test_grad(impl, training, sample):
    # fast mode (random projections) above 100 input values, to keep the suite quick
    def check(fn, inputs):
        return torch.autograd.gradcheck(fn, inputs, fast_mode=inputs[0].numel() > 100)

    check_gradients(impl, training, sample, check)


@parametrize_sample
@parametrize_training
@parametrize_impl
def test_gradgrad(impl, training, sample):
    # fast mode (random projections): the full numerical Hessian of a 384-value input is slow
    def check(fn, inputs):
        return torch.autograd.gradgradcheck(fn, inputs, fast_mode=True)

    check_gradients(impl, training, sample, check)


# --------------------------------------------------------------------------- test_memory_format


@parametrize_sample
@parametrize_dtype
@parametrize_training
@parametrize_impl
def test_memory_format(impl, training, dtype, sample):
    channels_last = {4: torch.channels_last, 5: torch.channels_last_3d}.get(len(sample.shape))
    input_formats = [torch.contiguous_format] + ([channels_last] if channels_last else [])
    module_formats = [torch.preserve_format, torch.contiguous_format] + ([channels_last] if channels_last else [])
    m = build(impl, sample, dtype, training)
    x = make_input(sample, dtype, requires_grad=True)
    gen = torch.Generator().manual_seed(2)
    dy = torch.rand(sample.shape, generator=gen, dtype=dtype)
    m_state = {k: v.clone() for k, v in m.state_dict().items()}

    def run(x_in):
        m.load_state_dict(m_state)  # every call sees the same buffers
        y = m(x_in)
        grads = torch.autograd.grad(y, (x_in,) + tuple(m.parameters()), dy)
        return y, grads

    want_y, want_grads = run(x)
    for in_fmt in input_formats:
        x_in = x.detach().clone().to(memory_format=in_fmt).requires_grad_(True)
        for mod_fmt in module_formats:
            m.to(memory_format=mod_fmt)
            y, grads = run(x_in)
            torch.testing.assert_close(y, want_y)
            torch.testing.assert_close(grads, want_grads)
            assert y.is_contiguous(memory_format=in_fmt)
            if x.numel():  # an empty gradient's layout is not defined (torch's is contiguous)
                assert grads[0].is_contiguous(memory_format=in_fmt)


# --------------------------------------------------------------------------- test_if_train_and_eval_modes_differ


@parametrize_sample
@parametrize_impl
def test_train_and_eval_modes_differ(impl, sample):
    """BatchNorm's ModuleInfo says train_and_eval_differ=True: forward must read ``training``."""
    m = build(impl, sample, torch.float32, True)
    del m.training
    with pytest.raises(AttributeError, match="'training'"):
        m(make_input(sample, torch.float32))


# --------------------------------------------------------------------------- test_device_ctx_init


@parametrize_sample
@parametrize_impl
def test_device_context_init(impl, sample):
    cls = IMPLS[impl][sample.dim]
    on_cpu = cls(*sample.args, **sample.kwargs)
    with torch.device("meta"):
        on_meta = cls(*sample.args, **sample.kwargs)
    for a, b in zip(list(on_meta.parameters()) + list(on_meta.buffers()),
                    list(on_cpu.parameters()) + list(on_cpu.buffers())):
        assert a.is_meta
        assert (a.shape, a.dtype, a.stride(), a.requires_grad) == (b.shape, b.dtype, b.stride(), b.requires_grad)


def outcome(f):
    """``("ok", result)`` or ``("raised", exception type, message)``."""
    try:
        return ("ok", f())
    except Exception as err:  # noqa: BLE001 - the point is to compare whatever happens
        return ("raised", type(err), str(err))


@parametrize_sample
@parametrize_training
def test_forward_on_meta_device_as_torch(training, sample):
    """Beyond TestModule: a meta module on meta input does what torch's does (shape inference;
    with momentum=None in training both fail reading the step count, which has no value on meta)."""
    results = []
    for impl in IMPLS:
        m = IMPLS[impl][sample.dim](*sample.args, **sample.kwargs, device="meta").train(training)
        x = torch.empty(sample.shape, device="meta", requires_grad=True)
        results.append(outcome(lambda: m(x)))
    ours, ref = results
    assert ours[0] == ref[0], (ours, ref)
    if ref[0] == "ok":
        assert ours[1].is_meta and ours[1].shape == ref[1].shape and ours[1].dtype == ref[1].dtype
    else:
        assert ours[1:] == ref[1:]


# --------------------------------------------------------------------------- test_errors


ERROR_SHAPES = {1: (2, 10), 2: (2, 10, 5, 5), 3: (2, 10, 4, 4, 4)}


@pytest.mark.parametrize("eps", [-1.0, 0.0])
@pytest.mark.parametrize("dim", [1, 2, 3])
@parametrize_dtype
@parametrize_impl
def test_errors(impl, dtype, dim, eps):
    m = IMPLS[impl][dim](10, eps=eps)
    x = torch.testing.make_tensor(ERROR_SHAPES[dim], device="cpu", dtype=dtype)
    with pytest.raises(ValueError, match="eps must be positive"):
        m(x)
