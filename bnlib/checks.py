"""Self-checks for the book's exercises: run a reader's function against ``bnlib``.

Each ``check_*`` function calls the reader's implementation and ``bnlib``'s on
several random inputs, including edge shapes, and prints either a pass or the
first problem: which case, which output, which shape, how far off and how that
compares with the tolerance. It never prints the expected values themselves, so
it checks without giving the solution away. Each returns a :class:`CheckResult`,
which is truthy on a pass (``assert check_center(my_center)`` in a graded cell).

A check never raises because of what the reader's function did. An exception
(``SystemExit`` included), a wrong type, a tuple where one array is expected, a
ragged list, an array of objects or strings, a torch tensor, a modified argument
or a run longer than :data:`TIME_LIMIT` seconds each becomes a failing result with
one sentence saying so. A skeleton (``raise NotImplementedError``, or returning
``...`` or ``None``) is reported as "not written yet". Only ``KeyboardInterrupt``
(the reader stopping the kernel) passes through.

Time limit
----------
In the main thread on a system with ``SIGALRM`` (Linux and macOS: Jupyter, Colab,
Binder, where a notebook's cells run in the kernel's main thread) the reader's
function is stopped by ``signal.setitimer``: an exception is raised inside it at
the limit, so an endless loop or a ``time.sleep`` ends and the kernel is free again
(a single long call into compiled code, such as one huge matrix product, ends only
when that call returns). The exception derives from ``BaseException``, so an
``except Exception`` in the reader's code does not swallow it. Elsewhere (Windows,
a thread other than the main one, or while another ``ITIMER_REAL`` timer is
running, such as a test runner's) the function runs in a daemon thread that the
check stops waiting for at the limit; Python cannot stop a thread, so it then
keeps running in the background until the kernel restarts, and the message says so.

In a notebook the message is printed once: the returned :class:`CheckResult`
displays nothing when it was printed already, so ``check_center(my_center)`` as the
last line of a cell does not show it a second time (with or without ``;``).

Examples
--------
>>> import numpy as np
>>> from bnlib import checks
>>> def my_center(x):
...     return x - x.mean(axis=0)
>>> result = checks.check_center(my_center)
check_center: passed all 5 cases.
>>> bool(result)
True
"""

from __future__ import annotations

import functools
import linecache
import os
import signal
import sys
import textwrap
import threading
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import activations, batchnorm, gradcheck, init, linreg, mlp, scaling, whitening

__all__ = [
    "CheckResult",
    "TIME_LIMIT",
    "compare",
    # chapter 1
    "check_center",
    "check_standardize",
    "check_min_max_scale",
    "check_per_feature_rates",
    # chapter 2
    "check_covariance",
    "check_zca_whiten",
    "check_cholesky_whiten",
    # chapter 3
    "check_sigmoid_grad",
    "check_dense_backward",
    "check_lecun_normal",
    # chapters 4-8
    "check_batchnorm_forward",
    "check_batchnorm_backward",
    "check_linear_bn_backward",
    "check_inference_backward",
    "check_batchnorm_inference",
    "check_update_running_stats",
    "check_population_statistics",
    "check_fold_batchnorm",
    # chapter 9
    "check_steps_to_reach",
    "check_bn_output_std",
    # chapter 10
    "check_quadratic_probe",
]

#: Seconds one call of the reader's function may take before the check stops it
#: and reports a failure. Every exercise's answer runs in milliseconds.
TIME_LIMIT = 5.0
PRINT_WIDTH = 78  # characters per printed line


@dataclass
class CheckResult:
    """Outcome of a self-check: ``passed``, how many cases ran, and the first problem.

    Truthy on a pass. ``printed`` records whether the check printed ``message``
    already; in IPython (Jupyter, Colab) the result then displays nothing, so a
    check called as a cell's last expression does not show its message twice.
    """

    name: str
    passed: bool
    n_cases: int
    message: str
    printed: bool = field(default=False, compare=False)

    def __bool__(self):
        return self.passed

    def __str__(self):
        return self.message

    def __repr__(self):
        return f"<CheckResult {self.name}: {'passed' if self.passed else 'failed'}>"

    def _ipython_display_(self):
        # IPython calls this instead of showing a repr, for a cell's last expression too;
        # displaying nothing means no "Out[n]" at all.
        if not self.printed:
            _print(self.message)


class _Mismatch(Exception):
    """A problem with what the reader's function returned; its text completes the message."""


class _NotWritten(Exception):
    """The reader's function is still the exercise's skeleton."""


class _TimeLimitReached(BaseException):
    """Raised inside the reader's function at the time limit (not an ``Exception``: not swallowed
    by an ``except Exception`` in the reader's code)."""

    def __init__(self, still_running=False):
        super().__init__()
        self.still_running = still_running


def _copy(value):
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v) for v in value)
    return value


def _same(a, b):
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    return True


# --- running the reader's function -----------------------------------------------------------------


def _alarm_available():
    return (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    )


def _call_with_alarm(fn, args, seconds):
    fired = []

    def at_the_limit(signum, frame):
        fired.append(True)
        raise _TimeLimitReached()

    previous = signal.signal(signal.SIGALRM, at_the_limit)
    try:
        # Repeats every 0.2 s past the limit, in case the reader's code catches the first one.
        signal.setitimer(signal.ITIMER_REAL, seconds, 0.2)
        try:
            value = fn(*args)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0.0)
    finally:
        # None: the previous handler was not installed from Python; the default is what it was.
        signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)
    if fired:  # the reader's code caught the exception and went on
        raise _TimeLimitReached()
    return value


