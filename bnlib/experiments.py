"""A small, readable PyTorch training harness for the book's experiments.

Chapter 9 ("Does it work?") trains many small multilayer perceptrons with and
without Batch Normalization and compares them. This module holds what those
runs share:

* :func:`make_mlp` builds ``Linear -> [BN] -> activation`` blocks and a final
  ``Linear``, initialised from an explicit :class:`torch.Generator`;
* :func:`train` runs mini-batch SGD (or Adam) on a :class:`bnlib.data.Dataset`
  and returns a :class:`History` of losses, accuracies, weight norms, optional
  gradient norms, and the percentiles of one probed unit;
* :func:`run_seeds`, :func:`spread` and :func:`steps_to_reach` repeat a run over
  seeds and summarise it as mean, minimum and maximum.

This module imports torch, so ``import bnlib`` does not import it; use
``from bnlib import experiments``. Nothing here reads or changes torch's or
NumPy's global random state when a generator and a seed are given.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "PERCENTILES",
    "History",
    "default_bn_layer",
    "make_mlp",
    "linear_layers",
    "train",
    "run_seeds",
    "spread",
    "steps_to_reach",
    "StackedResult",
    "train_stacked",
]

#: The activations :func:`make_mlp` accepts, by name ("linear": none, a deep linear network).
ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "linear": nn.Identity}

#: The percentiles a probe records, as in Figure 1 of Ioffe and Szegedy (2015).
PERCENTILES = (15.0, 50.0, 85.0)

# Runs of at least this many steps show a progress bar when ``progress=None``.
_LONG_RUN_STEPS = 20_000
# By default, training accuracy is measured on at most this many training
# examples (all of the digits; a fixed subset of MNIST's 60,000).
_MAX_TRAIN_EVAL = 10_000


def _check_positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def default_bn_layer():
    """The Batch Normalization layer :func:`make_mlp` uses unless told otherwise.

    Returns
    -------
    callable
        :class:`bnlib.nn.BatchNorm1d`, whose arithmetic is ``bnlib``'s, if it
        imports; otherwise :class:`torch.nn.BatchNorm1d`. Both take
        ``num_features`` and behave identically (same buffers, same train/eval
        semantics); chapters 9 and 10 train with ``bnlib``'s, so their figures
        come from the formulas the book derives.
    """
    try:
        from .nn import BatchNorm1d
    except ImportError:  # pragma: no cover - bnlib.nn ships with bnlib
        return nn.BatchNorm1d
    return BatchNorm1d


def make_mlp(
    in_features,
    hidden=(100, 100, 100),
    out_features=10,
    activation="sigmoid",
    batchnorm=False,
    bn_layer=None,
    weight_std=None,
    generator=None,
):
    """A multilayer perceptron: ``Linear -> [BN] -> activation`` per hidden layer, then ``Linear``.

    Parameters
    ----------
    in_features : int
        Size of each input (64 for the 8 x 8 digits, 784 for MNIST).
    hidden : sequence of int, default=(100, 100, 100)
        Width of each hidden layer; the default is the network of the BN
        paper's Figure 1.
    out_features : int, default=10
        Number of classes (the output layer gives logits).
    activation : {"sigmoid", "tanh", "relu", "linear"}, default="sigmoid"
        ``"linear"`` puts ``nn.Identity`` in the activation's place.
    batchnorm : bool, default=False
        Put a BN layer between each hidden ``Linear`` and its activation. The
        hidden ``Linear`` layers then have no bias: BN's ``beta`` takes its
        role. The output layer always has a bias and no BN.
    bn_layer : callable, optional
        ``bn_layer(num_features) -> nn.Module``; default :func:`default_bn_layer`
        (``bnlib.nn.BatchNorm1d``). Pass ``torch.nn.BatchNorm1d`` for speed.
    weight_std : float, optional
        If given, every ``Linear`` weight (output layer included) is drawn
        from ``N(0, weight_std**2)`` and every bias is zero. If omitted, torch's
        default initialisation: weights and biases uniform in
        ``(-1/sqrt(fan_in), 1/sqrt(fan_in))``.
    generator : torch.Generator, optional
        The source of the initial weights. Without it, torch's global random
        state is used, as torch's own constructors do.

    Returns
    -------
    torch.nn.Sequential
        Modules in order, e.g. for ``batchnorm=True`` and three hidden layers:
        ``[Linear, BN, Sigmoid, Linear, BN, Sigmoid, Linear, BN, Sigmoid,
        Linear]``; without BN: ``[Linear, Sigmoid] * 3 + [Linear]``. The index
        of a module in this list is what :func:`train`'s ``probe`` refers to.

    Examples
    --------
    >>> import torch
    >>> from bnlib.experiments import make_mlp
    >>> model = make_mlp(64, hidden=(8, 8), batchnorm=True, bn_layer=torch.nn.BatchNorm1d,
    ...                  generator=torch.Generator().manual_seed(0))
    >>> [type(m).__name__ for m in model]
    ['Linear', 'BatchNorm1d', 'Sigmoid', 'Linear', 'BatchNorm1d', 'Sigmoid', 'Linear']
    """
    in_features = _check_positive_int("in_features", in_features)
    out_features = _check_positive_int("out_features", out_features)
    if isinstance(hidden, numbers.Integral):
        raise TypeError(f"hidden must be a sequence of layer widths such as (100, 100, 100), got {hidden!r}")
    hidden = tuple(_check_positive_int("each hidden width", h) for h in hidden)
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if weight_std is not None:
        if isinstance(weight_std, bool) or not isinstance(weight_std, numbers.Real) \
                or not math.isfinite(weight_std) or weight_std <= 0:
            raise ValueError(f"weight_std must be a positive finite number or None, got {weight_std!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if bn_layer is None:
        bn_layer = default_bn_layer()
    elif not callable(bn_layer):
        raise TypeError(f"bn_layer must be a callable num_features -> nn.Module, got {bn_layer!r}")

    def linear(fan_in, fan_out, bias):
        if generator is None and weight_std is None:
            return nn.Linear(fan_in, fan_out, bias=bias)  # torch's default, global RNG
        # Built without drawing from torch's global random state; initialised below.
        return nn.utils.skip_init(nn.Linear, fan_in, fan_out, bias=bias)

    layers = []
    fan_in = in_features
    for width in hidden:
        layers.append(linear(fan_in, width, bias=not batchnorm))
        if batchnorm:
            layers.append(bn_layer(width))
        layers.append(ACTIVATIONS[activation]())
        fan_in = width
    layers.append(linear(fan_in, out_features, bias=True))
    model = nn.Sequential(*layers)

    if generator is not None or weight_std is not None:
        with torch.no_grad():
            for layer in linear_layers(model):
                if weight_std is not None:
                    layer.weight.normal_(0.0, float(weight_std), generator=generator)
                    if layer.bias is not None:
                        layer.bias.zero_()
                else:  # torch's default scheme, drawn from `generator`
                    bound = 1.0 / math.sqrt(layer.in_features)
                    layer.weight.uniform_(-bound, bound, generator=generator)
                    if layer.bias is not None:
                        layer.bias.uniform_(-bound, bound, generator=generator)
    return model


def linear_layers(model):
    """The ``nn.Linear`` modules of ``model`` in order (hidden layers first, output last)."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


