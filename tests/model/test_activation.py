"""The model's tanh (through the logistic function on the CPU) against torch's."""

from __future__ import annotations

import torch

from mmalign.model.activation import tanh, tanh_


def test_tanh_matches_torch_within_float32_rounding_and_saturates() -> None:
    x = torch.cat([torch.linspace(-30, 30, 10_001), torch.tensor([0.0, -0.0, 1e-8, -1e-8])])
    got = tanh(x)
    assert (got - torch.tanh(x.double())).abs().max() < 2e-7
    assert got.abs().max() <= 1.0
    assert got[0] == -1.0 and got[10_000] == 1.0
    assert torch.equal(tanh_(x.clone()), got)  # the in-place form computes the same bits


def test_tanh_gradient_is_one_minus_its_square() -> None:
    x = torch.randn(64, 8, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(tanh, (x,))
    y = torch.randn(64, 8, requires_grad=True)
    grad = torch.randn(64, 8)
    (tanh(y) * grad).sum().backward()
    assert torch.allclose(y.grad, grad * (1 - torch.tanh(y.detach()) ** 2), atol=1e-6)


def test_tanh_without_gradients_leaves_its_input_alone() -> None:
    x = torch.randn(10)
    before = x.clone()
    with torch.no_grad():
        tanh(x)
    assert torch.equal(x, before)