def _call_in_thread(fn, args, seconds):
    outcome = {}

    def run():
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="bnlib-self-check", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise _TimeLimitReached(still_running=True)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _call_with_time_limit(fn, args, seconds):
    if _alarm_available():
        return _call_with_alarm(fn, args, seconds)
    return _call_in_thread(fn, args, seconds)


_LIBRARY_DIRS = tuple(
    os.path.normcase(os.path.abspath(d)) + os.sep
    for d in {os.path.dirname(__file__), sys.prefix, sys.base_prefix, sys.exec_prefix}
)


def _where_it_raised(exc):
    """`` at `line` in f`` for the last frame of the traceback in the reader's own code, or ''."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        path = os.path.normcase(os.path.abspath(filename)) if not filename.startswith("<") else filename
        if not path.startswith(_LIBRARY_DIRS) and not filename.startswith("<frozen"):
            found = (filename, tb.tb_lineno, tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    if found is None:
        return ""
    line = linecache.getline(found[0], found[1]).strip()
    return f" at `{line}` in {found[2]}" if line else f" in {found[2]}"


def _first_line(value, limit=200):
    try:
        text = str(value).strip()
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails
        return ""
    text = text.splitlines()[0] if text else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe_exception(exc):
    try:
        return _describe_exception_unguarded(exc)
    except Exception:  # noqa: BLE001 - a strange exception object: say what little is certain
        return f"your function raised {type(exc).__name__}"


def _describe_exception_unguarded(exc):
    if isinstance(exc, SystemExit):
        return (f"your function raised SystemExit{_where_it_raised(exc)}: sys.exit() or exit() ends a "
                f"program, while a function hands back its result with return")
    message = _first_line(exc)
    text = f"your function raised {type(exc).__name__}" + (f": {message}" if message else "")
    return text + _where_it_raised(exc)


# --- judging what it returned ----------------------------------------------------------------------


def _is_placeholder(value):
    return value is None or value is Ellipsis


def _placeholder_name(value):
    return "None" if value is None else "`...`"


def _split_outputs(value, output_names):
    """The reader's return value as one entry per expected output, or a _Mismatch."""
    n_outputs = len(output_names)
    if n_outputs == 1:
        if isinstance(value, tuple):
            return (_single_from_tuple(value, output_names[0]),)
        return (value,)
    names = ", ".join(output_names)
    if not isinstance(value, (tuple, list)):
        raise _Mismatch(f"expected {n_outputs} outputs ({names}) returned as a tuple, got {_type_name(value)}")
    if len(value) != n_outputs:
        raise _Mismatch(f"expected {n_outputs} outputs ({names}) returned as a tuple, got a "
                        f"{type(value).__name__} of {len(value)}")
    return tuple(value)


def _single_from_tuple(value, name):
    raise _Mismatch(
        f"your function returned a tuple of {len(value)} items where one array ({name}) is expected: "
        f"return that array alone"
    )


def _type_name(value):
    kind = type(value)
    module = kind.__module__
    return kind.__name__ if module in ("builtins", "numpy") else f"{module}.{kind.__name__}"


def _as_numbers(value, name):
    """``value`` as an ndarray of bool, int or float, or a _Mismatch naming what it is instead."""
    if _is_placeholder(value):
        raise _Mismatch(f"{name} is {_placeholder_name(value)}: that part is not written yet")
    if type(value).__module__.split(".")[0] == "torch":
        raise _Mismatch(f"{name} is a torch tensor; the exercise works with numpy arrays "
                        f"(compute with numpy, or return tensor.detach().numpy())")
    if isinstance(value, (str, bytes, dict, set)):
        raise _Mismatch(f"{name} is a {type(value).__name__}, not an array of numbers")
    if isinstance(value, tuple) and not all(np.isscalar(v) for v in value):
        raise _Mismatch(f"{name} is a tuple of {len(value)} items, not one array")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            array = np.asarray(value)
    except ValueError as exc:
        if "inhomogeneous" in str(exc) or "sequence" in str(exc):
            raise _Mismatch(f"{name} is a ragged {type(value).__name__} (its rows differ in length), "
                            f"not a rectangular array") from None
        raise _Mismatch(f"{name} (a {_type_name(value)}) cannot be made into a numpy array: "
                        f"{_first_line(exc)}") from None
    if array.dtype.kind == "O":
        raise _Mismatch(f"{name} is an array of Python objects (dtype object), not of numbers: "
                        f"are some of its entries arrays, lists or None?")
    if array.dtype.kind in "US":
        raise _Mismatch(f"{name} holds text (dtype {array.dtype}), not numbers")
    if array.dtype.kind not in "biuf":
        raise _Mismatch(f"{name} has dtype {array.dtype}; real numbers are expected")
    return array