@dataclass
class History:
    """What :func:`train` measured.

    Attributes
    ----------
    train_loss : ndarray of shape (n_steps_run,)
        The mini-batch cross-entropy loss at every step, before that step's update.
    eval_steps : ndarray of shape (n_evals,)
        The steps at which the model was evaluated: 0 (before training), every
        ``eval_every`` steps, and the last step run.
    test_accuracy, train_accuracy : ndarray of shape (n_evals,)
        Fraction of correctly classified test / training images, in eval mode
        (BN uses its running statistics); see ``train_eval_size``.
    test_loss, train_eval_loss : ndarray of shape (n_evals,)
        Mean cross-entropy on the test / training images, in eval mode.
    weight_norms : ndarray of shape (n_evals, n_linear)
        Frobenius norm of each ``Linear`` weight (hidden layers first).
    probe : ndarray of shape (n_evals, 3) or None
        The 15th, 50th and 85th percentiles (:data:`PERCENTILES`) of the probed
        unit's output over the test images, in eval mode.
    grad_norms : ndarray of shape (n_steps_run, n_linear) or None
        Norm of each ``Linear`` weight's gradient at every step
        (``record_grads=True``).
    diverged : bool
        True if the loss became NaN or infinite; training stopped there.
    diverged_at : int or None
        The step whose loss was not finite.
    config : dict
        The arguments of the run (learning rate, batch size, seed, ...).
    seconds : float
        Wall-clock time of the run.
    """

    train_loss: np.ndarray
    eval_steps: np.ndarray
    test_accuracy: np.ndarray
    train_accuracy: np.ndarray
    test_loss: np.ndarray
    train_eval_loss: np.ndarray
    weight_norms: np.ndarray
    probe: np.ndarray | None = None
    grad_norms: np.ndarray | None = None
    diverged: bool = False
    diverged_at: int | None = None
    config: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def steps_run(self) -> int:
        """Number of parameter updates made."""
        return int(self.eval_steps[-1])

    @property
    def final_test_accuracy(self) -> float:
        """Test accuracy at the last evaluation (chance level for a run that diverged)."""
        return float(self.test_accuracy[-1])


