"""Shared machinery of the property-based fuzz suites (issue #16): run a call, classify its outcome.

Every fuzzed call ends in one of six outcomes; only the first two are acceptable:

* ``RIGHT``: it returned, the result has the right shape and dtype, is finite where the
  contract says so, and agrees with an independent reference (a ``check`` function);
* ``CLEAR_ERROR``: it raised a ``ValueError``/``TypeError`` (or another allowed type) from a
  ``raise`` statement inside ``bnlib``, whose message names one of the call's arguments;
* ``UNCLEAR_ERROR``: any other exception (numpy's or the standard library's message escaping,
  an error raised by bnlib that names no argument, an ``IndexError``...);
* ``WRONG``: it returned a silent NaN/inf, a wrong dtype or shape, or a wrong value;
* ``MUTATED``: an argument was modified (the core is pure);
* ``TOO_SLOW``: it took longer than the time limit.

A test draws arguments with hypothesis, calls :func:`run` and then :func:`assert_acceptable`.
"""

from __future__ import annotations

import atexit
import collections
import enum
import linecache
import os
import math
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import bnlib

BNLIB_DIR = Path(bnlib.__file__).resolve().parent

# Generous: the fuzzed arrays are tiny, and the machine that runs the tests may be loaded.
TIME_LIMIT = 5.0


class Outcome(enum.Enum):
    RIGHT = "finite and right"
    CLEAR_ERROR = "clear error"
    UNCLEAR_ERROR = "unclear error"
    WRONG = "silent NaN/inf, wrong dtype or wrong value"
    MUTATED = "mutated argument"
    TOO_SLOW = "too slow"


ACCEPTABLE = {Outcome.RIGHT, Outcome.CLEAR_ERROR}


@dataclass
class Result:
    outcome: Outcome
    detail: str = ""
    value: object = None
    error: BaseException | None = None
    seconds: float = 0.0
    warnings: list = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# fingerprints: did the call modify an argument?
# --------------------------------------------------------------------------------------------


def fingerprint(obj, _depth=0):
    """A comparable summary of ``obj``'s content (arrays, tensors, containers), for mutation checks."""
    if _depth > 6:
        return ("deep",)
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "O":
            return ("object", obj.shape, repr(obj.tolist()))
        return ("nd", obj.dtype.str, obj.shape, obj.strides, obj.flags.writeable, obj.tobytes())
    if type(obj).__module__.startswith("torch") and hasattr(obj, "detach"):
        t = obj.detach().cpu()
        return ("tensor", str(t.dtype), tuple(t.shape), obj.requires_grad, repr(t.tolist()))
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, tuple(fingerprint(v, _depth + 1) for v in obj))
    if isinstance(obj, dict):
        return ("dict", tuple((k, fingerprint(v, _depth + 1)) for k, v in obj.items()))
    if isinstance(obj, float) and math.isnan(obj):
        return ("nan",)
    if isinstance(obj, (int, float, complex, str, bytes, bool, type(None), np.generic)):
        return ("scalar", repr(obj))
    if hasattr(obj, "_asdict"):  # NamedTuple such as BatchNormCache
        return ("namedtuple", fingerprint(tuple(obj), _depth + 1))
    return ("object", id(obj))


# --------------------------------------------------------------------------------------------
# errors: clear or not?
# --------------------------------------------------------------------------------------------


def _raising_frame(err):
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb


def names_one_of(message, names):
    """Whether ``message`` contains one of ``names`` as a whole word (``x`` but not ``max``)."""
    for name in names:
        if not name:
            continue
        if re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message):
            return True
    return False


def is_clear_error(err, names, types=(ValueError, TypeError)):
    """``err`` is of an allowed type, raised by a ``raise`` statement in bnlib, naming an argument.

    A C-level numpy error raised inside a bnlib line (``np.asarray(x)`` on a ragged list) has its
    last frame in bnlib too, so the raising line itself must be a ``raise`` statement.
    """
    if not isinstance(err, types):
        return False, f"{type(err).__name__} is not one of {[t.__name__ for t in types]}"
    tb = _raising_frame(err)
    filename = Path(tb.tb_frame.f_code.co_filename).resolve()
    if BNLIB_DIR not in filename.parents:
        return False, f"raised in {filename.name}:{tb.tb_lineno}, outside bnlib"
    line = linecache.getline(str(filename), tb.tb_lineno).strip()
    if not line.startswith("raise"):
        return False, f"raised by {filename.name}:{tb.tb_lineno} `{line}`, not by a raise statement"
    if not names_one_of(str(err), names):
        return False, f"the message names none of {sorted(names)}"
    return True, ""


