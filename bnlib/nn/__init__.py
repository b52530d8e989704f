"""PyTorch modules whose arithmetic is ``bnlib``'s (this subpackage imports torch).

Its files mirror ``torch.nn``'s: :mod:`bnlib.nn.batchnorm` holds the drop-in
``BatchNorm1d/2d/3d`` and their autograd Functions;
:mod:`bnlib.nn.normalization` the rest of the normalization family. ``from bnlib.nn import
BatchNorm1d`` keeps working whichever file a module lives in.
"""

from .batchnorm import (
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    BatchNormFunction,
    BatchNormInferenceFunction,
    batch_norm,
)
from .normalization import (
    BatchRenorm1d,
    BatchRenorm2d,
    DecorrelatedBatchNorm,
    GroupNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    LayerNorm,
)

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "BatchNormFunction",
    "BatchNormInferenceFunction",
    "batch_norm",
    "LayerNorm",
    "GroupNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "BatchRenorm1d",
    "BatchRenorm2d",
    "DecorrelatedBatchNorm",
]

# Part IV: Batch Normalization across processes (torch.distributed) and ghost batches.
from .distributed import (  # noqa: E402
    GhostBatchNorm,
    SyncBatchNorm,
    SyncBatchNormFunction,
)

__all__ += ["SyncBatchNorm", "SyncBatchNormFunction", "GhostBatchNorm"]
