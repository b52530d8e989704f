"""Why does BatchNorm help? Santurkar et al.'s measurements, in PyTorch.

Santurkar, Tsipras, Ilyas and Madry (2018), "How does batch normalization
help optimization?", test the original explanation of BatchNorm (it reduces
*internal covariate shift*, ICS) and propose another (it makes the loss
landscape smoother). This module provides the pieces to repeat their
measurements on small networks:

* :class:`NoiseOnly` and :class:`NoisyBatchNorm1d`: their non-stationary noise,
  which *adds* distribution shift after each BatchNorm layer (section 2.1);
* :func:`ics`: their gradient-based definition of ICS (section 2.2), the change
  of a layer's gradient when the layers before it take their update;
* :func:`probe_gradient_direction`: the landscape along the gradient
  (section 3.1, Figure 4): loss range, gradient predictiveness, "effective"
  beta-smoothness, and an empirical Lipschitz constant of the loss;
* :func:`measure_during_training`: both measurements at regular points of a
  training run of :func:`bnlib.experiments.train`.

The measurements take any ``torch.nn.Module``, a loss function
``loss_fn(outputs, targets) -> scalar`` and one batch. They are
pure: they evaluate the model at substituted parameters with
:func:`torch.func.functional_call` on copies of its buffers, so neither the
parameters nor BatchNorm's running statistics of the model change. Randomness
comes from an explicit ``torch.Generator``; the global torch seed is never used.

This module imports torch; ``import bnlib`` does not import it.
"""

from __future__ import annotations

import copy
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from .nn import BatchNorm1d

__all__ = [
    "NOISE_MEAN_RANGE",
    "NOISE_SCALE_RANGE",
    "NOISE_MEAN_JITTER",
    "NOISE_SCALE_JITTER",
    "NoiseOnly",
    "NoisyBatchNorm1d",
    "LayerICS",
    "ics",
    "GradientProbe",
    "probe_gradient_direction",
    "loss_and_gradient",
    "add_noise_layers",
    "TrainingMeasurements",
    "measure_during_training",
]

#: Per-unit noise mean: mu ~ U(-0.5, 0.5), drawn anew at every training step.
NOISE_MEAN_RANGE = 0.5
#: Per-unit noise scale: sigma ~ U(1, 1.25), drawn anew at every training step.
NOISE_SCALE_RANGE = (1.0, 1.25)
#: Per-sample shift around the unit's mean: m ~ U(mu - 0.1, mu + 0.1).
NOISE_MEAN_JITTER = 0.1
#: Per-sample scale around the unit's scale: s ~ N(sigma, 0.1**2).
NOISE_SCALE_JITTER = 0.1


def _make_generator(generator):
    """A ``torch.Generator`` from a Generator (used as given) or an int seed."""
    if isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(int(generator))
    raise TypeError(
        f"generator must be a torch.Generator or an int seed, got {type(generator).__name__} "
        f"{generator!r}"
    )


# --------------------------------------------------------------------------------------
# Santurkar et al.'s non-stationary noise
# --------------------------------------------------------------------------------------