# --------------------------------------------------------------------------------------------
# running and classifying one call
# --------------------------------------------------------------------------------------------


def run(func, args=(), kwargs=None, *, check=None, names=None, error_types=(ValueError, TypeError),
        time_limit=TIME_LIMIT):
    """Call ``func(*args, **kwargs)`` and classify what happened.

    ``check(value)`` returns ``None`` when the value is right, or a sentence saying what is
    wrong. ``names`` are the words an error message may name (the function's parameter
    names by default).
    """
    kwargs = kwargs or {}
    if names is None:
        import inspect

        names = set(inspect.signature(func).parameters)
    before = fingerprint((args, kwargs))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        try:
            value, error = func(*args, **kwargs), None
        except Exception as err:  # noqa: BLE001 - classifying every failure is the point
            value, error = None, err
        seconds = time.perf_counter() - start
    leaked = [f"{w.category.__name__}: {w.message} ({Path(w.filename).name}:{w.lineno})" for w in caught]
    if fingerprint((args, kwargs)) != before:
        return Result(Outcome.MUTATED, "an argument was modified", value, error, seconds, leaked)
    if seconds > time_limit:
        return Result(Outcome.TOO_SLOW, f"{seconds:.2f} s > {time_limit} s", value, error, seconds, leaked)
    if error is not None:
        clear, why = is_clear_error(error, names, error_types)
        outcome = Outcome.CLEAR_ERROR if clear else Outcome.UNCLEAR_ERROR
        return Result(outcome, f"{type(error).__name__}: {error}" + (f" [{why}]" if why else ""),
                      value, error, seconds, leaked)
    problem = check(value) if check is not None else None
    if problem:
        return Result(Outcome.WRONG, problem, value, None, seconds, leaked)
    return Result(Outcome.RIGHT, "", value, None, seconds, leaked)


def describe(obj, limit=300):
    """A short description of an argument for failure messages."""
    if isinstance(obj, np.ndarray):
        flags = []
        if not obj.flags.writeable:
            flags.append("read-only")
        if obj.flags.f_contiguous and not obj.flags.c_contiguous:
            flags.append("Fortran")
        if not (obj.flags.c_contiguous or obj.flags.f_contiguous):
            flags.append(f"strides={obj.strides}")
        text = f"ndarray{obj.shape} {obj.dtype} {' '.join(flags)} {np.array2string(obj.ravel()[:8], threshold=8)}"
    else:
        text = f"{type(obj).__name__} {obj!r}"
    return text if len(text) <= limit else text[:limit] + "..."


# With BNLIB_FUZZ_REPORT=1, how often each function ended in each outcome is printed at exit.
TALLY = collections.Counter()
MESSAGES = collections.defaultdict(collections.Counter)  # clear errors' messages, per function
WARNINGS = collections.defaultdict(collections.Counter)  # warnings the calls let through


def _print_tally():
    width = max((len(what) for what, _ in TALLY), default=0)
    for what in sorted({w for w, _ in TALLY}):
        counts = ", ".join(f"{o.value}: {TALLY[what, o]}" for o in Outcome if TALLY[what, o])
        print(f"{what:<{width}}  {counts}")
        for message, n in WARNINGS[what].most_common(3):
            print(f"{'':<{width}}    {n:4d} x warning {message}")
        if os.environ.get("BNLIB_FUZZ_REPORT") == "messages":
            for message, n in MESSAGES[what].most_common(4):
                print(f"{'':<{width}}    {n:4d} x {message}")


if os.environ.get("BNLIB_FUZZ_REPORT"):
    atexit.register(_print_tally)


