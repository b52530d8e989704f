"""Running statistics (torch's conventions) and the paper's population statistics (Algorithm 2)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from bnlib.batchnorm import batchnorm_forward, population_statistics, update_running_stats

torch = pytest.importorskip("torch")

MODULES = {
    "BatchNorm1d-NC": (torch.nn.BatchNorm1d, (8, 4)),
    "BatchNorm1d-NCL": (torch.nn.BatchNorm1d, (3, 4, 5)),
    "BatchNorm2d": (torch.nn.BatchNorm2d, (2, 4, 3, 3)),
}


def run_bnlib(batches, momentum):
    """Track running statistics the way a torch module does, with bnlib's functions."""
    c = batches[0].shape[1]
    running_mean, running_var = np.zeros(c), np.ones(c)  # torch's initial values
    for step, x in enumerate(batches, start=1):
        _, cache = batchnorm_forward(x, np.ones(c), np.zeros(c))
        n = x.size // c
        running_mean, running_var = update_running_stats(
            running_mean, running_var, cache.mean, cache.var, n, momentum, num_batches_tracked=step
        )
    return running_mean, running_var


@pytest.mark.parametrize("module, shape", MODULES.values(), ids=MODULES.keys())
@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_running_stats_match_torch_modules(module, shape, momentum):
    rng = np.random.default_rng(0)
    batches = [rng.normal(2.0, 3.0, size=shape) for _ in range(5)]
    ref = module(shape[1], momentum=momentum, dtype=torch.float64).train()
    for x in batches:
        ref(torch.tensor(x))
    assert int(ref.num_batches_tracked) == len(batches)
    mean, var = run_bnlib(batches, momentum)
    assert_allclose(mean, ref.running_mean.numpy(), rtol=1e-12, atol=1e-14)
    assert_allclose(var, ref.running_var.numpy(), rtol=1e-12)


def test_cumulative_average_is_the_plain_mean_of_batch_estimates():
    rng = np.random.default_rng(1)
    batches = [rng.normal(size=(6, 3)) for _ in range(4)]
    mean, var = run_bnlib(batches, momentum=None)
    assert_allclose(mean, np.mean([b.mean(axis=0) for b in batches], axis=0), rtol=1e-12)
    assert_allclose(var, np.mean([b.var(axis=0, ddof=1) for b in batches], axis=0), rtol=1e-12)


def test_one_update_by_hand():
    mean, var = update_running_stats(
        np.array([0.0, 1.0]), np.array([1.0, 1.0]), np.array([2.0, 3.0]), np.array([4.0, 0.5]), n=5, momentum=0.25
    )
    # mean: 0.75 * old + 0.25 * batch; var: the batch's biased variance is made unbiased (5/4)
    assert_allclose(mean, [0.5, 1.5])
    assert_allclose(var, [0.75 + 0.25 * 5.0, 0.75 + 0.25 * 0.625])


def test_momentum_zero_keeps_and_momentum_one_replaces():
    old = (np.array([1.0]), np.array([2.0]))
    batch = (np.array([5.0]), np.array([3.0]))
    assert update_running_stats(*old, *batch, n=4, momentum=0.0) == old
    mean, var = update_running_stats(*old, *batch, n=4, momentum=1.0)
    assert_allclose(mean, [5.0])
    assert_allclose(var, [4.0])


def test_float32_running_stats_stay_float32_and_arguments_are_not_modified():
    args = [np.zeros(3, np.float32), np.ones(3, np.float32), np.full(3, 2, np.float32), np.full(3, 0.5, np.float32)]
    copies = [a.copy() for a in args]
    mean, var = update_running_stats(*args, n=10)
    assert mean.dtype == var.dtype == np.float32
    for arg, original in zip(args, copies):
        assert_array_equal(arg, original)


@pytest.mark.parametrize("momentum", [-0.1, 1.5, "0.1", True, np.array([0.1, 0.2])])
def test_bad_momentum_is_rejected(momentum):
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\] or None, got"):
        update_running_stats(np.zeros(2), np.ones(2), np.zeros(2), np.ones(2), n=4, momentum=momentum)


def test_cumulative_average_needs_the_step_count():
    with pytest.raises(ValueError, match="momentum=None means a cumulative average: pass the step count"):
        update_running_stats(np.zeros(2), np.ones(2), np.zeros(2), np.ones(2), n=4, momentum=None)


@pytest.mark.parametrize("steps", [0, -1, 1.5, True])
def test_bad_step_count_is_rejected(steps):
    with pytest.raises(ValueError, match="num_batches_tracked must be a positive integer"):
        update_running_stats(
            np.zeros(2), np.ones(2), np.zeros(2), np.ones(2), n=4, momentum=None, num_batches_tracked=steps
        )


@pytest.mark.parametrize(
    "n, error, message", [(1, ValueError, "n must be at least 2"), (2.0, TypeError, "n must be an integer")]
)
def test_bad_count_is_rejected(n, error, message):
    with pytest.raises(error, match=message):
        update_running_stats(np.zeros(2), np.ones(2), np.zeros(2), np.ones(2), n=n)


