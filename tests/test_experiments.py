"""bnlib.experiments: the training harness behind chapter 9."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bnlib import experiments  # noqa: E402
from bnlib.data import Dataset  # noqa: E402


def tiny_dataset(seed=0, n_train=240, n_test=120, n_features=12, n_classes=3):
    """Three well separated Gaussian blobs: any working network learns them quickly."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(n_classes, n_features))

    def draw(n):
        y = rng.integers(0, n_classes, size=n)
        x = centres[y] + rng.normal(size=(n, n_features))
        return x.astype(np.float32), y.astype(np.int64)

    return Dataset(*draw(n_train), *draw(n_test))


DATA = tiny_dataset()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks run fastest on one thread; several threads on a busy machine are far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def model(batchnorm, seed=0, **kwargs):
    kwargs.setdefault("bn_layer", torch.nn.BatchNorm1d)
    return experiments.make_mlp(
        12, hidden=(16, 16), out_features=3, batchnorm=batchnorm,
        generator=torch.Generator().manual_seed(seed), **kwargs,
    )


def fit(batchnorm, steps=60, lr=0.5, seed=0, **kwargs):
    return experiments.train(model(batchnorm, seed), DATA, steps=steps, batch_size=16, lr=lr,
                             seed=seed, **kwargs)


# ------------------------------------------------------------------ make_mlp


def test_layout_with_and_without_bn():
    plain = [type(m).__name__ for m in model(False)]
    with_bn = [type(m).__name__ for m in model(True)]
    assert plain == ["Linear", "Sigmoid", "Linear", "Sigmoid", "Linear"]
    assert with_bn == ["Linear", "BatchNorm1d", "Sigmoid", "Linear", "BatchNorm1d", "Sigmoid", "Linear"]
    # Hidden Linear layers before BN carry no bias; the output layer keeps one.
    linears = experiments.linear_layers(model(True))
    assert [layer.bias is None for layer in linears] == [True, True, False]
    assert all(layer.bias is not None for layer in experiments.linear_layers(model(False)))


def test_default_bn_layer_is_bnlibs():
    import bnlib.nn

    assert experiments.default_bn_layer() is bnlib.nn.BatchNorm1d
    net = experiments.make_mlp(4, hidden=(3,), out_features=2, batchnorm=True,
                               generator=torch.Generator().manual_seed(0))
    assert isinstance(net[1], bnlib.nn.BatchNorm1d)


def test_init_comes_from_the_generator_only():
    state = torch.random.get_rng_state()
    a, b = model(False, seed=3), model(False, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state), "global RNG was touched"
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    c = model(False, seed=4)
    assert not torch.equal(a[0].weight, c[0].weight)


def test_default_init_bounds_and_gaussian_std():
    net = model(False)
    for layer in experiments.linear_layers(net):
        bound = 1 / math.sqrt(layer.in_features)
        assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
    wide = experiments.make_mlp(400, hidden=(300,), out_features=200, weight_std=0.05,
                                generator=torch.Generator().manual_seed(0))
    for layer in experiments.linear_layers(wide):
        assert abs(float(layer.weight.detach().std()) - 0.05) < 0.002
        assert torch.count_nonzero(layer.bias) == 0


@pytest.mark.parametrize("activation, cls", [("tanh", torch.nn.Tanh), ("relu", torch.nn.ReLU),
                                             ("linear", torch.nn.Identity)])
def test_activations(activation, cls):
    net = model(False, activation=activation)
    assert isinstance(net[1], cls)