def assert_acceptable(result, what, *args, **kwargs):
    """Fail with the outcome, its detail and the arguments unless the outcome is acceptable."""
    TALLY[what, result.outcome] += 1
    for w in result.warnings:
        WARNINGS[what][w] += 1
    if result.outcome is Outcome.CLEAR_ERROR:
        MESSAGES[what][re.sub(r"\d|\(.*", "", result.detail)[:90]] += 1
    if result.outcome in ACCEPTABLE:
        return
    shown = ", ".join([describe(a) for a in args] + [f"{k}={describe(v)}" for k, v in kwargs.items()])
    raise AssertionError(f"{what}({shown}) -> {result.outcome.value}: {result.detail}")


# --------------------------------------------------------------------------------------------
# strategies: every dtype, 0-d to 4-d and zero-size shapes, odd layouts, extreme values
# --------------------------------------------------------------------------------------------

FLOAT_DTYPES = [np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.longdouble)]
INT_DTYPES = [np.dtype(t) for t in (np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint64)]
OTHER_DTYPES = [np.dtype(t) for t in (np.complex64, np.complex128, "U3", "S3", "M8[s]", "m8[s]", object)]
ALL_DTYPES = [np.dtype(bool), *INT_DTYPES, *FLOAT_DTYPES, *OTHER_DTYPES]
# The dtypes a caller normally passes, drawn more often so the working path is exercised.
COMMON_DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
TAME_DTYPES = [np.dtype(bool), *INT_DTYPES, *FLOAT_DTYPES, *COMMON_DTYPES * 4]

REGIMES = ["ordinary", "offset", "huge", "tiny", "special"]
TAME_REGIMES = ["ordinary"] * 3 + ["offset", "huge", "tiny"]


# Half the examples are "tame": every argument is valid, so the working path and its results
# are checked; in the other half each argument may be anything. One draw per example, shared.
WILD = st.shared(st.booleans(), key="bnlib-fuzz-wild")


def mostly(valid, invalid, weight=None):
    """A value of ``valid`` in a tame example; of ``valid`` or ``invalid`` in a wild one."""
    valid, invalid = st.sampled_from(valid), st.sampled_from(invalid)
    return WILD.flatmap(lambda wild: st.one_of(valid, invalid) if wild else valid)


def expected_float_dtype(dtype):
    """bnlib's rule: float32/float64 kept, float16 -> float32, ints/bools/wider floats -> float64."""
    dtype = np.dtype(dtype).newbyteorder("=")
    if dtype == np.float16 or dtype == np.float32:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def float_elements(dtype, regime):
    fi = np.finfo(dtype)
    width = {2: 16, 4: 32}.get(dtype.itemsize, 64)

    def exact(values):  # hypothesis insists that elements be exactly representable
        with np.errstate(over="ignore"):
            return [float(dtype.type(v)) for v in values]

    top = float(min(fi.max, np.finfo(np.float64).max))
    if regime == "ordinary":
        return st.floats(-100, 100, width=width)
    if regime == "offset":  # a large common offset with a small spread
        return st.floats(-1, 1, width=width).map(lambda v: dtype.type(1e4 + v))
    if regime == "huge":
        low = exact([top / 1e4])[0]
        return st.floats(low, top, width=width).flatmap(lambda v: st.sampled_from([v, -v]))
    tiny = float(fi.smallest_subnormal)
    if regime == "tiny":
        return st.sampled_from(exact([0.0, tiny, -tiny, 2 * tiny, float(fi.tiny), -float(fi.tiny), 1e3 * tiny]))
    specials = exact([0.0, -0.0, 1.0, -1.0, tiny, float(fi.tiny), top, -top, math.sqrt(top) * 2,
                      float(fi.eps), np.nan, np.inf, -np.inf])
    return st.one_of(st.floats(-10, 10, width=width), st.sampled_from(specials))


def elements_for(dtype, regime):
    if dtype.kind == "f":
        return float_elements(dtype, regime)
    if dtype == object:
        return st.one_of(st.floats(-10, 10), st.integers(-5, 5), st.sampled_from([None, "a", (1, 2)]))
    return None  # hypothesis' own strategy for the dtype