class NoiseOnly(nn.Module):
    """Non-stationary random scale and shift of every unit: ``y = x * s + m`` in training.

    At every forward call in training mode (one training step), each unit ``j``
    gets a fresh noise distribution, ``mu_j ~ U(-0.5, 0.5)`` and
    ``sigma_j ~ U(1, 1.25)``; each sample ``i`` of the batch then gets its own
    ``m_ij ~ U(mu_j - 0.1, mu_j + 0.1)`` and ``s_ij ~ N(sigma_j, 0.1**2)``.
    In eval mode the module is the identity.

    On its own, after a plain linear layer, this is the "noise without BN"
    control; :class:`NoisyBatchNorm1d` puts it after a BatchNorm layer.

    Parameters
    ----------
    num_features : int
        Number of units (channels) ``C``.
    generator : torch.Generator or int, default=0
        Source of the noise (an int seeds a new CPU generator).
    mean_range, scale_range, mean_jitter, scale_jitter : float
        The noise constants; the defaults are Santurkar et al.'s
        (:data:`NOISE_MEAN_RANGE`, :data:`NOISE_SCALE_RANGE`,
        :data:`NOISE_MEAN_JITTER`, :data:`NOISE_SCALE_JITTER`).

    Notes
    -----
    Input of shape ``(N, C)`` or ``(N, C, L)``; the noise is drawn per sample
    and per channel and broadcast over ``L``. The noise is a constant of the
    computation: gradients flow through ``x * s + m`` with ``s`` and ``m`` fixed.
    The noise is drawn on the CPU from ``generator`` in ``x``'s dtype and moved
    to ``x``'s device.

    The constants are those of Santurkar et al. (2018, appendix): per-unit
    ``n_mu = 0.5``, ``n_sigma = 1.25`` and per-sample ``r_mu = r_sigma = 0.1``.
    The shapes of the per-sample distributions (uniform shift, normal scale)
    are our reading of their description.
    """

    def __init__(
        self,
        num_features: int,
        *,
        generator: torch.Generator | int = 0,
        mean_range: float = NOISE_MEAN_RANGE,
        scale_range: tuple[float, float] = NOISE_SCALE_RANGE,
        mean_jitter: float = NOISE_MEAN_JITTER,
        scale_jitter: float = NOISE_SCALE_JITTER,
    ):
        super().__init__()
        if int(num_features) < 1:
            raise ValueError(f"num_features must be a positive int, got {num_features!r}")
        low, high = scale_range
        if mean_range < 0 or mean_jitter < 0 or scale_jitter < 0 or high < low:
            raise ValueError(
                "noise constants must satisfy mean_range, mean_jitter, scale_jitter >= 0 and "
                f"scale_range = (low, high) with low <= high; got mean_range={mean_range}, "
                f"scale_range={scale_range}, mean_jitter={mean_jitter}, scale_jitter={scale_jitter}"
            )
        self.num_features = int(num_features)
        self.generator = _make_generator(generator)
        self.mean_range = float(mean_range)
        self.scale_range = (float(low), float(high))
        self.mean_jitter = float(mean_jitter)
        self.scale_jitter = float(scale_jitter)

    def draw_noise(
        self, batch_size: int, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step's noise: ``(scale, shift)``, each of shape ``(batch_size, C)`` on the CPU.

        Draws the per-unit ``mu, sigma`` first, then the per-sample values
        around them, and advances the generator.
        """
        shape = (int(batch_size), self.num_features)
        unit = torch.rand((2, self.num_features), generator=self.generator, dtype=dtype)
        unit_mean = self.mean_range * (2 * unit[0] - 1)  # U(-mean_range, mean_range)
        low, high = self.scale_range
        unit_scale = low + (high - low) * unit[1]  # U(low, high)
        jitter = torch.rand(shape, generator=self.generator, dtype=dtype)
        shift = unit_mean + self.mean_jitter * (2 * jitter - 1)  # U(mu - r, mu + r)
        normal = torch.randn(shape, generator=self.generator, dtype=dtype)
        scale = unit_scale + self.scale_jitter * normal  # N(sigma, scale_jitter**2)
        return scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if x.dim() not in (2, 3) or x.shape[1] != self.num_features:
            raise ValueError(
                f"expected input of shape (N, {self.num_features}) or (N, {self.num_features}, L), "
                f"got {tuple(x.shape)}"
            )
        scale, shift = self.draw_noise(x.shape[0], x.dtype)
        scale, shift = scale.to(x.device), shift.to(x.device)
        if x.dim() == 3:
            scale, shift = scale[..., None], shift[..., None]
        return x * scale + shift

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, mean_range={self.mean_range}, scale_range={self.scale_range}, "
            f"mean_jitter={self.mean_jitter}, scale_jitter={self.scale_jitter}"
        )


class NoisyBatchNorm1d(BatchNorm1d):
    """:class:`bnlib.nn.BatchNorm1d` followed by :class:`NoiseOnly`: Santurkar et al.'s "noisy BN".

    The BatchNorm part is ``bnlib``'s drop-in replacement for
    ``torch.nn.BatchNorm1d`` (same arguments, parameters, buffers and
    train/eval behaviour, ``bnlib``'s formulas); its output then passes through
    the non-stationary noise, which is drawn in training mode only. In eval
    mode the module is exactly BatchNorm in eval mode.

    Parameters
    ----------
    num_features, eps, momentum, affine, track_running_stats, device, dtype
        As in ``torch.nn.BatchNorm1d``.
    generator : torch.Generator or int, default=0
        Source of the noise, see :class:`NoiseOnly`.
    **noise_constants
        ``mean_range``, ``scale_range``, ``mean_jitter``, ``scale_jitter`` of
        :class:`NoiseOnly` (defaults: Santurkar et al.'s constants).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
        *,
        generator: torch.Generator | int = 0,
        **noise_constants,
    ):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.noise = NoiseOnly(num_features, generator=generator, **noise_constants)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.noise(super().forward(x))


# --------------------------------------------------------------------------------------
# Loss and gradient at given parameters, without touching the model
# --------------------------------------------------------------------------------------


def _trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def loss_and_gradient(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    params: dict[str, torch.Tensor] | None = None,
) -> tuple[float, list[torch.Tensor]]:
    """The loss on one batch and its gradient, at ``params`` (default: the model's own).

    Parameters
    ----------
    model : torch.nn.Module
        Evaluated in its current mode (train mode: BatchNorm uses the batch's
        statistics).
    loss_fn : callable
        ``loss_fn(model(inputs), targets)`` returns a scalar tensor.
    inputs, targets : torch.Tensor
        One batch.
    params : dict of str to torch.Tensor, optional
        Values for the model's trainable parameters, by name; missing names keep
        the model's values.

    Returns
    -------
    loss : float
    grads : list of torch.Tensor
        Detached gradients, one per trainable parameter, in
        ``model.named_parameters()`` order.

    Notes
    -----
    The model is called through :func:`torch.func.functional_call` with
    *copies* of its buffers, so BatchNorm's running statistics do not change.
    """
    own = _trainable(model)
    values = {name: (params[name] if params is not None and name in params else p).detach()
              for name, p in own.items()}
    values = {name: v.clone().requires_grad_(True) for name, v in values.items()}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    loss = loss_fn(functional_call(model, {**values, **buffers}, (inputs,)), targets)
    grads = torch.autograd.grad(loss, list(values.values()))
    return float(loss.detach()), [g.detach() for g in grads]


# --------------------------------------------------------------------------------------
# Internal covariate shift, Santurkar et al.'s definition 2.1
# --------------------------------------------------------------------------------------


class LayerICS(NamedTuple):
    """Gradient-based internal covariate shift of one layer (see :func:`ics`).

    Attributes
    ----------
    l2 : float
        ``||G - G'||_2``.
    cosine : float
        ``cos(G, G') = <G, G'> / (||G|| ||G'||)``; 1 means the direction did not change.
    grad_norm : float
        ``||G||_2``, to turn ``l2`` into a relative change.
    """

    l2: float
    cosine: float
    grad_norm: float


def _default_layers(model):
    return [m for m in model.modules()
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]


def ics(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    lr: float,
    layers: Sequence[nn.Module] | None = None,
) -> list[LayerICS]:
    """Internal covariate shift of each layer as Santurkar et al. define it (their section 2.2).

    For layer ``i`` with weight ``W_i``, on one batch:

    * ``G = dL/dW_i`` at the current parameters, the gradient the layer would
      use for its update;
    * ``G' = dL/dW_i`` after every parameter *before* ``W_i`` has taken its
      gradient step ``w <- w - lr * dL/dw`` (same batch, ``W_i`` and the later
      layers unchanged).

    ``G'`` is the gradient the layer "should" follow given what the layers
    before it are about to do; the difference measures how much their update
    shifts this layer's optimisation problem.

    Parameters
    ----------
    model : torch.nn.Module
        Evaluated in its current mode; not modified.
    loss_fn : callable
        ``loss_fn(model(inputs), targets)`` returns a scalar tensor.
    inputs, targets : torch.Tensor
        One batch.
    lr : float
        Step size of the (plain SGD) update of the preceding parameters.
    layers : sequence of torch.nn.Module, optional
        Layers to measure, each with a trainable ``weight``. Default: every
        ``Linear`` and ``Conv`` module, in ``model.modules()`` order.

    Returns
    -------
    list of LayerICS
        One entry per layer, in the order given.

    Notes
    -----
    "Before" means earlier in ``model.named_parameters()`` order, which is the
    order of the forward pass for ``nn.Sequential`` models: a layer's own bias
    and the BatchNorm parameters after it are not preceding parameters.
    With ``lr=0`` nothing moves, so ``l2 == 0`` and ``cosine == 1``.
    """
    own = _trainable(model)
    names = list(own)
    position = {id(p): k for k, p in enumerate(own.values())}
    layers = _default_layers(model) if layers is None else list(layers)
    _, grads = loss_and_gradient(model, loss_fn, inputs, targets)
    results = []
    for layer in layers:
        weight = getattr(layer, "weight", None)
        if weight is None or id(weight) not in position:
            raise ValueError(f"layer {layer!r} has no trainable weight of this model")
        k = position[id(weight)]
        stepped = {name: own[name].detach() - lr * grads[j] for j, name in enumerate(names[:k])}
        _, grads_after = loss_and_gradient(model, loss_fn, inputs, targets, stepped)
        g, g_after = grads[k].flatten().double(), grads_after[k].flatten().double()
        norm, norm_after = float(g.norm()), float(g_after.norm())
        denom = norm * norm_after
        cosine = float(g @ g_after) / denom if denom > 0 else float("nan")
        results.append(LayerICS(float((g - g_after).norm()), cosine, norm))
    return results


# --------------------------------------------------------------------------------------
# The landscape along the gradient, Santurkar et al.'s Figure 4
# --------------------------------------------------------------------------------------


class GradientProbe(NamedTuple):
    """The loss and its gradient at points ``w - eta * g`` along the gradient ``g``.

    Attributes
    ----------
    step_sizes : ndarray of shape (k,)
        The steps ``eta`` probed (learning rate times the multiples), all > 0.
    losses : ndarray of shape (k,)
        ``L(w - eta g)``.
    grad_distances : ndarray of shape (k,)
        ``||grad L(w) - grad L(w - eta g)||_2``.
    loss_at_start : float
        ``L(w)``.
    grad_norm : float
        ``||g||_2 = ||grad L(w)||_2``.
    loss_range : float
        ``max - min`` of the loss over ``eta in {0} U step_sizes``: how much the
        loss varies along the step ("variation in loss").
    gradient_predictiveness : float
        ``max(grad_distances)``: how far the gradient changes along the step;
        small means the current gradient predicts the gradients ahead.
    beta_smoothness : float
        ``max(grad_distances / (eta ||g||))``: the "effective" beta-smoothness,
        a Lipschitz constant of the gradient measured along the step.
    loss_lipschitz : float
        ``max(|L(w - eta g) - L(w)| / (eta ||g||))``: a Lipschitz constant of
        the loss measured along the step.
    """

    step_sizes: np.ndarray
    losses: np.ndarray
    grad_distances: np.ndarray
    loss_at_start: float
    grad_norm: float
    loss_range: float
    gradient_predictiveness: float
    beta_smoothness: float
    loss_lipschitz: float


def probe_gradient_direction(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    lr: float,
    multiples: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
) -> GradientProbe:
    """Measure the landscape along the gradient, at steps that are multiples of ``lr``.

    With ``g = grad L(w)`` over all trainable parameters on one batch, the loss
    and the gradient are evaluated at ``w - eta g`` for ``eta = lr * multiple``
    (same batch, the model's current mode). This is Santurkar et al.'s
    Figure 4 measurement at one point of a training run.

    Parameters
    ----------
    model : torch.nn.Module
        Not modified (see :func:`loss_and_gradient`).
    loss_fn : callable
        ``loss_fn(model(inputs), targets)`` returns a scalar tensor.
    inputs, targets : torch.Tensor
        One batch.
    lr : float
        The learning rate, > 0.
    multiples : sequence of float, default=(0.5, 1, 2, 4)
        Step sizes in units of ``lr``, each > 0.

    Returns
    -------
    GradientProbe

    Notes
    -----
    On a quadratic ``L(w) = w^T A w / 2`` the gradient changes by
    ``eta A g`` along the step, so ``beta_smoothness = ||A g|| / ||g||``,
    the curvature seen along ``g`` (the largest eigenvalue of ``A`` when
    ``g`` is its eigenvector), whatever the step sizes.
    """
    steps = np.asarray(multiples, dtype=np.float64) * float(lr)
    if steps.ndim != 1 or steps.size == 0 or not np.all(steps > 0) or not np.all(np.isfinite(steps)):
        raise ValueError(
            f"lr * multiples must be a non-empty list of positive step sizes, got lr={lr!r}, "
            f"multiples={tuple(multiples)!r}"
        )
    own = _trainable(model)
    loss0, grads = loss_and_gradient(model, loss_fn, inputs, targets)
    g = torch.cat([x.flatten().double() for x in grads])
    g_norm = float(g.norm())
    losses, distances = [], []
    for eta in steps:
        moved = {name: p.detach() - float(eta) * grads[j] for j, (name, p) in enumerate(own.items())}
        loss, grads_moved = loss_and_gradient(model, loss_fn, inputs, targets, moved)
        g_moved = torch.cat([x.flatten().double() for x in grads_moved])
        losses.append(loss)
        distances.append(float((g - g_moved).norm()))
    losses, distances = np.array(losses), np.array(distances)
    travelled = steps * g_norm
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = float(np.max(distances / travelled)) if g_norm > 0 else 0.0
        lipschitz = float(np.max(np.abs(losses - loss0) / travelled)) if g_norm > 0 else 0.0
    all_losses = np.append(losses, loss0)
    return GradientProbe(
        step_sizes=steps,
        losses=losses,
        grad_distances=distances,
        loss_at_start=loss0,
        grad_norm=g_norm,
        loss_range=float(np.max(all_losses) - np.min(all_losses)),
        gradient_predictiveness=float(np.max(distances)),
        beta_smoothness=beta,
        loss_lipschitz=lipschitz,
    )


# --------------------------------------------------------------------------------------
# Networks and runs
# --------------------------------------------------------------------------------------


def add_noise_layers(model: nn.Sequential, generator: torch.Generator | int = 0) -> nn.Sequential:
    """A copy of ``model`` with a :class:`NoiseOnly` after every hidden ``Linear``: noise without BN.

    Parameters
    ----------
    model : torch.nn.Sequential
        E.g. ``bnlib.experiments.make_mlp(..., batchnorm=False)``. Every
        ``Linear`` except the last gets the noise on its output.
    generator : torch.Generator or int, default=0
        Shared by all the noise layers.

    Returns
    -------
    torch.nn.Sequential
        New modules (deep copies); ``model`` is not changed. The biases stay,
        so this differs from the plain network by the noise alone.
    """
    generator = _make_generator(generator)
    linears = [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model has no nn.Linear layer to put noise after")
    layers = []
    for i, module in enumerate(model):
        module = copy.deepcopy(module)
        layers.append(module)
        if i in linears[:-1]:
            layers.append(NoiseOnly(module.out_features, generator=generator))
    return nn.Sequential(*layers)


class TrainingMeasurements(NamedTuple):
    """Landscape and ICS measurements taken along one training run.

    Attributes
    ----------
    steps : ndarray of shape (n_points,)
        Training steps (parameter updates made) at each measurement.
    probes : list of GradientProbe
        :func:`probe_gradient_direction` at each point.
    ics : ndarray of shape (n_points, n_layers, 3)
        :func:`ics` at each point: ``l2``, ``cosine``, ``grad_norm`` per layer
        (empty second axis when ICS was not measured).
    test_accuracy : ndarray of shape (n_points,)
        Test accuracy of the model at each point (eval mode).
    """

    steps: np.ndarray
    probes: list
    ics: np.ndarray
    test_accuracy: np.ndarray

    def series(self, name: str) -> np.ndarray:
        """One :class:`GradientProbe` field over the run, e.g. ``series("beta_smoothness")``."""
        return np.array([getattr(p, name) for p in self.probes], dtype=np.float64)


def measure_during_training(
    model: nn.Module,
    data,
    *,
    steps: int,
    measure_every: int,
    batch_size: int,
    lr: float,
    seed: int,
    multiples: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
    measure_ics: bool = True,
) -> TrainingMeasurements:
    """Train with plain SGD and measure the landscape (and ICS) every ``measure_every`` steps.

    The run is :func:`bnlib.experiments.train` in segments of
    ``measure_every`` steps. Before the first segment and after each one,
    a fresh training batch of ``batch_size`` examples is drawn and
    :func:`probe_gradient_direction` (and :func:`ics`) is measured on it with
    the cross-entropy loss, in training mode, at step size ``lr``.

    Parameters
    ----------
    model : torch.nn.Module
        Trained in place.
    data : bnlib.data.Dataset
    steps, measure_every, batch_size : int
        Total updates, updates between measurements, examples per batch.
    lr : float
        Learning rate of SGD (no momentum) and of the measurements.
    seed : int
        Seeds the measurement batches (``torch.Generator().manual_seed(seed)``)
        and, as ``seed * 1000 + k``, the batch order of segment ``k``.
    multiples : sequence of float, default=(0.5, 1, 2, 4)
        Step sizes of the probe in units of ``lr``.
    measure_ics : bool, default=True

    Returns
    -------
    TrainingMeasurements
        If a segment diverges, the measurements stop there.

    Notes
    -----
    Plain SGD keeps no state between steps, so training in segments follows
    the same rule as one long run; only the order of the batches is drawn per
    segment.
    """
    from . import experiments  # torch training harness; imported here to keep this module light

    if steps % measure_every:
        raise ValueError(f"steps={steps} must be a multiple of measure_every={measure_every}")
    x_train = torch.as_tensor(np.asarray(data.x_train), dtype=torch.float32)
    y_train = torch.as_tensor(np.asarray(data.y_train), dtype=torch.int64)
    batches = torch.Generator().manual_seed(int(seed))
    loss_fn = nn.functional.cross_entropy
    at, probes, shifts, accuracy = [], [], [], []

    def measure(step):
        model.train()
        idx = torch.randperm(x_train.shape[0], generator=batches)[:batch_size]
        xb, yb = x_train[idx], y_train[idx]
        at.append(step)
        probes.append(probe_gradient_direction(model, loss_fn, xb, yb, lr, multiples))
        if measure_ics:
            shifts.append([tuple(layer) for layer in ics(model, loss_fn, xb, yb, lr)])

    for segment in range(steps // measure_every):
        measure(segment * measure_every)
        history = experiments.train(
            model, data, steps=measure_every, batch_size=batch_size, lr=lr,
            seed=int(seed) * 1000 + segment, eval_every=measure_every,
        )
        if segment == 0:
            accuracy.append(float(history.test_accuracy[0]))
        accuracy.append(history.final_test_accuracy)
        if history.diverged:
            break
    else:
        measure(steps)
    accuracy = accuracy[: len(at)]
    shifts = np.array(shifts, dtype=np.float64) if measure_ics else np.zeros((len(at), 0, 3))
    return TrainingMeasurements(np.array(at), probes, shifts, np.array(accuracy))