def _describe_difference(name, got, expected, rtol, atol):
    got = _as_numbers(got, name)
    expected = np.asarray(expected)
    if got.shape != expected.shape:
        return f"{name} has shape {got.shape}, expected shape {expected.shape}"
    got64 = got.astype(np.float64)
    if not np.isfinite(got64).all():
        return f"{name} contains NaN or infinity"
    expected = expected.astype(np.float64)
    diff = np.abs(got64 - expected)
    tolerance = atol + rtol * np.abs(expected)  # numpy.isclose's rule, with the reference as b
    outside = diff > tolerance
    if not outside.any():
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        excess = np.where(outside, diff / tolerance, 0.0)
    where = np.unravel_index(np.argmax(excess), excess.shape)
    times = float(excess[where])
    times_text = "infinitely many" if not np.isfinite(times) else f"{times:.3g}"
    at = f" at index {tuple(int(i) for i in where)}" if got.ndim else ""
    text = (
        f"{name} differs: {np.count_nonzero(outside)} of {outside.size} entries are outside the tolerance "
        f"(|yours - expected| <= {atol:g} + {rtol:g} * |expected|); the worst{at} is off by "
        f"{float(diff[where]):.3g}, {times_text} times the tolerance there"
    )
    if got.dtype in (np.float32, np.float16):
        text += f" (your {name} is {got.dtype}: compute in float64)"
    elif times < 1e3:  # small but real: float64 rounding stays many orders of magnitude inside
        text += "; float64 rounding alone stays far inside the tolerance, so look for a small term left out or added"
    return text


def _describe_args(args):
    """The shapes of a case's arguments, never their values (that would give answers away)."""
    parts = []
    for a in args:
        if isinstance(a, np.ndarray):
            parts.append(f"array {a.shape}")
        elif isinstance(a, (list, tuple)) and a and all(isinstance(v, np.ndarray) for v in a):
            parts.append(f"{len(a)} arrays {a[0].shape}")
        elif a is None or isinstance(a, (int, float, str, tuple)):
            parts.append(repr(a))
        else:
            parts.append(type(a).__name__)
    return ", ".join(parts)


def _run_case(user_fn, args, reference_raw, expected, output_names, rtol, atol, convert, first_case,
              none_is_an_answer):
    """Run the reader's function on one case: None if it passes, else the problem (a sentence)."""
    user_args = _copy(args)
    try:
        got = _call_with_time_limit(user_fn, user_args, TIME_LIMIT)
    except KeyboardInterrupt:
        raise  # the reader stopped the kernel
    except NotImplementedError:
        raise _NotWritten("your function raised NotImplementedError") from None
    except _TimeLimitReached as exc:
        text = (f"your function did not finish within the time limit of {TIME_LIMIT:g} s "
                f"(an endless loop? every case takes well under a second)")
        if exc.still_running:
            text += "; it keeps running in the background until you restart the kernel"
        return text
    except BaseException as exc:  # noqa: BLE001 - whatever the reader's code raised, report it
        return _describe_exception(exc)
    try:
        if _is_placeholder(got) and not _is_placeholder(reference_raw):
            if first_case:
                raise _NotWritten(f"your function returned {_placeholder_name(got)}")
            if not (got is None and none_is_an_answer):
                return f"your function returned {_placeholder_name(got)} (is a return missing on some path?)"
        if (isinstance(got, tuple) and len(got) == len(output_names) > 1
                and all(_is_placeholder(v) for v in got) and first_case):
            raise _NotWritten(f"your function returned {_placeholder_name(got[0])} for every output")
        if not _same(user_args, args):
            return "your function modified its input arguments in place"
        outputs = _split_outputs(convert(got) if convert else got, output_names)
        for out_name, g, e in zip(output_names, outputs, expected):
            problem = _describe_difference(out_name, g, e, rtol, atol)
            if problem:
                return problem
    except (_Mismatch, _NotWritten) as exc:
        if isinstance(exc, _NotWritten):
            raise
        return str(exc)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - e.g. an object whose __len__ or __array__ raises
        return f"what your function returned could not be compared: {type(exc).__name__}: {_first_line(exc)}"
    return None


def compare(user_fn, reference_fn, cases, *, name, output_names=("output",), rtol=1e-6, atol=1e-8,
            verbose=True, convert=None, none_is_an_answer=False):
    """Run ``user_fn`` and ``reference_fn`` on every case and report the first problem.

    Parameters
    ----------
    user_fn, reference_fn : callable
        The reader's function and the reference; called with the same arguments.
    cases : list of (str, tuple)
        A description of each case and its positional arguments.
    name : str
        Name of the check, printed first.
    output_names : tuple of str
        Names of the outputs; its length is the number of outputs expected.
    rtol, atol : float
        Tolerances of :func:`numpy.isclose`: an entry passes when
        ``|yours - expected| <= atol + rtol * |expected|``.
    verbose : bool, default True
        Print the outcome.
    convert : callable, optional
        Applied to both functions' return values before they are compared (after
        the reader's has been checked for a placeholder ``None``/``...``).
    none_is_an_answer : bool, default False
        ``None`` is a legitimate answer in some cases (then it is "not written
        yet" only on the first case, whose answer is not ``None``).

    Returns
    -------
    CheckResult

    Notes
    -----
    The reader's function gets copies of the arguments; if it modifies them, that
    is reported too, since every function in ``bnlib`` is pure. A mismatch names
    the case, the shapes of its inputs, the output, where it is off, by how much
    and how many times the tolerance that is, never the expected values.
    ``NotImplementedError`` (an exercise's placeholder), or ``...`` or ``None``
    returned on the first case, is reported as "not written yet". Nothing the
    reader's function does makes this function raise, except ``KeyboardInterrupt``;
    each call is stopped after :data:`TIME_LIMIT` seconds.
    """
    message = f"{name}: passed all {len(cases)} cases."
    passed = True
    for index, (description, args) in enumerate(cases, start=1):
        reference_raw = reference_fn(*_copy(args))
        expected = _split_outputs(convert(reference_raw) if convert else reference_raw, output_names)
        where = f"case {index} of {len(cases)} ({description}; inputs: {_describe_args(args)})"
        try:
            problem = _run_case(user_fn, args, reference_raw, expected, output_names, rtol, atol, convert,
                                first_case=index == 1, none_is_an_answer=none_is_an_answer)
        except _NotWritten as exc:
            message, passed = f"{name}: not written yet ({exc}).", False
            break
        if problem:
            end = "" if problem.endswith((".", "?", "!")) else "."
            message, passed = f"{name}: {where}: {problem}{end}", False
            break
    return _result(name, passed, len(cases), message, verbose)