@st.composite
def arrays(draw, ndims=None, dims=None, dtypes=None, regimes=None, min_side=0, max_side=4, tame_ndims=None):
    """An ndarray: dtype from ``dtypes`` (all by default), ``ndims`` dimensions (0-4 by default),
    or exactly the shape ``dims`` when given; C order (other layouts come from :func:`layouts`).
    """
    wild = draw(WILD)
    dtype = draw(st.sampled_from(dtypes or (ALL_DTYPES if wild else TAME_DTYPES)))
    if dims is not None:
        shape = tuple(dims)
    else:
        ndim = draw(st.sampled_from(ndims if wild else (tame_ndims or ndims[:1])) if ndims else st.integers(0, 4))
        # sides of 2 or more (where the working path is) three times in four
        side = st.one_of(*[st.integers(max(min_side, 2), max(max_side, 2))] * 3, st.integers(min_side, max_side))
        shape = tuple(draw(side) for _ in range(ndim))
    regime = draw(st.sampled_from(regimes or (REGIMES if wild else TAME_REGIMES)))
    return draw(hnp.arrays(dtype, shape, elements=elements_for(dtype, regime)))


LAYOUTS = ["C"] * 6 + ["F", "strided", "reversed", "readonly", "broadcast", "list", "swapped", "matrix", "tuple"]


@st.composite
def layouts(draw, array):
    """The same data as another kind of argument: Fortran order, strided or reversed views,
    read-only, broadcast (zero strides), a nested list, non-native byte order, np.matrix."""
    layout = draw(st.sampled_from(LAYOUTS))
    a = array
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided" and a.ndim >= 1:
        wide = np.repeat(a, 2, axis=-1)
        return wide[..., ::2]
    if layout == "reversed" and a.ndim >= 1:
        return a[::-1]
    if layout == "readonly":
        a = a.copy()
        a.setflags(write=False)
        return a
    if layout == "broadcast" and a.ndim >= 1 and a.shape[0] > 0:
        return np.broadcast_to(a[:1], a.shape)
    if layout == "list" and a.dtype.kind in "biuf":
        return a.tolist()
    if layout == "tuple" and a.ndim >= 1 and a.dtype.kind in "biuf":
        return tuple(a.tolist())
    if layout == "swapped" and a.dtype.kind in "iuf" and a.dtype.itemsize > 1:
        return a.astype(a.dtype.newbyteorder())
    if layout == "matrix" and a.ndim == 2 and a.dtype.kind in "biuf":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            return np.asmatrix(a)
    return a


NOT_ARRAYS = [None, "abc", b"xyz", 3.5, 7, True, {"a": 1}, object(), [[1.0, 2.0], [3.0]],
              [[1.0], [2.0, 3.0], []], [np.ones(2), np.ones(3)], (np.ones((2, 2)), {"cache": 1})]


@st.composite
def arguments(draw, ndims=None, dims=None, dtypes=None, regimes=None, min_side=0, max_side=4, tame_ndims=None):
    """An argument meant as an array: in a tame example, an array of real numbers of the first
    of ``ndims`` dimensions (or of shape ``dims``) in any layout; in a wild one, anything
    (other dtypes and ranks, NaN, ragged lists, tuples of arrays, None, strings, scalars)."""
    if draw(WILD) and draw(st.booleans()):
        return draw(st.one_of(st.sampled_from(NOT_ARRAYS), arrays()))
    a = draw(arrays(ndims=ndims, dims=dims, dtypes=dtypes, regimes=regimes, min_side=min_side, max_side=max_side,
                    tame_ndims=tame_ndims))
    return draw(layouts(a))


EPS_VALUES = mostly([1e-5, 1e-5, 1e-5, 0.0, 1e-3, 1.0, np.float32(1e-5), np.float64(0.1), 3],
                    [1e-300, 1e300, -1e-5, np.nan, np.inf, None, "1e-5", True, np.array(1e-5), [1e-5]])


def shape_of(x, default=None):
    """``np.shape(x)``, or ``default`` when ``x`` is not an array-like (a ragged list)."""
    try:
        return np.shape(x)
    except Exception:  # noqa: BLE001
        return default


def as_float64(x):
    """The argument as float64, the way bnlib reads it (for references); None if it cannot be."""
    try:
        a = np.asarray(x)
    except Exception:  # noqa: BLE001
        return None
    if a.dtype.kind not in "biuf":
        return None
    with np.errstate(over="ignore"):
        return a.astype(np.float64)
