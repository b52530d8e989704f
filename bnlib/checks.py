"""Self-checks for the book's exercises: run a reader's function against ``bnlib``.

Each ``check_*`` function calls the reader's implementation and ``bnlib``'s on
several random inputs, including edge shapes, and prints either a pass or the
first mismatch: which case, which output, which shape, how far off. It never
prints the expected values themselves, so it checks without giving the
solution away. Each returns a :class:`CheckResult`, which is truthy on a pass.

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

from dataclasses import dataclass

import numpy as np

from . import activations, batchnorm, scaling, whitening

__all__ = [
    "CheckResult",
    "compare",
    "check_center",
    "check_standardize",
    "check_min_max_scale",
    "check_covariance",
    "check_zca_whiten",
    "check_batchnorm_forward",
    "check_batchnorm_backward",
    "check_batchnorm_inference",
    "check_update_running_stats",
    "check_population_statistics",
    "check_fold_batchnorm",
    "check_sigmoid_grad",
]


@dataclass
class CheckResult:
    """Outcome of a self-check: ``passed``, how many cases ran, and the first problem."""

    name: str
    passed: bool
    n_cases: int
    message: str

    def __bool__(self):
        return self.passed

    def __str__(self):
        return self.message


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
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    return True


def _as_tuple(value, n_outputs):
    if n_outputs == 1:
        return (value,)
    if not isinstance(value, (tuple, list)) or len(value) != n_outputs:
        got = f"a {type(value).__name__} of length {len(value)}" if isinstance(value, (tuple, list)) else type(value).__name__
        raise _Mismatch(f"expected {n_outputs} outputs returned as a tuple, got {got}")
    return tuple(value)


class _Mismatch(Exception):
    pass


def _describe_difference(name, got, expected, rtol, atol):
    got = np.asarray(got)
    expected = np.asarray(expected)
    if got.shape != expected.shape:
        return f"{name} has shape {got.shape}, expected shape {expected.shape}"
    if not np.isfinite(got).all():
        return f"{name} contains NaN or infinity"
    close = np.isclose(got, expected, rtol=rtol, atol=atol)
    if close.all():
        return None
    diff = np.abs(got - expected)
    where = np.unravel_index(np.argmax(np.where(close, -np.inf, diff)), diff.shape)
    scale = float(np.max(np.abs(expected))) or 1.0
    return (
        f"{name} differs: {np.count_nonzero(~close)} of {close.size} entries are off, the largest "
        f"by {float(diff[where]):.3g} at index {tuple(int(i) for i in where)} "
        f"(relative to the output's largest entry: {float(diff[where]) / scale:.2g})"
    )


def compare(user_fn, reference_fn, cases, *, name, output_names=("output",), rtol=1e-6, atol=1e-8, verbose=True):
    """Run ``user_fn`` and ``reference_fn`` on every case and report the first mismatch.

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
        Tolerances of :func:`numpy.isclose`.
    verbose : bool, default True
        Print the outcome.

    Returns
    -------
    CheckResult

    Notes
    -----
    The reader's function gets copies of the arguments; if it modifies them, that
    is reported too, since every function in ``bnlib`` is pure.
    """
    n_outputs = len(output_names)
    message = f"{name}: passed all {len(cases)} cases."
    passed = True
    for index, (description, args) in enumerate(cases, start=1):
        expected = _as_tuple(reference_fn(*_copy(args)), n_outputs)
        user_args = _copy(args)
        where = f"case {index} of {len(cases)} ({description})"
        try:
            got = user_fn(*user_args)
            got = _as_tuple(got, n_outputs)
        except _Mismatch as exc:
            message, passed = f"{name}: {where}: {exc}.", False
            break
        except Exception as exc:  # the reader's code raised: say so, do not hide it
            message, passed = f"{name}: {where}: your function raised {type(exc).__name__}: {exc}", False
            break
        if not _same(user_args, args):
            message, passed = f"{name}: {where}: your function modified its input arguments in place.", False
            break
        for out_name, g, e in zip(output_names, got, expected):
            problem = _describe_difference(out_name, g, e, rtol, atol)
            if problem:
                message, passed = f"{name}: {where}: {problem}.", False
                break
        if not passed:
            break
    if verbose:
        print(message)
    return CheckResult(name, passed, len(cases), message)


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


def check_center(fn, verbose=True):
    """Check a reader's ``center(x)`` against :func:`bnlib.center`."""
    return compare(fn, scaling.center, _matrix_cases(), name="check_center", verbose=verbose)