def test_linear_network_is_one_linear_map():
    """Without activations the network is the product of its weight matrices (plus biases)."""
    net = model(False, activation="linear").double()
    w1, w2, w3 = (layer.weight.detach() for layer in experiments.linear_layers(net))
    b1, b2, b3 = (layer.bias.detach() for layer in experiments.linear_layers(net))
    x = torch.randn(5, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = x @ (w3 @ w2 @ w1).T + (b1 @ w2.T + b2) @ w3.T + b3
    torch.testing.assert_close(net(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(activation="softplus"), ValueError, "activation must be one of"),
        (dict(hidden=100), TypeError, "sequence of layer widths"),
        (dict(hidden=(10, 0)), ValueError, "hidden width"),
        (dict(weight_std=-1.0), ValueError, "weight_std"),
        (dict(weight_std=float("nan")), ValueError, "weight_std"),
        (dict(generator=0), TypeError, "torch.Generator"),
        (dict(bn_layer="BatchNorm1d", batchnorm=True), TypeError, "bn_layer"),
    ],
)
def test_make_mlp_rejects_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        experiments.make_mlp(12, **kwargs)


# ------------------------------------------------------------------ train


def test_same_seed_same_history():
    a = fit(True, probe=(-3, 1), record_grads=True, eval_every=10)
    b = fit(True, probe=(-3, 1), record_grads=True, eval_every=10)
    np.testing.assert_array_equal(a.train_loss, b.train_loss)
    np.testing.assert_array_equal(a.test_accuracy, b.test_accuracy)
    np.testing.assert_array_equal(a.probe, b.probe)
    np.testing.assert_array_equal(a.grad_norms, b.grad_norms)
    c = experiments.train(model(True, 0), DATA, steps=60, batch_size=16, lr=0.5, seed=1)
    assert not np.array_equal(a.train_loss, c.train_loss), "the seed must change the batch order"


@pytest.mark.parametrize("batchnorm", [False, True])
def test_both_models_learn(batchnorm):
    history = fit(batchnorm, steps=150, lr=1.0)
    first, last = history.train_loss[:10].mean(), history.train_loss[-10:].mean()
    assert last < 0.5 * first
    assert history.final_test_accuracy > 0.9
    assert not history.diverged and history.steps_run == 150


def test_history_layout():
    history = fit(False, steps=50, eval_every=20, record_grads=True)
    np.testing.assert_array_equal(history.eval_steps, [0, 20, 40, 50])
    assert history.train_loss.shape == (50,)
    for name in ("test_accuracy", "train_accuracy", "test_loss", "train_eval_loss"):
        assert getattr(history, name).shape == (4,)
    assert history.weight_norms.shape == (4, 3)
    assert history.grad_norms.shape == (50, 3)
    assert history.probe is None
    assert history.config["lr"] == 0.5 and history.config["seed"] == 0
    assert experiments.steps_to_reach(history, -1.0) == 0
    assert experiments.steps_to_reach(history, 2.0) is None


def test_accuracy_matches_a_manual_evaluation():
    net = model(True)
    history = experiments.train(net, DATA, steps=30, batch_size=16, lr=0.5, seed=0,
                                train_eval_size=50)
    net.eval()
    with torch.no_grad():
        predictions = net(torch.from_numpy(DATA.x_test)).argmax(dim=1).numpy()
        train_predictions = net(torch.from_numpy(DATA.x_train[:50])).argmax(dim=1).numpy()
    assert history.test_accuracy[-1] == pytest.approx(np.mean(predictions == DATA.y_test))
    assert history.train_accuracy[-1] == pytest.approx(np.mean(train_predictions == DATA.y_train[:50]))
    assert history.config["train_eval_size"] == 50


@pytest.mark.parametrize("batchnorm, index", [(False, -3), (True, -3), (True, 0)])
def test_probe_reports_the_right_unit(batchnorm, index):
    net = model(batchnorm)
    unit = 5
    history = experiments.train(net, DATA, steps=20, batch_size=16, lr=0.5, seed=0,
                                eval_every=20, probe=(index, unit))
    # The final evaluation's percentiles, recomputed by a manual forward pass in eval mode.
    net.eval()
    with torch.no_grad():
        h = torch.from_numpy(DATA.x_test)
        for position, module in enumerate(net):
            h = module(h)
            if position == index % len(net):
                break
    expected = np.percentile(h[:, unit].double().numpy(), experiments.PERCENTILES)
    np.testing.assert_allclose(history.probe[-1], expected, rtol=1e-6, atol=1e-7)
    assert history.probe.shape == (len(history.eval_steps), 3)
    assert np.all(np.diff(history.probe, axis=1) >= 0), "percentiles must be ordered"
    # The hook is removed after training.
    assert not net[index]._forward_hooks


