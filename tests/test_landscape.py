"""bnlib.landscape: Santurkar et al.'s noise, ICS and landscape measurements."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from bnlib import landscape as ls  # noqa: E402

F64 = torch.float64


# --------------------------------------------------------------------------- the noise


def test_noise_statistics_match_the_specification():
    noise = ls.NoiseOnly(50, generator=torch.Generator().manual_seed(0))
    n_steps, batch = 400, 32
    unit_means, unit_scales, mean_offsets, scale_offsets = [], [], [], []
    for _ in range(n_steps):
        scale, shift = noise.draw_noise(batch, F64)
        assert scale.shape == shift.shape == (batch, 50)
        mu, sigma = shift.mean(0), scale.mean(0)  # per-unit centres, estimated from the batch
        unit_means.append(mu)
        unit_scales.append(sigma)
        mean_offsets.append(shift - mu)
        scale_offsets.append(scale - sigma)
    unit_means, unit_scales = torch.stack(unit_means), torch.stack(unit_scales)
    # per-unit mu ~ U(-0.5, 0.5): mean 0, variance 1/12, range within +-0.5 (+ jitter average)
    assert abs(float(unit_means.mean())) < 0.01
    assert float(unit_means.var()) == pytest.approx(1 / 12, rel=0.05)
    # per-unit sigma ~ U(1, 1.25): mean 1.125, variance 0.25**2 / 12
    assert float(unit_scales.mean()) == pytest.approx(1.125, abs=0.003)
    assert float(unit_scales.var()) == pytest.approx(0.25**2 / 12 + 0.01 / batch, rel=0.1)
    # per-sample m ~ U(mu - 0.1, mu + 0.1): within +-0.2 of the batch average, variance 0.01 / 3
    offsets = torch.cat(mean_offsets)
    assert float(offsets.abs().max()) <= 0.2
    assert float(offsets.var()) == pytest.approx(0.01 / 3 * (batch - 1) / batch, rel=0.05)
    # per-sample s ~ N(sigma, 0.1**2)
    assert float(torch.cat(scale_offsets).std()) == pytest.approx(0.1 * np.sqrt((batch - 1) / batch), rel=0.05)


def test_noise_ranges_are_exact():
    noise = ls.NoiseOnly(20, generator=1)
    for _ in range(200):
        scale, shift = noise.draw_noise(16, F64)
        assert float(shift.abs().max()) <= 0.5 + 0.1
    # a zero jitter leaves one value per unit, inside the per-unit ranges
    flat = ls.NoiseOnly(1000, generator=2, mean_jitter=0.0, scale_jitter=0.0)
    scale, shift = flat.draw_noise(3, F64)
    assert torch.equal(scale[0], scale[2]) and torch.equal(shift[0], shift[1])
    assert float(shift.min()) >= -0.5 and float(shift.max()) <= 0.5
    assert float(scale.min()) >= 1.0 and float(scale.max()) <= 1.25
    assert float(shift.max() - shift.min()) > 0.95  # the range is used, not a corner of it


def test_noise_is_redrawn_every_step_and_follows_the_generator():
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(3))
    a = ls.NoiseOnly(5, generator=7)
    b = ls.NoiseOnly(5, generator=torch.Generator().manual_seed(7))
    first, second = a(x), a(x)
    assert not torch.equal(first, second)
    torch.testing.assert_close(b(x), first)
    torch.testing.assert_close(b(x), second)


def test_noise_applies_scale_and_shift_and_broadcasts_over_length():
    noise = ls.NoiseOnly(3, generator=5)
    twin = copy.deepcopy(noise)
    x = torch.randn(4, 3, 6, generator=torch.Generator().manual_seed(0))
    scale, shift = twin.draw_noise(4, x.dtype)
    torch.testing.assert_close(noise(x), x * scale[..., None] + shift[..., None])
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        noise(torch.zeros(4, 2))


def test_eval_mode_is_deterministic():
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(0))
    noise = ls.NoiseOnly(6).eval()
    assert torch.equal(noise(x), x)
    noisy = ls.NoisyBatchNorm1d(6, generator=3)
    noisy(x)  # one training step updates the running statistics
    noisy.eval()
    reference = nn.BatchNorm1d(6)
    reference.load_state_dict(noisy.state_dict())
    reference.eval()
    out = noisy(x)
    assert torch.equal(out, noisy(x))
    torch.testing.assert_close(out, reference(x))


def test_noisy_batchnorm_is_batchnorm_then_noise():
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(1)) * 3 + 2
    noisy = ls.NoisyBatchNorm1d(4, generator=11)
    plain = nn.BatchNorm1d(4)
    twin = ls.NoiseOnly(4, generator=11)
    torch.testing.assert_close(noisy(x), twin(plain(x)))
    torch.testing.assert_close(noisy.running_mean, plain.running_mean)
    assert set(noisy.state_dict()) == set(plain.state_dict())


def test_bad_generator_and_constants_are_rejected():
    with pytest.raises(TypeError, match="torch.Generator or an int"):
        ls.NoiseOnly(3, generator=0.5)
    with pytest.raises(ValueError, match="scale_range"):
        ls.NoiseOnly(3, scale_range=(2.0, 1.0))


# --------------------------------------------------------------------------- ICS


def small_mlp(seed, batchnorm=False):
    layers = [nn.Linear(5, 7)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(7))
    layers += [nn.Tanh(), nn.Linear(7, 6), nn.Tanh(), nn.Linear(6, 3)]
    model = nn.Sequential(*layers).to(F64)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 + 0.6 * torch.randn(p.shape, generator=gen, dtype=F64))
    return model


def batch(seed, n=20):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=gen, dtype=F64), torch.randint(0, 3, (n,), generator=gen)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_ics_is_zero_when_preceding_layers_do_not_move(batchnorm):
    model = small_mlp(0, batchnorm)
    x, y = batch(1)
    result = ls.ics(model, nn.functional.cross_entropy, x, y, lr=0.0)
    assert len(result) == 3
    for layer in result:
        assert layer.l2 == 0.0
        assert layer.cosine == pytest.approx(1.0, abs=1e-12)
        assert layer.grad_norm > 0


@pytest.mark.parametrize("batchnorm", [False, True])
def test_ics_matches_a_hand_computation(batchnorm):
    model = small_mlp(2, batchnorm)
    x, y = batch(3)
    lr = 0.3
    loss_fn = nn.functional.cross_entropy
    before = copy.deepcopy(model)
    result = ls.ics(model, loss_fn, x, y, lr)
    # the model is unchanged, running statistics included
    for (name, a), b in zip(model.state_dict().items(), before.state_dict().values()):
        assert torch.equal(a, b), name
    # by hand: step the parameters before the last layer, then take its gradient again
    ref = copy.deepcopy(model)
    loss_fn(ref(x), y).backward()
    params = list(ref.parameters())
    last = ref[-1].weight
    g = last.grad.clone()
    k = [id(p) for p in params].index(id(last))
    stepped = copy.deepcopy(ref)
    with torch.no_grad():
        for p, q in zip(list(stepped.parameters())[:k], params[:k]):
            p -= lr * q.grad
    stepped.zero_grad()
    loss_fn(stepped(x), y).backward()
    g_after = stepped[-1].weight.grad
    assert result[-1].l2 == pytest.approx(float((g - g_after).norm()), rel=1e-10)
    cosine = float((g * g_after).sum() / (g.norm() * g_after.norm()))
    assert result[-1].cosine == pytest.approx(cosine, rel=1e-10)
    assert result[-1].grad_norm == pytest.approx(float(g.norm()), rel=1e-12)
    assert result[0].l2 == 0.0  # nothing precedes the first layer
    assert result[1].l2 > 0


def test_ics_rejects_a_foreign_layer():
    model = small_mlp(0)
    x, y = batch(0)
    with pytest.raises(ValueError, match="no trainable weight"):
        ls.ics(model, nn.functional.cross_entropy, x, y, 0.1, layers=[nn.Linear(2, 2)])


# --------------------------------------------------------------------------- landscape probe


class Quadratic(nn.Module):
    """f(w) = w^T A w / 2 with w the module's one parameter; the "inputs" are ignored."""

    def __init__(self, a, w):
        super().__init__()
        self.register_buffer("a", torch.as_tensor(a, dtype=F64))
        self.w = nn.Parameter(torch.as_tensor(w, dtype=F64))

    def forward(self, _):
        return 0.5 * self.w @ self.a @ self.w