def _print(message):
    # Wrapped to fit a notebook's or the website's code output without scrolling sideways; the
    # result's ``message`` stays one line.
    print(textwrap.fill(message, width=PRINT_WIDTH, break_long_words=False, break_on_hyphens=False))


def _result(name, passed, n_cases, message, verbose):
    if verbose:
        _print(message)
    return CheckResult(name, passed, n_cases, message, printed=verbose)


def _self_check(check):
    """A public check: refuses anything but a function, with a sentence instead of an error."""

    @functools.wraps(check)
    def run(fn, verbose=True):
        if not callable(fn):
            name = check.__name__
            return _result(name, False, 0, f"{name}: give it your function itself, as in {name}(my_function); "
                           f"it got a value of type {_type_name(fn)}.", verbose)
        return check(fn, verbose=verbose)

    return run


def _rng(seed):
    return np.random.default_rng(seed)


def _matrix_cases(seed=0):
    rng = _rng(seed)
    return [
        ("10 samples, 3 features", (rng.normal(2.0, 3.0, size=(10, 3)),)),
        ("2 samples, 1 feature", (rng.normal(size=(2, 1)),)),
        ("features on very different scales", (rng.normal(size=(50, 4)) * np.array([1e-3, 1.0, 1e3, 1e5]),)),
        ("a common offset of 1e4", (rng.normal(size=(20, 2)) + 1e4,)),
        ("one sample", (rng.normal(size=(1, 5)),)),
    ]


@_self_check
def check_center(fn, verbose=True):
    """Check a reader's ``center(x)`` against :func:`bnlib.center`."""
    return compare(fn, scaling.center, _matrix_cases(), name="check_center", verbose=verbose)


@_self_check
def check_standardize(fn, verbose=True):
    """Check a reader's ``standardize(x)`` (z-score per column, biased std) against :func:`bnlib.standardize`."""
    cases = [c for c in _matrix_cases(1) if c[0] != "one sample"]
    return compare(fn, scaling.standardize, cases, name="check_standardize", rtol=1e-5, atol=1e-7, verbose=verbose)


@_self_check
def check_min_max_scale(fn, verbose=True):
    """Check a reader's ``min_max_scale(x, feature_range)`` against :func:`bnlib.min_max_scale`.

    ``feature_range`` is a pair ``(low, high)``; every case passes it, including
    the default ``(0.0, 1.0)``. A constant column must map to ``low``.
    """
    rng = _rng(2)
    cases = [
        ("10 samples, 3 features, range (0, 1)", (rng.normal(2.0, 3.0, size=(10, 3)), (0.0, 1.0))),
        ("2 samples, 1 feature, range (-1, 1)", (rng.normal(size=(2, 1)), (-1.0, 1.0))),
        ("features on very different scales, range (0, 1)",
         (rng.normal(size=(50, 4)) * np.array([1e-3, 1.0, 1e3, 1e5]), (0.0, 1.0))),
        ("a negative range (-3, -1)", (rng.uniform(0, 10, size=(8, 2)), (-3.0, -1.0))),
        ("a common offset of 1e4, range (5, 10)", (rng.normal(size=(20, 2)) + 1e4, (5.0, 10.0))),
    ]
    constant = rng.normal(size=(6, 3))
    constant[:, 1] = 4.2
    cases.append(("a constant column (it maps to low), range (-1, 1)", (constant, (-1.0, 1.0))))
    return compare(fn, scaling.min_max_scale, cases, name="check_min_max_scale", verbose=verbose)


@_self_check
def check_per_feature_rates(fn, verbose=True):
    """Check ``fn(x, y, lr, n_steps)``: gradient descent with one learning rate per weight.

    The reader's function runs gradient descent on the least-squares loss from
    ``w = 0`` on centred, unscaled features ``x``, updating weight ``j`` with the
    rate ``lr / sigma_j**2`` (``sigma_j`` the biased standard deviation of column
    ``j``), and returns the whole path, shape ``(n_steps + 1, n_features)``. The
    reference runs plain gradient descent on the standardised features and maps
    the path back to the unscaled weights.
    """

    def reference(x, y, lr, n_steps):
        sigma = x.std(axis=0)
        path = linreg.gradient_descent(scaling.standardize(x), y, lr, n_steps)
        return path.weights / sigma

    rng = _rng(11)
    cases = []
    for description, n, scales, lr, n_steps in [
        ("50 samples, 3 features on scales 0.1 to 10, 20 steps", 50, [0.1, 1.0, 10.0], 0.3, 20),
        ("scales 1e-3 and 1e3, 10 steps", 40, [1e-3, 1e3], 0.5, 10),
        ("one feature, 5 steps", 30, [3.0], 0.9, 5),
        ("a single step", 20, [2.0, 0.5], 0.1, 1),
        ("no step at all: the path is the start only", 10, [1.0, 4.0], 0.1, 0),
    ]:
        x = rng.normal(size=(n, len(scales))) * np.asarray(scales)
        x = x - x.mean(axis=0)  # centred, as in the chapter
        y = x @ rng.normal(size=len(scales)) + rng.normal(size=n)
        cases.append((description, (x, y, lr, n_steps)))
    return compare(fn, reference, cases, name="check_per_feature_rates", output_names=("path",),
                   rtol=1e-6, atol=1e-9, verbose=verbose)