def _as_tensors(data, device):
    try:
        x_train, y_train, x_test, y_test = data
    except (TypeError, ValueError) as err:
        raise TypeError(
            "data must be a bnlib.data.Dataset (x_train, y_train, x_test, y_test), "
            f"got {type(data).__name__}"
        ) from err
    arrays = [np.asarray(a) for a in (x_train, y_train, x_test, y_test)]
    if arrays[0].ndim != 2 or arrays[2].ndim != 2:
        raise ValueError(
            f"x_train and x_test must be 2-D (n_samples, n_features), got shapes "
            f"{arrays[0].shape} and {arrays[2].shape}"
        )
    if arrays[0].shape[0] != arrays[1].shape[0] or arrays[2].shape[0] != arrays[3].shape[0]:
        raise ValueError(
            f"each x must have one label per row: x_train {arrays[0].shape} vs y_train "
            f"{arrays[1].shape}, x_test {arrays[2].shape} vs y_test {arrays[3].shape}"
        )
    x_tr, x_te = (torch.as_tensor(a, dtype=torch.float32, device=device) for a in arrays[0::2])
    y_tr, y_te = (torch.as_tensor(a, dtype=torch.int64, device=device) for a in arrays[1::2])
    return x_tr, y_tr, x_te, y_te


def _make_optimizer(name, params, lr, momentum):
    if name == "sgd":
        # foreach: one fused update for all parameters (torch uses it by default on GPUs only).
        return torch.optim.SGD(params, lr=lr, momentum=momentum, foreach=True)
    if name == "adam":
        if momentum:
            raise ValueError("momentum applies to optimizer='sgd' only; Adam has its own betas")
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")


class _Batches:
    """Mini-batches of indices: a fresh random permutation each epoch, the remainder dropped."""

    def __init__(self, n, batch_size, generator, device):
        self.n, self.batch_size, self.generator, self.device = n, batch_size, generator, device
        self.order, self.position = None, n

    def next(self):
        if self.position + self.batch_size > self.n:
            self.order = torch.randperm(self.n, generator=self.generator).to(self.device)
            self.position = 0
        batch = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return batch


@torch.no_grad()
def _evaluate(model, x, y):
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y).item()
    accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    return loss, accuracy