def value(out, _):
    return out


def test_probe_gives_the_analytic_answers_on_a_quadratic():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    eigenvalues = np.array([5.0, 2.0, 1.0, 0.5])
    a = q @ np.diag(eigenvalues) @ q.T
    w = rng.normal(size=4)
    lr, multiples = 0.1, (0.5, 1.0, 2.0, 4.0)
    probe = ls.probe_gradient_direction(Quadratic(a, w), value, None, None, lr, multiples)

    g = a @ w
    etas = lr * np.array(multiples)
    f = lambda v: 0.5 * v @ a @ v  # noqa: E731
    losses = np.array([f(w - eta * g) for eta in etas])
    np.testing.assert_allclose(probe.step_sizes, etas)
    np.testing.assert_allclose(probe.losses, losses, rtol=1e-12)
    np.testing.assert_allclose(probe.grad_distances, etas * np.linalg.norm(a @ g), rtol=1e-12)
    assert probe.loss_at_start == pytest.approx(f(w))
    assert probe.grad_norm == pytest.approx(np.linalg.norm(g))
    assert probe.loss_range == pytest.approx(np.ptp(np.append(losses, f(w))))
    assert probe.gradient_predictiveness == pytest.approx(4 * lr * np.linalg.norm(a @ g))
    # the curvature along g, the same for every step size
    assert probe.beta_smoothness == pytest.approx(np.linalg.norm(a @ g) / np.linalg.norm(g))
    assert probe.beta_smoothness <= eigenvalues.max() + 1e-12
    lipschitz = np.abs(losses - f(w)) / (etas * np.linalg.norm(g))
    assert probe.loss_lipschitz == pytest.approx(lipschitz.max())


