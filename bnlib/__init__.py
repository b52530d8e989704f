"""bnlib: reference implementations of feature scaling, whitening and Batch Normalization.

The core (this package's top level) imports numpy only. PyTorch modules live in
:mod:`bnlib.nn`, plotting in :mod:`bnlib.viz`; import them explicitly.
Initialisers live in :mod:`bnlib.init` (``bnlib.init.he_normal(...)``).
"""

from . import data, init
from .activations import relu, relu_grad, sigmoid, sigmoid_grad, tanh, tanh_grad
from .batchnorm import (
    BatchNormCache,
    batchnorm_backward,
    batchnorm_backward_graph,
    batchnorm_forward,
    batchnorm_inference,
    fold_batchnorm,
    population_statistics,
    update_running_stats,
)
from .gradcheck import numerical_gradient, relative_error
from .normalization import (
    batchrenorm_backward,
    batchrenorm_forward,
    groupnorm_backward,
    groupnorm_forward,
    instancenorm_backward,
    instancenorm_forward,
    layernorm_backward,
    layernorm_forward,
)
from .scaling import center, min_max_scale, standardize
from .whitening import covariance, decorrelate, pca_whiten, whitening_matrix, zca_whiten

__version__ = "0.1.0"

__all__ = [
    "data",
    "init",
    "center", "standardize", "min_max_scale",
    "covariance", "whitening_matrix", "pca_whiten", "zca_whiten", "decorrelate",
    "BatchNormCache", "batchnorm_forward", "batchnorm_backward", "batchnorm_backward_graph",
    "batchnorm_inference", "update_running_stats", "population_statistics", "fold_batchnorm",
    "sigmoid", "tanh", "relu", "sigmoid_grad", "tanh_grad", "relu_grad",
    "numerical_gradient", "relative_error",
    "layernorm_forward", "layernorm_backward", "instancenorm_forward", "instancenorm_backward",
    "groupnorm_forward", "groupnorm_backward", "batchrenorm_forward", "batchrenorm_backward",
]