def train(
    model,
    data,
    *,
    steps,
    batch_size,
    lr,
    optimizer="sgd",
    momentum=0.0,
    seed,
    device="cpu",
    eval_every=None,
    train_eval_size=None,
    probe=None,
    record_grads=False,
    progress=None,
):
    """Train ``model`` with mini-batch cross-entropy and record a :class:`History`.

    Parameters
    ----------
    model : torch.nn.Module
        Maps ``(batch, n_features)`` float32 inputs to ``(batch, n_classes)``
        logits, e.g. from :func:`make_mlp`. Trained in place.
    data : bnlib.data.Dataset
        ``(x_train, y_train, x_test, y_test)`` NumPy arrays, converted once to
        tensors on ``device``.
    steps : int
        Number of parameter updates.
    batch_size : int
        Examples per update, at most the number of training examples. Each
        epoch visits the training set in a fresh random order; the incomplete
        last batch of an epoch is dropped.
    lr : float
        Learning rate (positive).
    optimizer : {"sgd", "adam"}, default="sgd"
    momentum : float, default=0.0
        SGD's momentum.
    seed : int
        Seeds the :class:`torch.Generator` that orders the training examples.
        The same model, data and seed give an identical history.
    device : str or torch.device, default="cpu"
    eval_every : int, optional
        Evaluate every this many steps (and always before the first and after
        the last step). Default: ``max(1, steps // 50)``.
    train_eval_size : int, optional
        Measure ``train_accuracy`` and ``train_eval_loss`` on the first this
        many training examples (a fixed random subset, since
        :func:`bnlib.data.load_digits` shuffles). Default: all of them, up to
        10,000. Smaller is faster; the test set is always used in full.
    probe : (int, int), optional
        ``(module_index, unit)``: record the 15/50/85th percentiles of output
        column ``unit`` of ``model[module_index]`` over the test images at every
        evaluation, through a forward hook. For :func:`make_mlp` models the
        input of the last hidden activation is module ``-3`` (the last
        hidden ``Linear``, or the BN layer after it).
    record_grads : bool, default=False
        Record the norm of every ``Linear`` weight's gradient at every step.
    progress : bool, optional
        Show a ``tqdm`` progress bar; by default only for runs of 20,000 steps
        or more.

    Returns
    -------
    History

    Notes
    -----
    A step whose loss is NaN or infinite ends the run: the history is cut
    there, ``diverged`` is set, and the last evaluation reports chance-level
    accuracy (0.1 for ten classes) and infinite loss, without raising.
    Evaluation happens in ``model.eval()`` mode without gradients; training
    steps in ``model.train()`` mode.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    steps = _check_positive_int("steps", steps)
    batch_size = _check_positive_int("batch_size", batch_size)
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {seed!r}")
    eval_every = max(1, steps // 50) if eval_every is None else _check_positive_int("eval_every", eval_every)
    train_eval_size = _MAX_TRAIN_EVAL if train_eval_size is None else _check_positive_int(
        "train_eval_size", train_eval_size)
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}") from err

    x_train, y_train, x_test, y_test = _as_tensors(data, device)
    n_train = x_train.shape[0]
    if batch_size > n_train:
        raise ValueError(f"batch_size={batch_size} exceeds the {n_train} training examples")
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if has_bn and batch_size < 2:
        raise ValueError(
            "a model with Batch Normalization needs batch_size >= 2 in training "
            "(torch: 'Expected more than 1 value per channel when training')"
        )
    model.to(device)
    optim = _make_optimizer(optimizer, model.parameters(), float(lr), float(momentum))
    linears = linear_layers(model)
    # Training accuracy on a fixed subset: all of a small training set by default.
    x_train_eval, y_train_eval = x_train[:train_eval_size], y_train[:train_eval_size]

    probe_values = []
    handle = None
    if probe is not None:
        handle = _attach_probe(model, probe, probe_values)

    generator = torch.Generator().manual_seed(int(seed))
    batches = _Batches(n_train, batch_size, generator, device)
    log = {k: [] for k in ("eval_steps", "test_accuracy", "train_accuracy", "test_loss",
                           "train_eval_loss", "weight_norms")}
    train_loss, grad_norms = [], []
    diverged_at = None

    def evaluate(step):
        model.eval()
        if handle is not None:
            handle.active = True
        test_loss, test_acc = _evaluate(model, x_test, y_test)
        if handle is not None:
            handle.active = False
        train_eval_loss, train_acc = _evaluate(model, x_train_eval, y_train_eval)
        model.train()
        log["eval_steps"].append(step)
        log["test_loss"].append(test_loss)
        log["test_accuracy"].append(test_acc)
        log["train_eval_loss"].append(train_eval_loss)
        log["train_accuracy"].append(train_acc)
        log["weight_norms"].append([float(layer.weight.detach().norm()) for layer in linears])

    if progress is None:
        progress = steps >= _LONG_RUN_STEPS
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="training", leave=False)

    start = time.perf_counter()
    model.train()
    evaluate(0)
    try:
        for step in range(1, steps + 1):
            idx = batches.next()
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            value = loss.item()
            if not math.isfinite(value):
                diverged_at = step
                break
            optim.zero_grad(set_to_none=True)
            loss.backward()
            if record_grads:
                grad_norms.append([float(layer.weight.grad.norm()) for layer in linears])
            optim.step()
            train_loss.append(value)
            if step % eval_every == 0 or step == steps:
                evaluate(step)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if handle is not None:
            handle.remove()

    if diverged_at is not None:
        _record_divergence(log, probe_values if probe is not None else None, diverged_at - 1,
                           n_classes=_n_classes(model, x_test), n_layers=len(linears))

    return History(
        train_loss=np.asarray(train_loss, dtype=np.float64),
        eval_steps=np.asarray(log["eval_steps"], dtype=np.int64),
        test_accuracy=np.asarray(log["test_accuracy"]),
        train_accuracy=np.asarray(log["train_accuracy"]),
        test_loss=np.asarray(log["test_loss"]),
        train_eval_loss=np.asarray(log["train_eval_loss"]),
        weight_norms=np.asarray(log["weight_norms"]),
        probe=np.asarray(probe_values) if probe is not None else None,
        grad_norms=np.asarray(grad_norms).reshape(-1, len(linears)) if record_grads else None,
        diverged=diverged_at is not None,
        diverged_at=diverged_at,
        config=dict(steps=steps, batch_size=batch_size, lr=float(lr), optimizer=optimizer,
                    momentum=float(momentum), seed=int(seed), device=str(device),
                    eval_every=eval_every, train_eval_size=int(x_train_eval.shape[0]), probe=probe),
        seconds=time.perf_counter() - start,
    )


def _n_classes(model, x):
    with torch.no_grad():
        model.eval()
        n = model(x[:2]).shape[1]
        model.train()
    return n


def _record_divergence(log, probe_values, step, n_classes, n_layers):
    """Close a diverged run's log with one evaluation at chance level."""
    if log["eval_steps"][-1] == step:  # this step was already evaluated: replace it
        for values in log.values():
            values.pop()
        if probe_values is not None:
            probe_values.pop()
    log["eval_steps"].append(step)
    for key in ("test_accuracy", "train_accuracy"):
        log[key].append(1.0 / n_classes)
    for key in ("test_loss", "train_eval_loss"):
        log[key].append(math.inf)
    log["weight_norms"].append([math.nan] * n_layers)
    if probe_values is not None:
        probe_values.append([math.nan] * len(PERCENTILES))