@_self_check
def check_covariance(fn, verbose=True):
    """Check a reader's ``covariance(x)`` (biased, divide by N) against :func:`bnlib.covariance`."""
    cases = [c for c in _matrix_cases(3) if c[0] != "one sample"]
    return compare(fn, whitening.covariance, cases, name="check_covariance", rtol=1e-6, atol=1e-6, verbose=verbose)


def _whitening_inputs(seed):
    """Correlated clouds of several shapes, well enough conditioned for exact comparison."""
    rng = _rng(seed)
    mixing = np.array([[2.0, 0.0, 0.0], [1.5, 0.5, 0.0], [0.3, -0.2, 1.0]])
    return [
        ("200 correlated samples, 3 features", rng.normal(size=(200, 3)) @ mixing.T),
        ("50 samples, 2 features on different scales", rng.normal(size=(50, 2)) * [1.0, 5.0]),
        ("one feature", rng.normal(2.0, 3.0, size=(30, 1))),
        ("12 samples, 4 features", rng.normal(size=(12, 4)) @ rng.normal(size=(4, 4)) + 3.0),
        ("a common offset of 1e3", rng.normal(size=(40, 2)) @ mixing[:2, :2].T + 1e3),
    ]


@_self_check
def check_zca_whiten(fn, verbose=True):
    """Check a reader's ``zca_whiten(x, eps)`` against :func:`bnlib.zca_whiten`.

    ``eps`` is passed as the second positional argument (``1e-5`` in most
    cases, ``0.1`` in one, where forgetting it shows).
    """
    cases = [(d, (x, 1e-5)) for d, x in _whitening_inputs(4)]
    cases[1] = (cases[1][0] + ", eps=0.1", (cases[1][1][0], 0.1))
    return compare(fn, whitening.zca_whiten, cases, name="check_zca_whiten", rtol=1e-5, atol=1e-6, verbose=verbose)


@_self_check
def check_cholesky_whiten(fn, verbose=True):
    """Check a reader's ``cholesky_whiten(x)`` (``eps = 0``): ``(x - mean) @ L^{-T}``, ``Sigma = L L^T``.

    The reference is :func:`bnlib.whitening_matrix` with ``method="cholesky"``
    and ``eps=0``, applied to ``x``.
    """

    def reference(x):
        w, mean = whitening.whitening_matrix(x, "cholesky", eps=0.0)
        return (x - mean) @ w.T

    cases = [(d, (x,)) for d, x in _whitening_inputs(12)]
    return compare(fn, reference, cases, name="check_cholesky_whiten", rtol=1e-6, atol=1e-7, verbose=verbose)


def _bn_cases(seed):
    rng = _rng(seed)
    cases = []
    for description, shape in [
        ("(8, 3) batch", (8, 3)),
        ("the smallest batch, (2, 4)", (2, 4)),
        ("(4, 3, 5, 5) images", (4, 3, 5, 5)),
        ("(1, 2, 3) sequence of length 3, batch of one", (1, 2, 3)),
    ]:
        c = shape[1]
        x = rng.normal(1.0, 2.0, size=shape)
        cases.append((description, x, rng.normal(size=c) + 1.0, rng.normal(size=c)))
    x = rng.normal(size=(6, 3))
    x[:, 1] = 4.2  # a constant channel: variance 0, eps keeps it finite
    cases.append(("a constant channel", x, np.ones(3), np.zeros(3)))
    return cases


@_self_check
def check_batchnorm_forward(fn, verbose=True):
    """Check a reader's ``batchnorm_forward(x, gamma, beta, eps)`` output ``y``.

    The reader's function may return ``y`` alone or ``(y, cache)``; only ``y``
    is compared.
    """

    def reader(x, gamma, beta, eps):
        out = fn(x, gamma, beta, eps)
        return out[0] if isinstance(out, tuple) else out

    def reference(x, gamma, beta, eps):
        return batchnorm.batchnorm_forward(x, gamma, beta, eps)[0]

    cases = [(d, (x, g, b, 1e-5)) for d, x, g, b in _bn_cases(5)]
    return compare(reader, reference, cases, name="check_batchnorm_forward", output_names=("y",), verbose=verbose)


@_self_check
def check_batchnorm_backward(fn, verbose=True):
    """Check a reader's backward pass ``fn(dy, x, gamma, eps) -> (dx, dgamma, dbeta)``.

    The reader's function receives the upstream gradient, the forward input,
    ``gamma`` and ``eps`` (and recomputes what it needs from them), so it does
    not depend on how the reader organises a cache.
    """

    def reference(dy, x, gamma, eps):
        _, cache = batchnorm.batchnorm_forward(x, gamma, np.zeros_like(gamma), eps)
        return batchnorm.batchnorm_backward(dy, cache)

    rng = _rng(6)
    cases = [(d, (rng.normal(size=x.shape), x, g, 1e-5)) for d, x, g, _ in _bn_cases(6)]
    return compare(
        fn, reference, cases, name="check_batchnorm_backward", output_names=("dx", "dgamma", "dbeta"),
        rtol=1e-5, atol=1e-7, verbose=verbose,
    )


def _linear_bn_backward_reference(dy, x, weight, bias, gamma, beta, eps):
    x_lin = x @ weight.T + bias
    _, cache = batchnorm.batchnorm_forward(x_lin, gamma, beta, eps=eps)
    dx_lin, dgamma, dbeta = batchnorm.batchnorm_backward(dy, cache)
    return dx_lin.T @ x, dx_lin.sum(axis=0), dgamma, dbeta


