"""bnlib.nn.GhostBatchNorm against torch's BatchNorm run on the ghost batches one after the other."""

import numpy as np
import pytest
import torch

from bnlib.nn import GhostBatchNorm

TOL = 1e-10


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def _pair(shape, virtual, momentum, seed):
    gen = torch.Generator().manual_seed(seed)
    c = shape[1]
    ghost = GhostBatchNorm(c, virtual_batch_size=virtual, momentum=momentum, dtype=torch.float64)
    ref_cls = torch.nn.BatchNorm1d if len(shape) <= 3 else torch.nn.BatchNorm2d
    ref = ref_cls(c, momentum=momentum, dtype=torch.float64)
    with torch.no_grad():
        w, b = torch.rand(c, generator=gen, dtype=torch.float64) + 0.5, torch.randn(c, generator=gen, dtype=torch.float64)
        for m in (ghost, ref):
            m.weight.copy_(w), m.bias.copy_(b)
    x = 2.0 + 3.0 * torch.randn(shape, generator=gen, dtype=torch.float64)
    dy = torch.randn(shape, generator=gen, dtype=torch.float64)
    return ghost, ref, x, dy


@pytest.mark.parametrize(
    "shape, virtual, momentum",
    [((12, 5), 4, 0.1), ((14, 5), 4, 0.1), ((12, 3, 4, 4), 3, None), ((10, 4, 6), 5, 0.3), ((6, 5), 64, 0.1)],
)
def test_ghost_bn_is_bn_on_each_ghost_batch_in_turn(shape, virtual, momentum):
    ghost, ref, x, dy = _pair(shape, virtual, momentum, seed=sum(shape) + virtual)
    for step in range(2):  # the running statistics accumulate over steps
        xg = x.clone().requires_grad_(True)
        yg = ghost(xg)
        yg.backward(dy)
        xr = x.clone().requires_grad_(True)
        yr = torch.cat([ref(chunk) for chunk in xr.split(virtual)])
        yr.backward(dy)
        assert rel(yg.detach(), yr.detach()) <= TOL
        assert rel(xg.grad, xr.grad) <= TOL
        assert rel(ghost.weight.grad, ref.weight.grad) <= TOL
        assert rel(ghost.bias.grad, ref.bias.grad) <= TOL
        for m in (ghost, ref):
            m.weight.grad = m.bias.grad = None
    assert rel(ghost.running_mean, ref.running_mean) <= TOL
    assert rel(ghost.running_var, ref.running_var) <= TOL
    assert int(ghost.num_batches_tracked) == int(ref.num_batches_tracked)  # counts ghost batches
    ghost.eval(), ref.eval()
    assert rel(ghost(x).detach(), ref(x).detach()) <= TOL


def test_ghost_statistics_differ_from_the_whole_batch():
    ghost, ref, x, dy = _pair((16, 3), 4, 0.1, seed=0)
    y_whole = torch.nn.functional.batch_norm(x, None, None, training=True)
    y_ghost = ghost(x).detach()
    assert rel(y_ghost, y_whole) > 0.01
    # each ghost batch is normalised: mean 0 within every slice of 4
    assert float(y_ghost.reshape(4, 4, 3).mean(dim=1).sub(ghost.bias.detach()).abs().max()) < 1e-12


def test_state_dict_repr_and_errors():
    g = GhostBatchNorm(3, virtual_batch_size=32)
    assert g.state_dict().keys() == torch.nn.BatchNorm1d(3).state_dict().keys()
    assert "virtual_batch_size=32" in repr(g)
    with pytest.raises(ValueError, match="virtual_batch_size"):
        GhostBatchNorm(3, virtual_batch_size=0)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        GhostBatchNorm(3, virtual_batch_size=4)(torch.randn(5, 3))  # a last ghost batch of one
    with pytest.raises(ValueError, match="at least 2D"):
        g(torch.randn(4))
