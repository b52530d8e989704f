"""Tests for bnlib.init: formulas of torch.nn.init, explicit Generator, no global state."""

import re

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from bnlib import init
from bnlib.init import gaussian, he_normal, xavier_normal, xavier_uniform, zeros

FAN_IN, FAN_OUT = 300, 500


def draw(name, rng, **kwargs):
    """Call each random initialiser with a common layer size."""
    if name == "gaussian":
        return gaussian((FAN_OUT, FAN_IN), 0.05, rng, **kwargs)
    fn = {"xavier_normal": xavier_normal, "xavier_uniform": xavier_uniform, "he_normal": he_normal}[name]
    return fn(FAN_IN, FAN_OUT, rng, **kwargs)


RANDOM = ["gaussian", "xavier_normal", "xavier_uniform", "he_normal"]


# ---------------------------------------------------------------- formulas


def test_zeros():
    w = zeros((3, 4))
    assert w.shape == (3, 4) and w.dtype == np.float64
    assert_array_equal(w, 0)
    assert zeros(5, dtype=np.float32).dtype == np.float32
    assert zeros((2, 3, 3, 3)).shape == (2, 3, 3, 3)


def test_gaussian_statistics():
    w = gaussian((400, 500), std=0.3, rng=np.random.default_rng(0))
    assert w.shape == (400, 500)
    assert_allclose(w.std(), 0.3, rtol=0.02)
    assert abs(w.mean()) < 0.3 * 0.01
    assert_array_equal(gaussian((2, 2), 0.0, np.random.default_rng(0)), 0)


@pytest.mark.parametrize("gain", [1.0, 5 / 3])
def test_xavier_normal_statistics(gain):
    w = xavier_normal(FAN_IN, FAN_OUT, np.random.default_rng(1), gain=gain)
    assert w.shape == (FAN_OUT, FAN_IN)
    assert_allclose(w.std(), gain * np.sqrt(2 / (FAN_IN + FAN_OUT)), rtol=0.02)


@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_xavier_uniform_statistics(gain):
    w = xavier_uniform(FAN_IN, FAN_OUT, np.random.default_rng(2), gain=gain)
    bound = gain * np.sqrt(6 / (FAN_IN + FAN_OUT))
    assert w.shape == (FAN_OUT, FAN_IN)
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.99 * bound
    assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.02)
    assert_allclose(w.std(), gain * np.sqrt(2 / (FAN_IN + FAN_OUT)), rtol=0.02)


def test_he_normal_statistics():
    # fan_in and fan_out far apart, so using the wrong one shows
    w = he_normal(50, 2000, np.random.default_rng(3))
    assert w.shape == (2000, 50)
    assert_allclose(w.std(), np.sqrt(2 / 50), rtol=0.02)


def test_same_std_as_torch_init():
    # torch's Linear layout (out, in): fan_in is size(1)
    torch.manual_seed(0)
    fan_in, fan_out = 50, 2000
    t = torch.empty(fan_out, fan_in, dtype=torch.float64)
    rng = np.random.default_rng(4)
    cases = [
        (torch.nn.init.xavier_normal_, {}, xavier_normal(fan_in, fan_out, rng)),
        (torch.nn.init.xavier_normal_, {"gain": 5 / 3}, xavier_normal(fan_in, fan_out, rng, gain=5 / 3)),
        (torch.nn.init.xavier_uniform_, {"gain": 2.0}, xavier_uniform(fan_in, fan_out, rng, gain=2.0)),
        (torch.nn.init.kaiming_normal_, {"nonlinearity": "relu"}, he_normal(fan_in, fan_out, rng)),
    ]
    for init_, kwargs, ours in cases:
        theirs = init_(t, **kwargs).numpy()
        assert ours.shape == theirs.shape
        assert_allclose(ours.std(), theirs.std(), rtol=0.04)
    bound = np.sqrt(6 / (fan_in + fan_out))
    assert_allclose(np.abs(torch.nn.init.xavier_uniform_(t).numpy()).max(), bound, rtol=0.01)


# ---------------------------------------------------------------- randomness


@pytest.mark.parametrize("name", RANDOM)
def test_same_seed_same_array(name):
    assert_array_equal(draw(name, np.random.default_rng(7)), draw(name, np.random.default_rng(7)))


@pytest.mark.parametrize("name", RANDOM)
def test_generator_state_advances(name):
    rng = np.random.default_rng(7)
    first, second = draw(name, rng), draw(name, rng)
    assert not np.array_equal(first, second)
    assert not np.array_equal(draw(name, np.random.default_rng(8)), first)