@_self_check
def check_linear_bn_backward(fn, verbose=True):
    """Check ``fn(dy, x, weight, bias, gamma, beta, eps) -> (d_weight, d_bias, d_gamma, d_beta)``.

    The layer is ``y = BN(x W^T + b)`` in training mode, ``weight`` of shape
    ``(out, in)``; the reference chains :func:`bnlib.batchnorm_backward` with the
    linear layer's gradients.
    """
    rng = _rng(13)
    cases = []
    for description, n, d_in, d_out, bias_scale in [
        ("16 samples, 5 -> 3", 16, 5, 3, 1.0),
        ("the smallest batch, 2 samples", 2, 4, 2, 1.0),
        ("a large bias", 32, 6, 4, 1e3),
        ("one output feature", 10, 3, 1, 1.0),
        ("one input feature", 8, 1, 3, 1.0),
    ]:
        args = (
            rng.normal(size=(n, d_out)), rng.normal(1.0, 2.0, size=(n, d_in)), rng.normal(size=(d_out, d_in)),
            bias_scale * rng.normal(size=d_out), rng.normal(1.0, 0.5, size=d_out), rng.normal(size=d_out), 1e-5,
        )
        cases.append((description, args))
    return compare(
        fn, _linear_bn_backward_reference, cases, name="check_linear_bn_backward",
        output_names=("d_weight", "d_bias", "d_gamma", "d_beta"), verbose=verbose,
    )


@_self_check
def check_inference_backward(fn, verbose=True):
    """Check ``fn(dy, gamma, running_var, eps) -> dx`` for BN at inference.

    The reference is a central difference of :func:`bnlib.batchnorm_inference`
    (fixed statistics), so it does not depend on any backward formula.
    """
    rng = _rng(14)
    cases = []
    for description, shape in [
        ("(6, 3) batch", (6, 3)),
        ("a single example", (1, 4)),
        ("(2, 3, 4, 4) images", (2, 3, 4, 4)),
        ("(3, 2, 5) sequences", (3, 2, 5)),
    ]:
        c = shape[1]
        cases.append((description, (rng.normal(size=shape), rng.normal(size=c), rng.uniform(0.1, 3.0, size=c), 1e-5)))

    def reference(dy, gamma, running_var, eps):
        # inference-mode BN is affine in x, so its gradient is the same at every x, mean and beta
        zeros = np.zeros_like(gamma)

        def forward(v):
            return batchnorm.batchnorm_inference(v, gamma, zeros, zeros, running_var, eps)

        return gradcheck.numerical_gradient(forward, np.zeros_like(dy), dy)

    return compare(fn, reference, cases, name="check_inference_backward", output_names=("dx",),
                   rtol=1e-6, atol=1e-8, verbose=verbose)


@_self_check
def check_batchnorm_inference(fn, verbose=True):
    """Check a reader's ``batchnorm_inference(x, gamma, beta, running_mean, running_var, eps)``."""
    rng = _rng(7)
    cases = []
    for description, shape in [("(5, 3) batch", (5, 3)), ("a single sample", (1, 4)), ("(2, 3, 4, 4) images", (2, 3, 4, 4))]:
        c = shape[1]
        args = (rng.normal(size=shape), rng.normal(size=c), rng.normal(size=c), rng.normal(size=c), rng.uniform(0.1, 3, size=c), 1e-5)
        cases.append((description, args))
    return compare(fn, batchnorm.batchnorm_inference, cases, name="check_batchnorm_inference", output_names=("y",), verbose=verbose)


@_self_check
def check_update_running_stats(fn, verbose=True):
    """Check ``update_running_stats(running_mean, running_var, batch_mean, batch_var, n, momentum)``.

    Conventions: ``momentum`` is the weight of the new batch; ``batch_var`` is
    biased over ``n`` values, the stored estimate unbiased.
    """
    rng = _rng(8)
    cases = []
    for description, n, momentum in [("n=32, momentum 0.1", 32, 0.1), ("n=2, momentum 0.5", 2, 0.5), ("momentum 1", 10, 1.0)]:
        args = (rng.normal(size=3), rng.uniform(0.5, 2, size=3), rng.normal(size=3), rng.uniform(0.5, 2, size=3), n, momentum)
        cases.append((description, args))
    return compare(fn, batchnorm.update_running_stats, cases, name="check_update_running_stats", output_names=("mean", "var"), verbose=verbose)


@_self_check
def check_population_statistics(fn, verbose=True):
    """Check a reader's ``population_statistics(batches) -> (mean, var)`` (Algorithm 2)."""
    rng = _rng(9)
    cases = [
        ("20 batches of 8", ([rng.normal(3.0, 2.0, size=(8, 3)) for _ in range(20)],)),
        ("batches of 2, where m/(m-1) = 2", ([rng.normal(size=(2, 2)) for _ in range(50)],)),
    ]
    return compare(fn, batchnorm.population_statistics, cases, name="check_population_statistics", output_names=("mean", "var"), verbose=verbose)