class _ProbeHandle:
    def __init__(self, hook_handle):
        self.hook_handle, self.active = hook_handle, False

    def remove(self):
        self.hook_handle.remove()


def _attach_probe(model, probe, sink):
    try:
        module_index, unit = probe
    except (TypeError, ValueError) as err:
        raise TypeError(f"probe must be a pair (module_index, unit), got {probe!r}") from err
    if not isinstance(model, nn.Sequential):
        raise TypeError("probe needs an nn.Sequential model (its modules are addressed by index)")
    if not isinstance(module_index, numbers.Integral) or not -len(model) <= module_index < len(model):
        raise ValueError(
            f"probe module_index must be an integer in [-{len(model)}, {len(model) - 1}], got {module_index!r}"
        )
    module = model[module_index]
    width = getattr(module, "out_features", None) or getattr(module, "num_features", None)
    if not isinstance(unit, numbers.Integral) or unit < 0 or (width is not None and unit >= width):
        raise ValueError(
            f"probe unit must be an integer in [0, {width}) for {type(module).__name__}, got {unit!r}"
        )
    holder = {}

    def hook(_module, _inputs, output):
        if holder["handle"].active:
            column = output.detach()[:, unit].double().cpu().numpy()
            sink.append(np.percentile(column, PERCENTILES).tolist())

    holder["handle"] = _ProbeHandle(module.register_forward_hook(hook))
    return holder["handle"]


