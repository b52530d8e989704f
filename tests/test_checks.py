"""The exercise self-checks pass right answers and name the first problem of wrong ones."""

import re
import signal
import sys
import threading
import time

import numpy as np
import pytest

import bnlib
from bnlib import checks


def naive_forward(x, gamma, beta, eps):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return gamma.reshape(shape) * (x - mean) / np.sqrt(var + eps) + beta.reshape(shape)


def naive_backward(dy, x, gamma, eps):
    _, cache = bnlib.batchnorm_forward(x, gamma, np.zeros_like(gamma), eps)
    return bnlib.batchnorm_backward_graph(dy, cache)


# --- right answers, written the way a student would (not by calling the reference) ---------------


def min_max_by_hand(x, feature_range=(0.0, 1.0)):
    low, high = feature_range
    data_range = x.max(axis=0) - x.min(axis=0)
    unit = (x - x.min(axis=0)) / np.where(data_range == 0, 1, data_range)
    return low + unit * (high - low)


def descend_per_feature(x, y, lr, n_steps, rate_power=2, keep_start=True):
    rates = lr / x.std(axis=0) ** rate_power
    w = np.zeros(x.shape[1])
    path = [w] if keep_start else []
    for _ in range(n_steps):
        w = w - rates * (x.T @ (x @ w - y) / len(y))
        path.append(w)
    return np.array(path).reshape(-1, x.shape[1])


def zca_by_hand(x, eps=1e-5, ddof=0):
    centred = x - x.mean(axis=0)
    lam, d = np.linalg.eigh(centred.T @ centred / (len(x) - ddof))
    return centred @ (d @ np.diag(1 / np.sqrt(lam + eps)) @ d.T).T


def cholesky_by_hand(x, transpose=False):
    centred = x - x.mean(axis=0)
    lower = np.linalg.cholesky(centred.T @ centred / len(x))
    inverse = np.linalg.inv(lower)
    return centred @ (inverse if transpose else inverse.T)


SLOPES = {"tanh": bnlib.tanh_grad, "sigmoid": bnlib.sigmoid_grad, "relu": bnlib.relu_grad}


def dense_backward(dout, x, weight, bias, activation, use_slope=True):
    z = x @ weight.T + bias
    dz = dout * SLOPES[activation](z) if use_slope else dout
    return dz @ weight, dz.T @ x, dz.sum(axis=0)


def linear_bn_backward(dy, x, weight, bias, gamma, beta, eps):
    x_lin = x @ weight.T + bias
    _, cache = bnlib.batchnorm_forward(x_lin, gamma, beta, eps=eps)
    dx_lin, d_gamma, d_beta = bnlib.batchnorm_backward(dy, cache)
    return dx_lin.T @ x, dx_lin.sum(axis=0), d_gamma, d_beta


def quadratic_probe(a, w, etas):  # chapter 10's solution
    g = a @ w
    points = np.vstack([w, w - etas[:, None] * g])
    losses = 0.5 * np.einsum("ij,jk,ik->i", points, a, points)
    changes = np.linalg.norm(etas[:, None] * (a @ g), axis=1)
    beta = np.max(changes / (etas * np.linalg.norm(g)))
    return float(np.ptp(losses)), float(changes.max()), float(beta)


def steps_to_reach(eval_steps, values, threshold):  # chapter 9's solution
    hits = np.flatnonzero(np.asarray(values) >= threshold)
    return int(eval_steps[hits[0]]) if hits.size else None


def inference_backward(dy, gamma, running_var, eps=1e-5):
    scale = gamma / np.sqrt(running_var + eps)
    return dy * scale.reshape((1, -1) + (1,) * (dy.ndim - 2))


