"""Property-based fuzz of ``bnlib.checks``: a student's function, however broken, never makes a check
raise, and gets one clear sentence; a correct one, however it is written, passes.

Broken functions of many kinds: each returns something drawn by hypothesis (None, ``...``, numbers,
text, ragged lists, tuples, dicts, arrays of every dtype and of 0 to 4 dimensions, object arrays,
torch tensors that require grad, objects whose ``__array__``/``__len__``/``__iter__`` raise), or
raises anything (``SystemExit``, ``GeneratorExit``, ``RecursionError``, an exception whose ``__str__``
raises, a custom ``BaseException``), or modifies its arguments, or returns the right answer but
wrong by a large amount, or runs past the time limit (lowered here to a fraction of a second).
Correct functions: the reference written by hand, returning lists instead of arrays or tuples,
printing, warning, taking a little time.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import bnlib
from bnlib import checks

import test_checks as right  # hand-written right answers

CORRECT = {
    "check_center": lambda x: x - x.mean(axis=0),
    "check_standardize": lambda x: np.divide(x - x.mean(0), x.std(0), out=np.zeros_like(x), where=x.std(0) > 0),
    "check_min_max_scale": right.min_max_by_hand,
    "check_per_feature_rates": right.descend_per_feature,
    "check_covariance": lambda x: (x - x.mean(0)).T @ (x - x.mean(0)) / len(x),
    "check_zca_whiten": right.zca_by_hand,
    "check_cholesky_whiten": right.cholesky_by_hand,
    "check_sigmoid_grad": lambda x: np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))) ** 2,
    "check_dense_backward": right.dense_backward,
    "check_lecun_normal": lambda fan_in, fan_out, rng: rng.standard_normal((fan_out, fan_in)) / np.sqrt(fan_in),
    "check_batchnorm_forward": right.naive_forward,
    "check_batchnorm_backward": right.naive_backward,
    "check_linear_bn_backward": right.linear_bn_backward,
    "check_inference_backward": right.inference_backward,
    "check_batchnorm_inference": bnlib.batchnorm_inference,
    "check_update_running_stats": bnlib.update_running_stats,
    "check_population_statistics": bnlib.population_statistics,
    "check_fold_batchnorm": bnlib.fold_batchnorm,
    "check_steps_to_reach": right.steps_to_reach,
    "check_bn_output_std": lambda v, eps: np.sqrt(v / (v + eps)),
    "check_quadratic_probe": right.quadratic_probe,
    "check_layernorm_forward": lambda x, gamma, beta, eps: _layernorm_by_hand(x, gamma, beta, eps),
    "check_groupnorm_forward": lambda x, groups, gamma, beta, eps: _groupnorm_by_hand(x, groups, gamma, beta, eps),
}
def _layernorm_by_hand(x, gamma, beta, eps):
    axes = tuple(range(1, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    return gamma * (x - mu) / np.sqrt(var + eps) + beta


def _groupnorm_by_hand(x, groups, gamma, beta, eps):
    n, c = x.shape[:2]
    grouped = x.reshape(n, groups, -1)
    mu = grouped.mean(axis=2, keepdims=True)
    var = ((grouped - mu) ** 2).mean(axis=2, keepdims=True)
    x_hat = ((grouped - mu) / np.sqrt(var + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    return gamma.reshape(shape) * x_hat + beta.reshape(shape)


NAMES = sorted(CORRECT)
TIME_LIMIT = 0.1  # seconds, for the fuzz (the checks' default is 5 s)
MUTATED = []  # set by a broken function that modified an argument


def test_every_check_is_fuzzed():
    assert NAMES == sorted(n for n in checks.__all__ if n.startswith("check_"))


# --- what a broken function returns -------------------------------------------------------------


class Hostile:
    """An object that fails whenever numpy or the check looks at it."""

    def __init__(self, error):
        self.error = error

    def __array__(self, *args, **kwargs):
        raise self.error("no array for you")

    def __len__(self):
        raise self.error("no length")

    def __iter__(self):
        raise self.error("no iteration")

    def __eq__(self, other):
        raise self.error("no comparison")

    __hash__ = object.__hash__

    def __bool__(self):
        raise self.error("no truth")


def torch_tensor(shape):
    torch = pytest.importorskip("torch")
    return torch.ones(shape, dtype=torch.float64, requires_grad=True) * 2


DTYPES = st.one_of(
    hnp.boolean_dtypes(), hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(),
    hnp.complex_number_dtypes(), hnp.unicode_string_dtypes(max_len=3), hnp.datetime64_dtypes(),
)
ARRAYS = hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
SCALARS = st.one_of(st.none(), st.just(Ellipsis), st.integers(), st.floats(), st.complex_numbers(), st.text(max_size=5),
                    st.binary(max_size=5), st.booleans())
RAGGED = st.lists(st.lists(st.floats(allow_nan=False), min_size=0, max_size=3), min_size=2, max_size=4).filter(
    lambda rows: len({len(r) for r in rows}) > 1)
OBJECT_ARRAYS = hnp.array_shapes(min_dims=1, max_dims=2, max_side=3).map(lambda shape: np.empty(shape, dtype=object))
JUNK = st.recursive(
    st.one_of(SCALARS, ARRAYS, RAGGED, OBJECT_ARRAYS,
              hnp.array_shapes(max_dims=3, max_side=3).map(torch_tensor),
              st.sampled_from([TypeError, ValueError, RuntimeError, ZeroDivisionError]).map(Hostile),
              st.builds(object), st.builds(dict), st.builds(set)),
    lambda inner: st.one_of(st.tuples(inner, inner), st.tuples(inner, inner, inner), st.tuples(inner, inner, inner, inner),
                            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=2), inner, max_size=2)),
    max_leaves=6,
)


class StrFails(Exception):
    def __str__(self):
        raise RuntimeError("and so does __str__")


class NotAnError(BaseException):
    pass


RAISED = st.sampled_from([
    SystemExit(1), SystemExit(), GeneratorExit(), StopIteration(), RecursionError("deep"), MemoryError(),
    ZeroDivisionError("division by zero"), AssertionError(), TypeError("x" * 10_000), StrFails(), NotAnError("odd"),
    ValueError("line one\nline two"), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
])


@st.composite
def broken_functions(draw):
    """(a description, a function that is wrong, whether the check must fail)."""
    kind = draw(st.sampled_from(["returns", "raises", "mutates", "far off"]))
    if kind == "returns":
        value = draw(JUNK)
        return kind, (lambda *args: value), False  # junk could, very rarely, be right (an int step)
    if kind == "raises":
        error = draw(RAISED)

        def raiser(*args):
            raise error

        return kind, raiser, True
    if kind == "mutates":
        def mutator(*args, correct=None):
            for a in args:
                if isinstance(a, np.ndarray) and a.size:
                    a.flat[0] += 1.0
                    MUTATED.append(True)
                elif isinstance(a, list) and a:
                    a.pop()
                    MUTATED.append(True)
            return correct(*args) if correct else None

        return kind, mutator, False  # fails when it modified something: see MUTATED
    return kind, "far off", True


def too_slow(*args):
    time.sleep(60)


def stubborn(*args):
    """Catches the time limit's exception and carries on, then returns."""
    deadline = time.perf_counter() + 3 * TIME_LIMIT
    while time.perf_counter() < deadline:
        try:
            time.sleep(0.01)
        except BaseException:  # noqa: BLE001 - the point of the test
            pass
    return None