def run_seeds(fn: Callable[[int], Any], seeds: Iterable[int]) -> list:
    """``[fn(seed) for seed in seeds]``, after checking there are seeds.

    Parameters
    ----------
    fn : callable
        ``fn(seed) -> result``; it should build its model and draw its batches
        from that seed alone.
    seeds : iterable of int

    Returns
    -------
    list
        One result per seed, in order.
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("run_seeds needs at least one seed")
    return [fn(seed) for seed in seeds]


def spread(values: Sequence[Sequence[float]] | np.ndarray):
    """Mean, minimum and maximum over seeds (axis 0).

    Parameters
    ----------
    values : array-like of shape (n_seeds, ...)

    Returns
    -------
    mean, low, high : ndarray of shape (...)
        With three seeds, minimum and maximum show every run; NaNs propagate.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 0 or values.shape[0] == 0:
        raise ValueError(f"spread needs an array whose first axis runs over seeds, got shape {values.shape}")
    return values.mean(axis=0), values.min(axis=0), values.max(axis=0)


def steps_to_reach(history: History, threshold: float, metric: str = "test_accuracy"):
    """The first evaluation step at which ``metric`` reaches ``threshold``, or None.

    Parameters
    ----------
    history : History
    threshold : float
    metric : str, default="test_accuracy"
        Any per-evaluation array of :class:`History` (``train_accuracy``, ...).

    Returns
    -------
    int or None
        None if the run never reached it. The resolution is ``eval_every``.
    """
    values = np.asarray(getattr(history, metric))
    if values.shape != history.eval_steps.shape:
        raise ValueError(f"{metric!r} is not recorded at the evaluation steps")
    hits = np.flatnonzero(values >= threshold)
    return int(history.eval_steps[hits[0]]) if hits.size else None


# --------------------------------------------------------------------------------------
# Many small runs at once
# --------------------------------------------------------------------------------------


@dataclass
class StackedResult:
    """What :func:`train_stacked` measured, one row per model.

    Attributes
    ----------
    train_loss : ndarray of shape (n_models, n_steps)
        Mini-batch loss of every model at every step (NaN after a model diverged).
    test_accuracy, train_accuracy, test_loss, train_eval_loss : ndarray of shape (n_models,)
        At the end of training, in eval mode; a diverged model counts as chance
        level with infinite loss, as in :func:`train`.
    diverged : ndarray of bool, shape (n_models,)
    config : dict
    seconds : float
    """

    train_loss: np.ndarray
    test_accuracy: np.ndarray
    train_accuracy: np.ndarray
    test_loss: np.ndarray
    train_eval_loss: np.ndarray
    diverged: np.ndarray
    config: dict = field(default_factory=dict)
    seconds: float = 0.0