@pytest.mark.parametrize(
    "check, right",
    [
        (checks.check_center, lambda x: x - x.mean(axis=0)),
        (checks.check_standardize, lambda x: np.divide(x - x.mean(0), x.std(0), out=np.zeros_like(x), where=x.std(0) > 0)),
        (checks.check_min_max_scale, bnlib.min_max_scale),
        (checks.check_min_max_scale, min_max_by_hand),
        (checks.check_per_feature_rates, descend_per_feature),
        (checks.check_zca_whiten, zca_by_hand),
        (checks.check_cholesky_whiten, cholesky_by_hand),
        (checks.check_dense_backward, dense_backward),
        (checks.check_lecun_normal, lambda fan_in, fan_out, rng: rng.standard_normal((fan_out, fan_in)) / np.sqrt(fan_in)),
        (checks.check_linear_bn_backward, linear_bn_backward),
        (checks.check_inference_backward, inference_backward),
        (checks.check_quadratic_probe, quadratic_probe),
        (checks.check_steps_to_reach, steps_to_reach),
        (checks.check_bn_output_std, lambda v, eps: np.sqrt(v / (v + eps))),
        (checks.check_covariance, lambda x: (x - x.mean(0)).T @ (x - x.mean(0)) / len(x)),
        (checks.check_zca_whiten, bnlib.zca_whiten),
        (checks.check_batchnorm_forward, naive_forward),
        (checks.check_batchnorm_backward, naive_backward),
        (checks.check_batchnorm_inference, bnlib.batchnorm_inference),
        (checks.check_update_running_stats, bnlib.update_running_stats),
        (checks.check_population_statistics, bnlib.population_statistics),
        (checks.check_fold_batchnorm, bnlib.fold_batchnorm),
        (checks.check_sigmoid_grad, lambda x: np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))) ** 2),
    ],
)
def test_right_answers_pass(check, right, capsys):
    result = check(right)
    assert result and result.passed
    assert "passed all" in capsys.readouterr().out