def spinning(*args):
    while True:
        pass


def far_off(correct):
    def wrong(*args):
        out = correct(*args)
        shift = lambda v: None if v is None else np.asarray(v, dtype=float) * 1.5 + 1.0  # noqa: E731
        return tuple(shift(v) for v in out) if isinstance(out, tuple) else shift(out)

    return wrong


def assert_one_clear_sentence(name, result):
    assert isinstance(result, checks.CheckResult)
    message = result.message
    assert message.startswith(f"{name}: ") and "\n" not in message and "Traceback" not in message, message
    assert message.endswith((".", "?")) and len(message) < 700, message


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(NAMES), broken=broken_functions())
def test_broken_functions_never_make_a_check_raise(name, broken, monkeypatch_time_limit):
    kind, fn, must_fail = broken
    correct = CORRECT[name]
    if fn == "far off":
        fn = far_off(correct)
    elif kind == "mutates":
        fn = (lambda f: lambda *args: f(*args, correct=correct))(fn)
    MUTATED.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = getattr(checks, name)(fn, verbose=False)
    assert_one_clear_sentence(name, result)
    if must_fail or MUTATED:
        assert not result, f"{kind}: {result.message}"
    if MUTATED:
        assert "modified its input arguments" in result.message


@pytest.mark.parametrize("fn", [too_slow, stubborn, spinning], ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", ["check_center", "check_batchnorm_backward", "check_lecun_normal", "check_steps_to_reach"])
def test_a_run_past_the_time_limit_is_stopped_and_reported(name, fn, monkeypatch_time_limit):
    start = time.perf_counter()
    result = getattr(checks, name)(fn, verbose=False)
    assert time.perf_counter() - start < 3 * TIME_LIMIT + 2.0  # stopped (stubborn runs 3 limits)
    assert_one_clear_sentence(name, result)
    assert not result and f"within the time limit of {TIME_LIMIT:g} s" in result.message


def returned_as_lists(fn):
    def as_lists(*args):
        out = fn(*args)
        to_list = lambda v: v.tolist() if isinstance(v, np.ndarray) else v  # noqa: E731
        return [to_list(v) for v in out] if isinstance(out, tuple) else to_list(out)

    return as_lists


def chatty(fn):
    def talking(*args):
        print("working on it", [np.shape(a) for a in args if isinstance(a, np.ndarray)])
        warnings.warn("a harmless warning")
        return fn(*args)

    return talking


def slowish(fn):
    def pausing(*args):
        time.sleep(0.001)
        return fn(*args)

    return pausing


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(NAMES), styles=st.lists(st.sampled_from([returned_as_lists, chatty, slowish]),
                                                    max_size=3, unique=True))
def test_correct_functions_pass_however_they_are_written(name, styles, monkeypatch_time_limit):
    fn = CORRECT[name]
    for style in styles:
        fn = style(fn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = getattr(checks, name)(fn, verbose=False)
    assert result, result.message
    assert_one_clear_sentence(name, result)


@pytest.fixture
def monkeypatch_time_limit(monkeypatch):  # the same lowered limit for every example: no reset needed
    monkeypatch.setattr(checks, "TIME_LIMIT", TIME_LIMIT)