@pytest.mark.parametrize("name", RANDOM)
def test_global_state_untouched(name):
    before = np.random.get_state()
    draw(name, np.random.default_rng(0))
    after = np.random.get_state()
    assert before[0] == after[0]
    assert_array_equal(before[1], after[1])
    assert before[2:] == after[2:]
    zeros((3, 3))
    assert_array_equal(np.random.get_state()[1], before[1])


# ---------------------------------------------------------------- dtype


@pytest.mark.parametrize("name", RANDOM)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, "float32", np.dtype("float64")])
def test_dtype(name, dtype):
    w = draw(name, np.random.default_rng(0), dtype=dtype)
    assert w.dtype == np.dtype(dtype)
    assert w.shape == (FAN_OUT, FAN_IN)


def test_float32_statistics():
    w = he_normal(FAN_IN, FAN_OUT, np.random.default_rng(0), dtype=np.float32)
    assert_allclose(w.std(dtype=np.float64), np.sqrt(2 / FAN_IN), rtol=0.02)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", RANDOM)
@pytest.mark.parametrize("rng", [None, 0, np.random.RandomState(0), np.random, np.random.PCG64(0)])
def test_rng_must_be_a_generator(name, rng):
    with pytest.raises(TypeError, match=r"rng must be a numpy.random.Generator.*got"):
        draw(name, rng)


def test_rng_is_required():
    with pytest.raises(TypeError):
        xavier_normal(3, 4)


@pytest.mark.parametrize("name", RANDOM)
@pytest.mark.parametrize("dtype", [np.int64, np.float16, np.complex128, "banana"])
def test_bad_dtype(name, dtype):
    with pytest.raises(TypeError, match="float32 or float64"):
        draw(name, np.random.default_rng(0), dtype=dtype)
    with pytest.raises(TypeError, match="float32 or float64"):
        zeros((2, 2), dtype=dtype)


@pytest.mark.parametrize("fn", [xavier_normal, xavier_uniform, he_normal])
@pytest.mark.parametrize("fans", [(0, 3), (3, 0), (-1, 3), (2.5, 3), (3, True), ("3", 3)])
def test_bad_fans(fn, fans):
    with pytest.raises(ValueError, match=r"fan_(in|out) must be a positive integer, got"):
        fn(*fans, np.random.default_rng(0))


def test_numpy_integer_fans_accepted():
    assert he_normal(np.int64(3), np.int32(4), np.random.default_rng(0)).shape == (4, 3)


@pytest.mark.parametrize("shape", [(-1, 3), (2.0, 3), "ab", None, (True, 2)])
def test_bad_shape(shape):
    with pytest.raises(ValueError, match="shape must be"):
        zeros(shape)
    with pytest.raises(ValueError, match="shape must be"):
        gaussian(shape, 1.0, np.random.default_rng(0))


@pytest.mark.parametrize("std", [-0.1, np.nan, np.inf])
def test_bad_std(std):
    with pytest.raises(ValueError, match="std must be a non-negative finite number"):
        gaussian((2, 2), std, np.random.default_rng(0))


@pytest.mark.parametrize("std", ["0.1", None])
def test_std_wrong_type(std):
    with pytest.raises(TypeError, match="std"):
        gaussian((2, 2), std, np.random.default_rng(0))


@pytest.mark.parametrize("fn", [xavier_normal, xavier_uniform])
@pytest.mark.parametrize("gain", [-1.0, np.inf])
def test_bad_gain(fn, gain):
    with pytest.raises(ValueError, match="gain must be"):
        fn(3, 4, np.random.default_rng(0), gain=gain)


# ---------------------------------------------------------------- robustness (issue #16)


@pytest.mark.parametrize("call, name", [
    (lambda rng: init.gaussian((4,), 1e39, rng, dtype=np.float32), "std=1e+39"),
    (lambda rng: init.gaussian((1000,), 1e308, rng), "std=1e+308"),
    (lambda rng: init.xavier_normal(2, 2, rng, gain=1e39, dtype=np.float32), "gain=1e+39"),
    (lambda rng: init.xavier_uniform(1, 1, rng, gain=1.7e308), "gain=1.7e+308"),
])
def test_a_scale_beyond_the_dtype_is_a_clear_error(call, name):
    with pytest.raises(ValueError, match=rf"{re.escape(name)} is too large for float(32|64): weights drawn with it exceed"):
        call(np.random.default_rng(0))