def check_standardize(fn, verbose=True):
    """Check a reader's ``standardize(x)`` (z-score per column, biased std) against :func:`bnlib.standardize`."""
    cases = [c for c in _matrix_cases(1) if c[0] != "one sample"]
    return compare(fn, scaling.standardize, cases, name="check_standardize", rtol=1e-5, atol=1e-7, verbose=verbose)


def check_min_max_scale(fn, verbose=True):
    """Check a reader's ``min_max_scale(x)`` (to [0, 1] per column) against :func:`bnlib.min_max_scale`."""
    cases = [c for c in _matrix_cases(2) if c[0] != "one sample"]
    return compare(fn, scaling.min_max_scale, cases, name="check_min_max_scale", verbose=verbose)


def check_covariance(fn, verbose=True):
    """Check a reader's ``covariance(x)`` (biased, divide by N) against :func:`bnlib.covariance`."""
    cases = [c for c in _matrix_cases(3) if c[0] != "one sample"]
    return compare(fn, whitening.covariance, cases, name="check_covariance", rtol=1e-6, atol=1e-6, verbose=verbose)


def check_zca_whiten(fn, verbose=True):
    """Check a reader's ``zca_whiten(x, eps)`` against :func:`bnlib.zca_whiten`."""
    rng = _rng(4)
    mixing = np.array([[2.0, 0.0, 0.0], [1.5, 0.5, 0.0], [0.3, -0.2, 1.0]])
    cases = [
        ("200 correlated samples, 3 features", (rng.normal(size=(200, 3)) @ mixing.T, 1e-5)),
        ("2 features, eps=0.1", (rng.normal(size=(50, 2)) * [1.0, 5.0], 0.1)),
    ]
    return compare(fn, whitening.zca_whiten, cases, name="check_zca_whiten", rtol=1e-5, atol=1e-6, verbose=verbose)


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


def check_batchnorm_inference(fn, verbose=True):
    """Check a reader's ``batchnorm_inference(x, gamma, beta, running_mean, running_var, eps)``."""
    rng = _rng(7)
    cases = []
    for description, shape in [("(5, 3) batch", (5, 3)), ("a single sample", (1, 4)), ("(2, 3, 4, 4) images", (2, 3, 4, 4))]:
        c = shape[1]
        args = (rng.normal(size=shape), rng.normal(size=c), rng.normal(size=c), rng.normal(size=c), rng.uniform(0.1, 3, size=c), 1e-5)
        cases.append((description, args))
    return compare(fn, batchnorm.batchnorm_inference, cases, name="check_batchnorm_inference", output_names=("y",), verbose=verbose)


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


def check_population_statistics(fn, verbose=True):
    """Check a reader's ``population_statistics(batches) -> (mean, var)`` (Algorithm 2)."""
    rng = _rng(9)
    cases = [
        ("20 batches of 8", ([rng.normal(3.0, 2.0, size=(8, 3)) for _ in range(20)],)),
        ("batches of 2, where m/(m-1) = 2", ([rng.normal(size=(2, 2)) for _ in range(50)],)),
    ]
    return compare(fn, batchnorm.population_statistics, cases, name="check_population_statistics", output_names=("mean", "var"), verbose=verbose)


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


def check_sigmoid_grad(fn, verbose=True):
    """Check a reader's ``sigmoid_grad(x)`` (the derivative of the sigmoid)."""
    cases = [
        ("values around 0", (np.linspace(-3, 3, 13),)),
        ("large magnitudes", (np.array([-50.0, -10.0, 10.0, 50.0]),)),
    ]
    return compare(fn, activations.sigmoid_grad, cases, name="check_sigmoid_grad", atol=1e-10, verbose=verbose)