def test_divergence_is_detected_without_an_exception():
    history = experiments.train(model(False, activation="relu"), DATA, steps=50, batch_size=16,
                                lr=1e6, seed=0, probe=(-3, 0), record_grads=True)
    assert history.diverged and history.diverged_at is not None
    assert history.diverged_at <= 50
    assert history.train_loss.shape == (history.diverged_at - 1,)
    assert np.all(np.isfinite(history.train_loss))
    assert history.final_test_accuracy == pytest.approx(1 / 3)
    assert math.isinf(history.test_loss[-1])
    assert history.eval_steps[-1] == history.diverged_at - 1
    assert len(history.probe) == len(history.eval_steps)
    assert history.grad_norms.shape[0] == history.diverged_at - 1


def test_device_argument():
    history = fit(True, steps=5, device="cpu")
    assert history.config["device"] == "cpu"
    history = fit(True, steps=5, device=torch.device("cpu"))
    assert history.steps_run == 5
    with pytest.raises(ValueError, match="device"):
        fit(True, steps=5, device="not-a-device")


def test_adam_and_momentum():
    assert fit(True, steps=40, lr=0.01, optimizer="adam").final_test_accuracy > 0.8
    assert fit(False, steps=40, lr=0.3, momentum=0.9).steps_run == 40


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(steps=0), ValueError, "steps must be an integer >= 1"),
        (dict(steps=2.5), ValueError, "steps must be an integer"),
        (dict(batch_size=0), ValueError, "batch_size must be"),
        (dict(batch_size=10_000), ValueError, "exceeds the 240 training examples"),
        (dict(batch_size=1), ValueError, "batch_size >= 2"),
        (dict(lr=0.0), ValueError, "lr must be a positive finite number"),
        (dict(lr=float("inf")), ValueError, "lr must be"),
        (dict(optimizer="rmsprop"), ValueError, "optimizer must be 'sgd' or 'adam'"),
        (dict(optimizer="adam", momentum=0.9), ValueError, "momentum applies"),
        (dict(seed=1.5), TypeError, "seed must be an int"),
        (dict(eval_every=0), ValueError, "eval_every"),
        (dict(train_eval_size=0), ValueError, "train_eval_size"),
        (dict(probe=(99, 0)), ValueError, "module_index"),
        (dict(probe=(-3, 16)), ValueError, "unit must be an integer in"),
        (dict(probe=3), TypeError, "pair"),
    ],
)
def test_train_rejects_bad_arguments(kwargs, error, words):
    args = dict(steps=5, batch_size=16, lr=0.5, seed=0)
    args.update(kwargs)
    with pytest.raises(error, match=words):
        experiments.train(model(True), DATA, **args)


def test_train_rejects_bad_data_and_model():
    with pytest.raises(TypeError, match="bnlib.data.Dataset"):
        experiments.train(model(False), DATA[:2], steps=1, batch_size=4, lr=0.1, seed=0)
    bad = Dataset(DATA.x_train, DATA.y_train[:-1], DATA.x_test, DATA.y_test)
    with pytest.raises(ValueError, match="one label per row"):
        experiments.train(model(False), bad, steps=1, batch_size=4, lr=0.1, seed=0)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        experiments.train(lambda x: x, DATA, steps=1, batch_size=4, lr=0.1, seed=0)


def test_plain_model_trains_with_batch_size_one():
    history = experiments.train(model(False), DATA, steps=5, batch_size=1, lr=0.1, seed=0)
    assert history.steps_run == 5


def test_epochs_visit_every_example_once():
    """Each epoch is a permutation: with batch_size dividing n, one epoch sees every example."""
    batches = experiments._Batches(12, 4, torch.Generator().manual_seed(0), torch.device("cpu"))
    seen = torch.cat([batches.next() for _ in range(3)])
    assert sorted(seen.tolist()) == list(range(12))


# ------------------------------------------------------------------ helpers