def test_beta_smoothness_is_the_top_eigenvalue_along_its_eigenvector():
    a = np.diag([3.0, 7.0, 1.0])
    probe = ls.probe_gradient_direction(Quadratic(a, [0.0, 2.0, 0.0]), value, None, None, 0.05)
    assert probe.beta_smoothness == pytest.approx(7.0, rel=1e-12)
    # along that direction the loss is a parabola in eta: L = 14 (1 - 7 eta)^2
    etas = probe.step_sizes
    np.testing.assert_allclose(probe.losses, 14 * (1 - 7 * etas) ** 2, rtol=1e-12)


def test_probe_leaves_the_model_unchanged_and_validates_steps():
    model = small_mlp(4, batchnorm=True)
    x, y = batch(5)
    before = copy.deepcopy(model.state_dict())
    probe = ls.probe_gradient_direction(model, nn.functional.cross_entropy, x, y, 0.2)
    assert probe.losses.shape == probe.grad_distances.shape == (4,)
    assert probe.beta_smoothness > 0 and probe.loss_range > 0
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    with pytest.raises(ValueError, match="positive step sizes"):
        ls.probe_gradient_direction(model, nn.functional.cross_entropy, x, y, 0.1, (0.0, 1.0))


def test_loss_and_gradient_matches_autograd():
    model = small_mlp(6)
    x, y = batch(7)
    loss, grads = ls.loss_and_gradient(model, nn.functional.cross_entropy, x, y)
    ref = copy.deepcopy(model)
    ref_loss = nn.functional.cross_entropy(ref(x), y)
    ref_loss.backward()
    assert loss == pytest.approx(float(ref_loss.detach()), rel=1e-14)
    for g, p in zip(grads, ref.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- networks and runs


def test_add_noise_layers_puts_noise_after_hidden_linears_only():
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 2))
    noisy = ls.add_noise_layers(model, generator=3)
    kinds = [type(m).__name__ for m in noisy]
    assert kinds == ["Linear", "NoiseOnly", "ReLU", "Linear", "NoiseOnly", "ReLU", "Linear"]
    assert len(model) == 5  # the original is unchanged
    assert noisy[1].generator is noisy[4].generator
    torch.testing.assert_close(noisy[0].weight, model[0].weight)
    assert noisy[0].weight is not model[0].weight
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    noisy.eval()
    torch.testing.assert_close(noisy(x), model(x))  # no noise in eval mode
    with pytest.raises(ValueError, match="no nn.Linear"):
        ls.add_noise_layers(nn.Sequential(nn.ReLU()))


def test_measure_during_training_records_every_point():
    experiments = pytest.importorskip("bnlib.experiments")
    from bnlib.data import Dataset

    gen = np.random.default_rng(0)
    data = Dataset(gen.random((60, 8), dtype=np.float32), gen.integers(0, 3, 60),
                   gen.random((20, 8), dtype=np.float32), gen.integers(0, 3, 20))
    model = experiments.make_mlp(8, (6,), 3, "relu", batchnorm=True, bn_layer=nn.BatchNorm1d,
                                 generator=torch.Generator().manual_seed(0))
    before = copy.deepcopy(model.state_dict())
    result = ls.measure_during_training(model, data, steps=6, measure_every=3, batch_size=10,
                                        lr=0.1, seed=1, multiples=(1.0, 2.0))
    np.testing.assert_array_equal(result.steps, [0, 3, 6])
    assert len(result.probes) == 3 and result.ics.shape == (3, 2, 3)
    assert result.test_accuracy.shape == (3,)
    assert result.series("beta_smoothness").shape == (3,)
    np.testing.assert_array_equal(result.ics[:, 0, 0], 0.0)  # nothing precedes layer 1
    assert not torch.equal(model[0].weight, before["0.weight"])  # it trained
    with pytest.raises(ValueError, match="multiple of measure_every"):
        ls.measure_during_training(model, data, steps=5, measure_every=3, batch_size=10,
                                   lr=0.1, seed=1)


def test_noisy_batchnorm_computes_with_bnlib():
    """Chapter 10's noisy BN is built on bnlib's BN layer, not torch's kernel."""
    bnlib_nn = pytest.importorskip("bnlib.nn")
    noisy = ls.NoisyBatchNorm1d(5, generator=2)
    assert isinstance(noisy, bnlib_nn.BatchNorm1d)
    x = torch.randn(12, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    noisy = noisy.double()
    scale, shift = ls.NoiseOnly(5, generator=2).draw_noise(12, torch.float64)
    y_bn, _ = __import__("bnlib").batchnorm_forward(x.numpy(), np.ones(5), np.zeros(5))
    torch.testing.assert_close(noisy(x), torch.from_numpy(y_bn) * scale + shift,
                               rtol=1e-12, atol=1e-12)