def test_unbiased_variance_is_caught():
    def wrong(x, gamma, beta, eps):
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, -1) + (1,) * (x.ndim - 2)
        var = x.var(axis=axes, ddof=1, keepdims=True)
        return gamma.reshape(shape) * (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(var + eps) + beta.reshape(shape)

    result = checks.check_batchnorm_forward(wrong, verbose=False)
    assert not result
    assert "case 1 of" in result.message and "y differs" in result.message


def test_missing_eps_is_caught():
    def no_eps(x, gamma, beta, eps):
        return naive_forward(x, gamma, beta, 0.0)

    result = checks.check_batchnorm_forward(no_eps, verbose=False)
    assert not result and "y differs" in result.message


def test_nan_output_is_named():
    def no_eps_on_constant(x, gamma, beta, eps):
        y = naive_forward(x, gamma, beta, eps)
        return np.where(x.std(axis=0) == 0, np.nan, y) if x.ndim == 2 else y

    result = checks.check_batchnorm_forward(no_eps_on_constant, verbose=False)
    assert not result and "constant channel" in result.message and "NaN" in result.message


def test_wrong_shape_is_named():
    result = checks.check_center(lambda x: (x - x.mean(axis=0)).ravel(), verbose=False)
    assert not result and "shape" in result.message and "expected shape" in result.message


def test_in_place_modification_is_reported():
    def in_place(x):
        x -= x.mean(axis=0)
        return x

    result = checks.check_center(in_place, verbose=False)
    assert not result and "modified its input" in result.message


def test_exceptions_are_reported_not_raised():
    def broken(dy, x, gamma, eps):
        raise RuntimeError("not written yet")

    result = checks.check_batchnorm_backward(broken, verbose=False)
    assert not result and "RuntimeError: not written yet" in result.message


def test_wrong_number_of_outputs():
    result = checks.check_batchnorm_backward(lambda dy, x, g, e: dy, verbose=False)
    assert not result and "3 outputs" in result.message


def test_wrong_momentum_convention_is_caught():
    def keras_style(rm, rv, bm, bv, n, momentum):
        return momentum * rm + (1 - momentum) * bm, momentum * rv + (1 - momentum) * bv * n / (n - 1)

    result = checks.check_update_running_stats(keras_style, verbose=False)
    assert not result and "mean differs" in result.message


def test_message_does_not_reveal_expected_values():
    def off_by_one(x):
        return x - x.mean(axis=0) + 1.0

    result = checks.check_center(off_by_one, verbose=False)
    assert not result
    assert "array(" not in result.message and "[" not in result.message.split("index")[0]


def test_every_public_check_is_listed_and_documented():
    public = [n for n in dir(checks) if n.startswith("check_")]
    assert sorted(public) == sorted(n for n in checks.__all__ if n.startswith("check_"))
    for name in public:
        assert getattr(checks, name).__doc__, f"{name} has no docstring"


def test_not_implemented_placeholder_is_reported_as_not_written():
    def placeholder(x, feature_range=(0.0, 1.0)):
        raise NotImplementedError  # your code here

    result = checks.check_min_max_scale(placeholder, verbose=False)
    assert not result and "not written yet" in result.message


def test_messages_name_the_input_shapes():
    result = checks.check_center(lambda x: x, verbose=False)
    assert not result and "inputs: array (10, 3)" in result.message


# --- typical wrong answers, one per new check: each fails, and says where ---------------------------


def wrong_answers():
    def min_max_ignores_range(x, feature_range=(0.0, 1.0)):
        return min_max_by_hand(x)

    def min_max_divides_by_zero(x, feature_range=(0.0, 1.0)):
        low, high = feature_range
        with np.errstate(divide="ignore", invalid="ignore"):
            return low + (x - x.min(0)) / (x.max(0) - x.min(0)) * (high - low)

    def zca_unbiased(x, eps=1e-5):
        return zca_by_hand(x, eps, ddof=1)

    def zca_ignores_eps(x, eps=1e-5):
        return zca_by_hand(x, 0.0)

    def pca_instead_of_zca(x, eps=1e-5):
        centred = x - x.mean(axis=0)
        lam, d = np.linalg.eigh(centred.T @ centred / len(x))
        return centred @ d / np.sqrt(lam + eps)

    def inference_with_batch_statistics(dy, gamma, running_var, eps=1e-5):
        centred = dy - dy.mean(axis=0)  # the training-mode projection does not belong here
        return inference_backward(centred, gamma, running_var, eps)

    def lecun_transposed(fan_in, fan_out, rng):
        return rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)

    def lecun_variance_as_std(fan_in, fan_out, rng):
        return rng.standard_normal((fan_out, fan_in)) / fan_in

    def linear_bn_bias_gradient_from_dy(dy, x, weight, bias, gamma, beta, eps):
        d_weight, _, d_gamma, d_beta = linear_bn_backward(dy, x, weight, bias, gamma, beta, eps)
        return d_weight, dy.sum(axis=0), d_gamma, d_beta

    return [
        (checks.check_min_max_scale, min_max_ignores_range, "range (-1, 1)", "output differs"),
        (checks.check_min_max_scale, min_max_divides_by_zero, "constant column", "NaN"),
        (checks.check_per_feature_rates, lambda *a: descend_per_feature(*a, rate_power=1), "case 1 of 5", "path differs"),
        (checks.check_per_feature_rates, lambda *a: descend_per_feature(*a)[-1], "case 1 of 5", "expected shape (21, 3)"),
        (checks.check_per_feature_rates, lambda *a: descend_per_feature(*a, keep_start=False), "case 1 of 5", "expected shape (21, 3)"),
        (checks.check_zca_whiten, zca_unbiased, "case 1 of 5", "output differs"),
        (checks.check_zca_whiten, zca_ignores_eps, "case 1 of 5", "output differs"),
        (checks.check_zca_whiten, pca_instead_of_zca, "case 1 of 5", "output differs"),
        (checks.check_cholesky_whiten, lambda x: cholesky_by_hand(x, transpose=True), "case 1 of 5", "output differs"),
        (checks.check_dense_backward, lambda *a: dense_backward(*a, use_slope=False), "tanh, batch 8", "dx differs"),
        (checks.check_lecun_normal, lecun_transposed, "3 -> 5", "weight has shape (3, 5), expected shape (5, 3)"),
        (checks.check_lecun_normal, lecun_variance_as_std, "256 -> 256", "weight differs"),
        (checks.check_linear_bn_backward, linear_bn_bias_gradient_from_dy, "case 1 of 5", "d_bias differs"),
        (checks.check_inference_backward, inference_with_batch_statistics, "(6, 3) batch", "dx differs"),
        (checks.check_quadratic_probe, lambda a, w, e: (lambda r: (r[0], r[1], r[2] / np.linalg.norm(a @ w)))(quadratic_probe(a, w, e)),
         "case 1 of 3", "beta_smoothness differs"),
        (checks.check_quadratic_probe, lambda a, w, e: (0.5 * w @ a @ w,) + quadratic_probe(a, w, e)[1:], "case 1 of 3", "loss_range differs"),
        (checks.check_steps_to_reach, lambda s, v, t: int(s[np.argmax(v >= t)]), "never reached", "step differs"),
        (checks.check_steps_to_reach, lambda s, v, t: (lambda h: int(h[0]) if h.size else None)(np.flatnonzero(v > t) * 25),
         "exactly at the threshold", "step differs"),
        (checks.check_bn_output_std, lambda v, eps: np.ones_like(v), "eps=1e-05", "output differs"),
    ]


@pytest.mark.parametrize("check, wrong, where, what", wrong_answers(), ids=lambda v: getattr(v, "__name__", None))
def test_typical_wrong_answers_fail_with_a_useful_message(check, wrong, where, what):
    result = check(wrong, verbose=False)
    assert not result
    assert where in result.message and what in result.message, result.message
    assert "array(" not in result.message  # no expected values