def test_run_seeds_and_spread():
    results = experiments.run_seeds(lambda seed: np.array([seed, 2.0 * seed]), [1, 2, 3])
    mean, low, high = experiments.spread(results)
    np.testing.assert_allclose(mean, [2.0, 4.0])
    np.testing.assert_allclose(low, [1.0, 2.0])
    np.testing.assert_allclose(high, [3.0, 6.0])
    with pytest.raises(ValueError, match="at least one seed"):
        experiments.run_seeds(lambda seed: seed, [])
    with pytest.raises(ValueError, match="over seeds"):
        experiments.spread([])


def test_steps_to_reach_rejects_a_per_step_metric():
    history = fit(False, steps=10)
    with pytest.raises(ValueError, match="evaluation steps"):
        experiments.steps_to_reach(history, 0.5, metric="train_loss")


def test_not_imported_by_bnlib():
    import subprocess
    import sys

    code = "import sys, bnlib; print('torch' in sys.modules, 'bnlib.experiments' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# ------------------------------------------------------------------ train_stacked


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("bn_class", ["torch", "bnlib"])
def test_stacked_runs_equal_separate_runs(batchnorm, bn_class):
    """Model k of a stacked run follows train(model_k, lr=lrs[k], seed=seeds[k]) step for step."""
    if bn_class == "bnlib":
        bn_layer = pytest.importorskip("bnlib.nn").BatchNorm1d
    else:
        bn_layer = torch.nn.BatchNorm1d
    seeds, lrs = [0, 1, 2], [0.05, 0.2, 0.5]
    result = experiments.train_stacked(
        [model(batchnorm, s, bn_layer=bn_layer) for s in seeds], DATA, steps=25,
        batch_size=8, lrs=lrs, seeds=seeds)
    assert result.train_loss.shape == (3, 25) and not result.diverged.any()
    for k, (seed, lr) in enumerate(zip(seeds, lrs)):
        history = experiments.train(model(batchnorm, seed, bn_layer=bn_layer), DATA, steps=25,
                                    batch_size=8, lr=lr, seed=seed, eval_every=25)
        np.testing.assert_allclose(result.train_loss[k], history.train_loss, rtol=1e-4, atol=1e-6)
        assert result.test_accuracy[k] == pytest.approx(history.final_test_accuracy, abs=1e-6)
        assert result.test_loss[k] == pytest.approx(history.test_loss[-1], rel=1e-4)
        assert result.train_accuracy[k] == pytest.approx(history.train_accuracy[-1], abs=1e-6)


def test_stacked_leaves_models_unchanged_and_reports_divergence():
    models = [model(False, s, activation="relu") for s in (0, 1)]
    before = [m[0].weight.detach().clone() for m in models]
    result = experiments.train_stacked(models, DATA, steps=30, batch_size=16,
                                       lrs=[0.5, 1e6], seeds=[0, 1])
    assert all(torch.equal(m[0].weight, w) for m, w in zip(models, before))
    assert result.diverged.tolist() == [False, True]
    assert result.test_accuracy[1] == pytest.approx(1 / 3) and math.isinf(result.test_loss[1])
    assert result.test_accuracy[0] > 0.9  # the other model trained undisturbed
    assert np.isnan(result.train_loss[1, -1]) and np.isfinite(result.train_loss[0]).all()


@pytest.mark.parametrize("kwargs, words", [
    (dict(lrs=[0.1], seeds=[0, 1]), "one learning rate and one seed per model"),
    (dict(lrs=[0.1, -1.0], seeds=[0, 1]), "positive"),
])
def test_stacked_rejects_bad_arguments(kwargs, words):
    with pytest.raises(ValueError, match=words):
        experiments.train_stacked([model(False, 0), model(False, 1)], DATA, steps=2,
                                  batch_size=4, **kwargs)


def test_stacked_rejects_mixed_architectures():
    with pytest.raises(ValueError, match="one architecture"):
        experiments.train_stacked([model(False), model(True)], DATA, steps=2, batch_size=4,
                                  lrs=[0.1, 0.1], seeds=[0, 0])
