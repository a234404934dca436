"""tanh for the model's N × d blocks: through the logistic function on the CPU.

The graph layers, the fusion and the modality weights apply tanh to every entity's row
several times per step and per whole-graph forward. torch's CPU tanh kernel is much slower
than its sigmoid (docs/benchmarks.md, "Seconds per phase of a late epoch"), so on the CPU
``tanh x = 2 σ(2x) − 1`` is computed in four vectorised passes instead; it differs from
torch's tanh by float32 rounding (below 2e-7 absolute). On other devices torch's own kernel,
one pass, stays. The gradient is ``1 − tanh²``, from the output, as torch's own.
"""

from __future__ import annotations

import torch


class _Tanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y = _through_sigmoid(x, torch.empty_like(x))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def _through_sigmoid(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``2 σ(2x) − 1`` written into ``out`` (which may be ``x``)."""
    torch.mul(x, 2.0, out=out)
    torch.sigmoid(out, out=out)
    return out.mul_(2.0).sub_(1.0)


def tanh(x: torch.Tensor) -> torch.Tensor:
    """``torch.tanh(x)``, differentiable, faster on the CPU."""
    if x.device.type != "cpu":
        return torch.tanh(x)
    if torch.is_grad_enabled() and x.requires_grad:
        return _Tanh.apply(x)
    return _through_sigmoid(x, torch.empty_like(x))


def tanh_(x: torch.Tensor) -> torch.Tensor:
    """``x.tanh_()`` without gradients: in place, faster on the CPU."""
    if x.device.type != "cpu":
        return x.tanh_()
    return _through_sigmoid(x, x)