def _layout(module):
    """What must agree between stacked models: type, parameter shapes, bias or not."""
    return (type(module), tuple((name, tuple(p.shape)) for name, p in module.named_parameters()))


class _Stacked(nn.Module):
    """``K`` copies of one :func:`make_mlp` architecture, evaluated side by side.

    Linear weights are stacked into ``(K, out, in)`` tensors and applied with one
    batched matrix product; each BN layer of width ``C`` becomes one BN layer of
    width ``K * C`` (per-channel statistics keep the models independent);
    activations act elementwise. Input and output have shape ``(K, batch, features)``.
    """

    def __init__(self, models):
        super().__init__()
        first = models[0]
        layouts = {tuple(_layout(m) for m in model) for model in models}
        if len(layouts) != 1:
            raise ValueError("train_stacked needs models of one architecture (module types, "
                             f"shapes and biases); got {len(layouts)} different ones")
        self.kinds, self.weights, self.biases = [], nn.ParameterList(), nn.ParameterList()
        self.norms, self.activations = nn.ModuleList(), nn.ModuleList()
        for position, module in enumerate(first):
            same = [m[position] for m in models]
            if isinstance(module, nn.Linear):
                self.kinds.append(("linear", len(self.weights)))
                self.weights.append(torch.stack([m.weight.detach() for m in same]).clone())
                bias = [m.bias for m in same]
                self.biases.append(None if bias[0] is None else
                                   torch.stack([b.detach() for b in bias]).clone())
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                self.kinds.append(("norm", len(self.norms)))
                wide = type(module)(module.num_features * len(models), eps=module.eps,
                                    momentum=module.momentum)
                with torch.no_grad():
                    wide.weight.copy_(torch.cat([m.weight for m in same]))
                    wide.bias.copy_(torch.cat([m.bias for m in same]))
                self.norms.append(wide)
            else:
                self.kinds.append(("activation", len(self.activations)))
                self.activations.append(module)

    def forward(self, x):
        n_models, batch = x.shape[:2]
        for kind, k in self.kinds:
            if kind == "linear":
                bias = self.biases[k]
                x = torch.bmm(x, self.weights[k].transpose(1, 2))
                x = x if bias is None else x + bias[:, None, :]
            elif kind == "norm":  # (K, N, C) -> (N, K*C): channel k*C + c is model k's unit c
                wide = x.transpose(0, 1).reshape(batch, -1)
                x = self.norms[k](wide).reshape(batch, n_models, -1).transpose(0, 1)
            else:
                x = self.activations[k](x)
        return x


@torch.no_grad()
def _evaluate_stacked(stacked, x, y):
    n_models = len(stacked.weights[0])
    logits = stacked(x.expand(n_models, *x.shape))
    losses = nn.functional.cross_entropy(
        logits.flatten(0, 1), y.repeat(n_models), reduction="none").view(n_models, -1)
    correct = (logits.argmax(dim=2) == y).double().mean(dim=1)
    return losses.double().mean(dim=1).numpy(), correct.numpy()