def test_checks_do_not_modify_global_random_state():
    np.random.seed(0)
    before = np.random.random()
    np.random.seed(0)
    checks.check_lecun_normal(lambda i, o, rng: rng.standard_normal((o, i)) / np.sqrt(i), verbose=False)
    checks.check_per_feature_rates(descend_per_feature, verbose=False)
    assert np.random.random() == before


def test_quadratic_probe_reference_agrees_with_bnlib_landscape():
    """The numpy reference of check_quadratic_probe measures what bnlib.landscape measures."""
    torch = pytest.importorskip("torch")
    landscape = pytest.importorskip("bnlib.landscape")
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    a = q @ np.diag(rng.uniform(0.1, 10.0, 4)) @ q.T
    w = rng.normal(size=4)

    class Quadratic(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(w))
            self.register_buffer("a", torch.tensor(a))

        def forward(self, inputs):
            return 0.5 * self.w @ self.a @ self.w

    etas = np.array([0.01, 0.05, 0.2])
    probe = landscape.probe_gradient_direction(Quadratic(), lambda out, target: out, None, None, lr=1.0, multiples=etas)
    ours = checks._quadratic_probe_reference(a, w, etas)
    np.testing.assert_allclose(ours, (probe.loss_range, probe.gradient_predictiveness, probe.beta_smoothness), rtol=1e-10)


def test_steps_to_reach_reference_agrees_with_bnlib_experiments():
    experiments = pytest.importorskip("bnlib.experiments")
    rng = np.random.default_rng(5)
    steps = np.arange(0, 300, 20)
    for values, threshold in [(np.sort(rng.uniform(size=steps.size)), 0.6), (rng.uniform(size=steps.size), 2.0)]:
        history = experiments.History(np.zeros(0), steps, values, values, values, values, np.zeros((steps.size, 1)))
        assert checks._first_step_reaching(steps, values, threshold) == experiments.steps_to_reach(history, threshold)


# --- messages: the tolerance, skeletons, a student's mistakes (issues #10 and #16) -------------------


def test_a_mismatch_states_the_tolerance_and_how_many_times_it_is_exceeded():
    def forgot_eps(x, gamma, beta, eps):
        return naive_forward(x, gamma, beta, 0.0)

    result = checks.check_batchnorm_forward(forgot_eps, verbose=False)
    assert not result
    m = re.search(r"\(\|yours - expected\| <= ([\d.e+-]+) \+ ([\d.e+-]+) \* \|expected\|\); "
                  r"the worst at index \((\d+), (\d+)\) is off by ([\d.e+-]+), ([\d.e+-]+) times the tolerance there",
                  result.message)
    assert m, result.message
    atol, rtol, _, _, off, times = (float(g) for g in m.groups())
    assert (atol, rtol) == (1e-8, 1e-6)
    assert times > 1 and off > atol  # far beyond rounding: the message says so with a number


def test_times_the_tolerance_is_measured_at_the_worst_entry():
    """Entry (0, 0) is off by more, but entry (1, 1) exceeds its (smaller) tolerance by more."""
    expected = np.array([[1e3, 1.0], [1.0, 1e-3]])

    def reference(x):
        return expected.copy()

    def close(x):
        got = expected.copy()
        got[0, 0] += 1e-2  # tolerance 1e-8 + 1e-6 * 1e3 ~ 1e-3: 10 times
        got[1, 1] += 1e-5  # tolerance ~ 1e-8: about 1000 times
        return got

    result = checks.compare(close, reference, [("one case", (np.zeros(1),))], name="t", verbose=False)
    assert "at index (1, 1) is off by 1e-05" in result.message and "2 of 4 entries" in result.message, result.message
    times = float(re.search(r"([\d.e+]+) times the tolerance", result.message).group(1))
    assert times == pytest.approx(1e-5 / (1e-8 + 1e-6 * 1e-3), rel=1e-2)


@pytest.mark.parametrize("skeleton", [lambda x: ..., lambda x: None], ids=["ellipsis", "none"])
def test_a_skeleton_returning_ellipsis_or_none_is_not_written_yet(skeleton):
    result = checks.check_center(skeleton, verbose=False)
    assert not result and result.message.startswith("check_center: not written yet"), result.message


def test_a_tuple_of_placeholders_is_not_written_yet():
    result = checks.check_batchnorm_backward(lambda dy, x, gamma, eps: (..., ..., ...), verbose=False)
    assert result.message.startswith("check_batchnorm_backward: not written yet"), result.message
    partly = checks.check_batchnorm_backward(lambda dy, x, gamma, eps: naive_backward(dy, x, gamma, eps)[:2] + (...,),
                                             verbose=False)
    assert "dbeta is `...`: that part is not written yet" in partly.message, partly.message