@_self_check
def check_fold_batchnorm(fn, verbose=True):
    """Check ``fold_batchnorm(weight, bias, gamma, beta, running_mean, running_var, eps)``."""
    rng = _rng(10)
    cases = []
    for description, wshape, with_bias in [("Linear (4, 3) with bias", (4, 3), True), ("Linear without bias", (2, 5), False), ("Conv (3, 2, 3, 3)", (3, 2, 3, 3), True)]:
        out = wshape[0]
        bias = rng.normal(size=out) if with_bias else None
        args = (rng.normal(size=wshape), bias, rng.normal(size=out), rng.normal(size=out), rng.normal(size=out), rng.uniform(0.2, 2, size=out), 1e-5)
        cases.append((description, args))
    return compare(fn, batchnorm.fold_batchnorm, cases, name="check_fold_batchnorm", output_names=("weight", "bias"), verbose=verbose)


@_self_check
def check_sigmoid_grad(fn, verbose=True):
    """Check a reader's ``sigmoid_grad(x)`` (the derivative of the sigmoid)."""
    cases = [
        ("values around 0", (np.linspace(-3, 3, 13),)),
        ("large magnitudes", (np.array([-50.0, -10.0, 10.0, 50.0]),)),
    ]
    return compare(fn, activations.sigmoid_grad, cases, name="check_sigmoid_grad", atol=1e-10, verbose=verbose)


@_self_check
def check_dense_backward(fn, verbose=True):
    """Check ``fn(dout, x, weight, bias, activation) -> (dx, dweight, dbias)``.

    One dense layer ``h = f(x W^T + b)`` with ``weight`` of shape ``(out, in)``
    and ``activation`` one of ``"tanh"``, ``"sigmoid"``, ``"relu"``; the
    reference is :func:`bnlib.mlp.mlp_backward` on a one-layer network.
    """

    def reference(dout, x, weight, bias, activation):
        _, cache = mlp.mlp_forward(x, [mlp.Layer(weight, bias)], output_activation=activation)
        grads = mlp.mlp_backward(dout, cache)
        return grads.x, grads.params[0].weight, grads.params[0].bias

    rng = _rng(15)
    cases = []
    for activation, n, fan_in, fan_out in [("tanh", 8, 5, 3), ("sigmoid", 1, 4, 2), ("relu", 6, 3, 7), ("tanh", 4, 1, 1)]:
        args = (rng.normal(size=(n, fan_out)), rng.normal(size=(n, fan_in)), rng.normal(size=(fan_out, fan_in)),
                rng.normal(size=fan_out), activation)
        cases.append((f"{activation}, batch {n}, {fan_in} -> {fan_out}", args))
    return compare(fn, reference, cases, name="check_dense_backward", output_names=("dx", "dweight", "dbias"),
                   rtol=1e-7, atol=1e-10, verbose=verbose)


@_self_check
def check_lecun_normal(fn, verbose=True):
    """Check ``fn(fan_in, fan_out, rng)``: weights of shape ``(fan_out, fan_in)`` from ``N(0, 1/fan_in)``.

    The reader draws with ``rng.standard_normal``; the reference is
    :func:`bnlib.init.gaussian` with the same seed, so the two must agree draw
    for draw.
    """

    def reader(fan_in, fan_out, seed):
        return fn(fan_in, fan_out, np.random.default_rng(seed))

    def reference(fan_in, fan_out, seed):
        return init.gaussian((fan_out, fan_in), 1 / np.sqrt(fan_in), np.random.default_rng(seed))

    cases = [("256 -> 256", (256, 256, 1)), ("3 -> 5", (3, 5, 2)), ("1 -> 1", (1, 1, 3)), ("784 -> 10", (784, 10, 4))]
    return compare(reader, reference, cases, name="check_lecun_normal", output_names=("weight",), verbose=verbose)


def _first_step_reaching(eval_steps, values, threshold):
    # as bnlib.experiments.steps_to_reach on a History (numpy here: no torch in the checks)
    hits = np.flatnonzero(np.asarray(values) >= threshold)
    return int(eval_steps[hits[0]]) if hits.size else None


@_self_check
def check_steps_to_reach(fn, verbose=True):
    """Check ``fn(eval_steps, values, threshold)``: the first step whose value is >= threshold.

    ``values`` is a metric measured at ``eval_steps`` (two 1-D arrays of the same
    length); the answer is an ``int``, or ``None`` when the threshold is never
    reached (compared as -1). Same rule as ``bnlib.experiments.steps_to_reach``.
    """

    def none_as_minus_one(step):
        return -1 if step is None else step

    rng = _rng(17)
    steps = np.arange(0, 500, 25)
    rising = np.sort(rng.uniform(0, 1, steps.size))
    cases = [
        ("rising curve", (steps, rising, 0.5)),
        ("never reached (expects None)", (steps, rising, 1.5)),
        ("reached at the first evaluation", (steps, rising, -1.0)),
        ("noisy curve: the first time counts", (steps, rng.uniform(0, 1, steps.size), 0.9)),
        ("a value exactly at the threshold", (steps, np.r_[rising[:-1], 0.97], 0.97)),
        ("uneven evaluation steps", (np.array([0, 10, 30, 70, 150]), np.array([0.1, 0.4, 0.3, 0.8, 0.9]), 0.35)),
    ]
    return compare(fn, _first_step_reaching, cases, name="check_steps_to_reach", output_names=("step",),
                   convert=none_as_minus_one, none_is_an_answer=True, verbose=verbose)