def train_stacked(models, data, *, steps, batch_size, lrs, seeds, train_eval_size=None):
    """Train several :func:`make_mlp` models of one architecture at once, with plain SGD.

    Model ``k`` follows exactly the rule of :func:`train` with learning rate
    ``lrs[k]`` and batch order from seed ``seeds[k]``: same mini-batches, same
    updates, up to float32 rounding. The models run side by side in one batched
    network, so a step of ``K`` small models costs little more than a step of one
    (at small batches, Python overhead dominates). The models themselves are not
    changed.

    Parameters
    ----------
    models : sequence of torch.nn.Sequential
        From :func:`make_mlp`, all with the same architecture (BN layers of any
        class with torch's ``_BatchNorm`` interface, e.g. ``bnlib.nn.BatchNorm1d``).
    data : bnlib.data.Dataset
    steps, batch_size : int
    lrs : sequence of float
        One learning rate per model.
    seeds : sequence of int
        One batch-order seed per model, as ``seed`` in :func:`train`.
    train_eval_size : int, optional
        As in :func:`train`.

    Returns
    -------
    StackedResult

    Notes
    -----
    The step minimises ``sum_k lrs[k] * loss_k`` with unit step size: the
    gradient of each model's parameters is its own loss gradient times its own
    learning rate, which is what SGD would apply. A model whose loss is not
    finite stops there: its term is dropped from the sum and it is reported at
    chance level.
    """
    models = list(models)
    n_models = len(models)
    if n_models == 0:
        raise ValueError("train_stacked needs at least one model")
    lrs = torch.as_tensor([float(lr) for lr in lrs])
    seeds = [int(s) for s in seeds]
    if len(lrs) != n_models or len(seeds) != n_models:
        raise ValueError(f"need one learning rate and one seed per model: {n_models} models, "
                         f"{len(lrs)} learning rates, {len(seeds)} seeds")
    if not torch.all(torch.isfinite(lrs) & (lrs > 0)):
        raise ValueError(f"learning rates must be positive and finite, got {lrs.tolist()}")
    steps = _check_positive_int("steps", steps)
    batch_size = _check_positive_int("batch_size", batch_size)
    x_train, y_train, x_test, y_test = _as_tensors(data, "cpu")
    if batch_size > x_train.shape[0]:
        raise ValueError(f"batch_size={batch_size} exceeds the {x_train.shape[0]} training examples")
    train_eval_size = _MAX_TRAIN_EVAL if train_eval_size is None else _check_positive_int(
        "train_eval_size", train_eval_size)
    stacked = _Stacked(models)
    if stacked.norms and batch_size < 2:
        raise ValueError("a model with Batch Normalization needs batch_size >= 2 in training")
    params = [p for p in stacked.parameters() if p.requires_grad]
    orders = [_Batches(x_train.shape[0], batch_size, torch.Generator().manual_seed(s), "cpu")
              for s in seeds]
    alive = torch.ones(n_models, dtype=torch.bool)
    losses = np.full((n_models, steps), np.nan)
    start = time.perf_counter()
    stacked.train()
    for step in range(steps):
        idx = torch.stack([order.next() for order in orders])  # (K, batch)
        logits = stacked(x_train[idx])
        loss = nn.functional.cross_entropy(
            logits.flatten(0, 1), y_train[idx].flatten(), reduction="none"
        ).view(n_models, batch_size).mean(dim=1)
        alive &= torch.isfinite(loss.detach())
        losses[:, step] = torch.where(alive, loss.detach(), torch.nan).numpy()
        if not alive.any():
            break
        for p in params:
            p.grad = None
        torch.where(alive, lrs * loss, 0.0).sum().backward()
        with torch.no_grad():
            torch._foreach_sub_(params, [p.grad for p in params])
    stacked.eval()
    test_loss, test_acc = _evaluate_stacked(stacked, x_test, y_test)
    train_loss, train_acc = _evaluate_stacked(
        stacked, x_train[:train_eval_size], y_train[:train_eval_size])
    dead = ~alive.numpy()
    n_classes = logits.shape[-1]
    for values, fill in ((test_acc, 1.0 / n_classes), (train_acc, 1.0 / n_classes),
                         (test_loss, np.inf), (train_loss, np.inf)):
        values[dead] = fill
    return StackedResult(
        train_loss=losses, test_accuracy=test_acc, train_accuracy=train_acc,
        test_loss=test_loss, train_eval_loss=train_loss, diverged=dead,
        config=dict(steps=steps, batch_size=batch_size, lrs=lrs.tolist(), seeds=seeds,
                    train_eval_size=int(min(train_eval_size, x_train.shape[0]))),
        seconds=time.perf_counter() - start,
    )