def test_none_is_a_right_answer_where_the_exercise_says_so():
    """check_steps_to_reach: None means 'never reached'; it is a mismatch, not a skeleton, on later cases."""
    assert checks.check_steps_to_reach(steps_to_reach, verbose=False)
    result = checks.check_steps_to_reach(
        lambda s, v, t: steps_to_reach(s, v, t) if t != 0.97 else None, verbose=False)
    assert "exactly at the threshold" in result.message and "step differs" in result.message


@pytest.mark.parametrize(
    "wrong, says",
    [
        (lambda x: ((x - x.mean(0)) / x.std(0), x.mean(0)), "returned a tuple of 2 items where one array"),
        (lambda x: [[1.0, 2.0], [3.0]], "ragged list"),
        (lambda x: np.array(["a", "b"]), "holds text"),
        (lambda x: np.empty(x.shape, dtype=object), "array of Python objects"),
        (lambda x: sys.exit(), "raised SystemExit"),
        (lambda x: 1 / 0, "raised ZeroDivisionError: division by zero at `(lambda x: 1 / 0, "),
        (lambda x: x.nonexistent, "raised AttributeError"),
        ("not a function", "give it your function itself"),
    ],
    ids=["tuple", "ragged", "strings", "objects", "sys.exit", "zero-division", "attribute", "not-callable"],
)
def test_a_students_mistake_is_a_failing_result_in_one_sentence(wrong, says):
    result = checks.check_standardize(wrong, verbose=False)
    assert not result and says in result.message, result.message
    assert "\n" not in result.message


def test_a_torch_tensor_that_requires_grad_is_reported():
    torch = pytest.importorskip("torch")
    result = checks.check_center(lambda x: torch.tensor(x, requires_grad=True) - 1, verbose=False)
    assert not result and "torch tensor" in result.message and ".detach().numpy()" in result.message


def test_an_endless_function_is_stopped_at_the_time_limit(monkeypatch):
    monkeypatch.setattr(checks, "TIME_LIMIT", 0.2)

    def endless(x):
        while True:
            try:
                time.sleep(0.01)
            except Exception:  # noqa: BLE001 - a student's catch-all does not swallow the limit
                pass

    start = time.perf_counter()
    result = checks.check_center(endless, verbose=False)
    assert time.perf_counter() - start < 2.0
    assert not result and "did not finish within the time limit of 0.2 s" in result.message
    assert "background" not in result.message  # stopped, not abandoned
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)


def test_outside_the_main_thread_the_limit_abandons_a_thread(monkeypatch):
    """No SIGALRM there: the function runs in a daemon thread, and the message says it keeps running."""
    monkeypatch.setattr(checks, "TIME_LIMIT", 0.2)
    stop = threading.Event()
    results = []
    worker = threading.Thread(target=lambda: results.append(checks.check_center(lambda x: stop.wait(30), verbose=False)))
    worker.start()
    worker.join(10)
    stop.set()
    (result,) = results
    assert not result and "time limit of 0.2 s" in result.message and "keeps running in the background" in result.message
    passed = []
    worker = threading.Thread(target=lambda: passed.append(checks.check_center(lambda x: x - x.mean(0), verbose=False)))
    worker.start()
    worker.join(10)
    assert passed[0], passed[0].message


def test_a_keyboard_interrupt_still_stops_the_check():
    def interrupted(x):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checks.check_center(interrupted, verbose=False)


def test_the_result_displays_nothing_in_ipython_when_printed_already(capsys):
    """What Jupyter shows for a cell's last expression: IPython's display formatter, which calls
    _ipython_display_ and then shows nothing else."""
    formatters = pytest.importorskip("IPython.core.formatters")
    formatter = formatters.DisplayFormatter()
    printed = checks.check_center(lambda x: x - x.mean(0))
    assert capsys.readouterr().out == "check_center: passed all 5 cases.\n"
    assert formatter.format(printed) == ({}, {})
    assert capsys.readouterr().out == ""  # no second copy
    quiet = checks.check_center(lambda x: x, verbose=False)
    assert capsys.readouterr().out == ""
    assert formatter.format(quiet) == ({}, {})
    out = capsys.readouterr().out
    assert " ".join(out.split()) == quiet.message  # shown once, when it was not printed
    assert max(len(line) for line in out.splitlines()) <= checks.PRINT_WIDTH  # wrapped; message is one line
    assert repr(quiet) == "<CheckResult check_center: failed>"