@_self_check
def check_bn_output_std(fn, verbose=True):
    """Check ``fn(v, eps)``: the standard deviation of BN's output for features of batch variance ``v``.

    With ``gamma = 1`` and ``beta = 0``, in training mode. The reference normalises
    batches whose variance is exactly ``v`` with :func:`bnlib.batchnorm_forward`
    and measures the output's standard deviation.
    """
    rng = _rng(18)
    variances = np.logspace(-9, 2, 12)

    def reference(v, eps):
        z = rng.normal(size=(1000, v.size))
        x = (z - z.mean(axis=0)) / z.std(axis=0) * np.sqrt(v)  # batch variance exactly v
        return batchnorm.batchnorm_forward(x, np.ones(v.size), np.zeros(v.size), eps=eps)[0].std(axis=0)

    cases = [(f"eps={eps:g}", (variances, eps)) for eps in (1e-5, 1e-3, 0.0)]
    cases.append(("a single variance", (np.array([2e-6]), 1e-5)))
    return compare(fn, reference, cases, name="check_bn_output_std", rtol=1e-6, atol=1e-8, verbose=verbose)


def _quadratic_probe_reference(a, w, etas):
    # Santurkar et al.'s measurements along g = grad L(w) for L(w) = w^T a w / 2, as
    # bnlib.landscape.probe_gradient_direction defines them (numpy here: no torch in the checks).
    g = a @ w
    g_norm = np.linalg.norm(g)
    points = [w] + [w - eta * g for eta in etas]
    losses = np.array([0.5 * p @ a @ p for p in points])
    distances = np.array([np.linalg.norm(g - a @ p) for p in points[1:]])
    beta = float(np.max(distances / (etas * g_norm))) if g_norm > 0 else 0.0
    return float(np.ptp(losses)), float(np.max(distances)), beta


@_self_check
def check_quadratic_probe(fn, verbose=True):
    """Check ``fn(a, w, etas) -> (loss_range, gradient_predictiveness, beta_smoothness)``.

    On the quadratic ``L(w) = w^T a w / 2`` (``a`` symmetric positive definite) and
    along ``g = a w``: the range of the loss over ``w`` and ``w - eta g`` for every
    ``eta`` in ``etas``, the largest change of the gradient ``max ||grad L(w) -
    grad L(w - eta g)||``, and the effective beta-smoothness, the largest
    ``||grad L(w) - grad L(w - eta g)|| / (eta ||g||)``; as
    ``bnlib.landscape.probe_gradient_direction`` measures them on a network.
    """
    rng = _rng(16)
    cases = []
    for description, size in [("2 weights", 2), ("6 weights", 6), ("1 weight", 1)]:
        q, _ = np.linalg.qr(rng.normal(size=(size, size)))
        a = q @ np.diag(rng.uniform(0.1, 10.0, size)) @ q.T
        cases.append((description, (a, rng.normal(size=size), np.array([0.01, 0.05, 0.2]))))
    return compare(fn, _quadratic_probe_reference, cases, name="check_quadratic_probe",
                   output_names=("loss_range", "gradient_predictiveness", "beta_smoothness"), verbose=verbose)


# --------------------------------------------------------------------------- chapter 11: the normalization family
# Self-contained: uses only ``compare`` and ``_rng`` from above (and ``_self_check`` where it exists).

from . import normalization as _normalization  # noqa: E402

_as_self_check = globals().get("_self_check", lambda check: check)


def _family_cases(seed, params):
    """Inputs for the family's forward passes; ``params(shape)`` gives gamma/beta's shape."""
    rng = _rng(seed)
    cases = []
    for description, shape in [
        ("(8, 6) batch of feature vectors", (8, 6)),
        ("a batch of one, (1, 6, 5)", (1, 6, 5)),
        ("(3, 6, 4, 4) images", (3, 6, 4, 4)),
        ("a common offset of 1e4, (4, 6, 3)", (4, 6, 3)),
    ]:
        x = rng.normal(1.0, 2.0, size=shape) + (1e4 if "offset" in description else 0.0)
        cases.append((description, x, rng.normal(size=params(shape)) + 1.0, rng.normal(size=params(shape))))
    return cases


def _first_output(fn):
    def reader(*args):
        out = fn(*args)
        return out[0] if isinstance(out, tuple) else out
    return reader


@_as_self_check
def check_layernorm_forward(fn, verbose=True):
    """Check a reader's ``layernorm_forward(x, gamma, beta, eps)`` output ``y``.

    Each sample is standardised over all its values (every axis but axis 0); ``gamma``
    and ``beta`` have the shape of one sample. The reader's function may return ``y``
    alone or ``(y, cache)``; only ``y`` is compared with :func:`bnlib.layernorm_forward`.
    """
    cases = [(d, (x, g, b, 1e-5)) for d, x, g, b in _family_cases(21, lambda shape: shape[1:])]
    return compare(_first_output(fn), lambda *a: _normalization.layernorm_forward(*a)[0], cases,
                   name="check_layernorm_forward", output_names=("y",), verbose=verbose)


@_as_self_check
def check_groupnorm_forward(fn, verbose=True):
    """Check a reader's ``groupnorm_forward(x, num_groups, gamma, beta, eps)`` output ``y``.

    Compared with :func:`bnlib.groupnorm_forward` for 1, 2, 3 and 6 groups of the 6
    channels (1 group: layer normalization with per-channel gamma; 6: instance norm).
    """
    cases = []
    for (d, x, g, b), groups in zip(_family_cases(22, lambda shape: shape[1]), (2, 3, 6, 1)):
        cases.append((f"{d}, {groups} group(s)", (x, groups, g, b, 1e-5)))
    return compare(_first_output(fn), lambda *a: _normalization.groupnorm_forward(*a)[0], cases,
                   name="check_groupnorm_forward", output_names=("y",), verbose=verbose)


__all__ += ["check_layernorm_forward", "check_groupnorm_forward"]