@pytest.mark.parametrize("name", ["running_var", "batch_mean", "batch_var"])
def test_statistics_of_the_wrong_shape_are_rejected(name):
    args = {"running_mean": np.zeros(2), "running_var": np.ones(2), "batch_mean": np.zeros(2), "batch_var": np.ones(2)}
    args[name] = np.ones(3)
    with pytest.raises(ValueError, match=rf"{name} must have shape \(C,\) = \(2,\)"):
        update_running_stats(n=4, **args)
    with pytest.raises(ValueError, match=r"running_mean must have shape \(C,\), got shape \(2, 1\)"):
        update_running_stats(np.zeros((2, 1)), np.ones(2), np.zeros(2), np.ones(2), n=4)


@pytest.mark.parametrize("name", ["running_var", "batch_var"])
def test_negative_variances_are_rejected(name):
    args = {"running_mean": np.zeros(2), "running_var": np.ones(2), "batch_mean": np.zeros(2), "batch_var": np.ones(2)}
    args[name] = np.array([1.0, -0.25])
    with pytest.raises(ValueError, match=rf"{name} must be non-negative \(it is a variance\), got minimum -0.25"):
        update_running_stats(n=4, **args)
    args[name] = np.array([1.0, 0.0])  # zero is a variance
    update_running_stats(n=4, **args)


# ------------------------------------------------------------------- population statistics (Algorithm 2)


def test_population_statistics_is_algorithm_2_by_hand():
    rng = np.random.default_rng(2)
    batches = [rng.normal(1.0, 2.0, size=(5, 3, 2)) for _ in range(7)]
    m = 5 * 2
    means = [b.mean(axis=(0, 2)) for b in batches]
    biased = [b.var(axis=(0, 2)) for b in batches]
    mean, var = population_statistics(batches)
    assert_allclose(mean, np.mean(means, axis=0), rtol=1e-12)
    assert_allclose(var, m / (m - 1) * np.mean(biased, axis=0), rtol=1e-12)


def test_population_statistics_accepts_any_iterable():
    rng = np.random.default_rng(3)
    batches = [rng.normal(size=(4, 2)) for _ in range(3)]
    from_list = population_statistics(batches)
    from_generator = population_statistics(b for b in batches)
    assert_array_equal(from_list[0], from_generator[0])
    assert_array_equal(from_list[1], from_generator[1])


def test_factor_is_exactly_two_for_batches_of_two():
    batches = [np.array([[0.0, 1.0], [2.0, 1.0]]), np.array([[2.0, -1.0], [6.0, 3.0]])]
    mean, var = population_statistics(batches)
    # biased batch variances: [1, 0] and [4, 4]; their mean [2.5, 2]; times m/(m-1) = 2
    assert_array_equal(mean, [2.5, 1.0])
    assert_array_equal(var, [5.0, 4.0])


def test_population_variance_is_unbiased_while_the_plain_average_is_low():
    rng = np.random.default_rng(4)
    true_mean, true_var, m, channels = 3.0, 4.0, 4, 50
    batches = [rng.normal(true_mean, np.sqrt(true_var), size=(m, channels)) for _ in range(2000)]
    mean, var = population_statistics(batches)
    plain = np.mean([b.var(axis=0) for b in batches], axis=0)
    assert abs(mean.mean() - true_mean) < 0.01
    assert abs(var.mean() / true_var - 1.0) < 0.01
    assert abs(plain.mean() / true_var - (m - 1) / m) < 0.01


def test_population_statistics_stays_float32_and_keeps_batches():
    batches = [np.arange(6, dtype=np.float32).reshape(3, 2) + k for k in range(3)]
    copies = [b.copy() for b in batches]
    mean, var = population_statistics(batches)
    assert mean.dtype == var.dtype == np.float32
    for b, original in zip(batches, copies):
        assert_array_equal(b, original)


def test_population_statistics_of_unequal_batches_is_rejected():
    batches = [np.ones((4, 2)), np.ones((4, 2)), np.ones((3, 2))]
    message = r"All batches must have the same shape .* the first had shape \(4, 2\), batch 2 has \(3, 2\)"
    with pytest.raises(ValueError, match=message):
        population_statistics(batches)


def test_population_statistics_of_no_batches_is_rejected():
    with pytest.raises(ValueError, match="population_statistics needs at least one batch, got none"):
        population_statistics([])
    with pytest.raises(ValueError, match="population_statistics needs at least one batch, got none"):
        population_statistics(iter(()))


def test_population_statistics_of_bad_batches_is_rejected():
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        population_statistics([np.ones((1, 3))])
    with pytest.raises(ValueError, match="Expected batch with at least 2 dimensions"):
        population_statistics([np.ones(4)])
    with pytest.raises(ValueError, match="batch must contain only finite values"):
        population_statistics([np.array([[1.0], [np.nan]])])
