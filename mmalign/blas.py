"""Dense float32 products on the BLAS library that this CPU runs fastest.

torch's CPU wheels multiply with Intel's MKL. On CPUs of other vendors MKL takes generic code
paths, and for the shapes training lives on (thousands × a few hundred × thousands: the
contrastive loss's similarities, the pseudo-pair search's blocks) numpy's OpenBLAS, which
has kernels for AMD's cores, ran them 1.3-2× faster on an AMD EPYC (docs/benchmarks.md).
So the choice is made by rule, not by a timing probe, so that two runs on one machine
always compute the same bits: OpenBLAS where torch's BLAS is MKL, the CPU is not Intel's,
and numpy's BLAS is OpenBLAS; torch everywhere else (and always off the CPU).
``MMALIGN_BLAS=torch|openblas`` overrides the rule.
"""

from __future__ import annotations

import functools
import os
import numpy as np
import torch

from mmalign.errors import MMAlignError
from mmalign.hardware import cpuinfo

CHOICES = ("torch", "openblas")


@functools.cache
def backend() -> tuple[str, str]:
    """(``torch`` | ``openblas``, why): decided once per process."""
    forced = os.environ.get("MMALIGN_BLAS", "").strip().lower()
    if forced:
        if forced not in CHOICES:
            raise MMAlignError(f"MMALIGN_BLAS={forced!r} is not one of {', '.join(CHOICES)}")
        return forced, "MMALIGN_BLAS"
    if not torch.backends.mkl.is_available():
        return "torch", "torch's BLAS is not MKL"
    vendor = cpuinfo("vendor_id")
    if vendor in ("GenuineIntel", ""):
        return "torch", f"MKL on {vendor or 'an unknown CPU vendor'}"
    if "openblas" not in _numpy_blas():
        return "torch", f"MKL on {vendor}, and numpy has no OpenBLAS"
    return "openblas", f"MKL takes generic paths on {vendor}; numpy's OpenBLAS has kernels for it"


def mm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b`` for 2-D tensors (views such as ``x.T`` welcome), on the chosen BLAS; into ``out`` if given.

    Only float32 CPU tensors outside autograd go to OpenBLAS (inside an autograd Function's
    forward or backward, or under no_grad); anything else is torch's.
    """
    recorded = torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)
    if (a.dtype != torch.float32 or b.dtype != torch.float32 or a.device.type != "cpu" or b.device.type != "cpu"
            or recorded or backend()[0] != "openblas"):
        return torch.mm(a, b, out=out) if out is not None else a @ b
    out = torch.empty(a.shape[0], b.shape[1]) if out is None else out
    np.matmul(a.detach().numpy(), b.detach().numpy(), out=out.numpy())
    return out


def _numpy_blas() -> str:
    """numpy's BLAS library name, lower case ('' when numpy does not say)."""
    try:
        config = np.show_config(mode="dicts")
        return str(config["Build Dependencies"]["blas"]["name"]).lower()
    except (TypeError, KeyError, AttributeError):
        return ""
