"""The exercise self-checks pass right answers and name the first problem of wrong ones."""

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
