"""The BLAS the dense float32 products run on: chosen by rule, overridable, same numbers as torch."""

from __future__ import annotations

import pytest
import torch

from mmalign import blas
from mmalign.errors import MMAlignError


@pytest.fixture(autouse=True)
def fresh_choice():
    blas.backend.cache_clear()
    yield
    blas.backend.cache_clear()


@pytest.mark.parametrize("forced", ["torch", "openblas"])
def test_products_match_torch_and_repeat_bit_for_bit(monkeypatch: pytest.MonkeyPatch, forced: str) -> None:
    monkeypatch.setenv("MMALIGN_BLAS", forced)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, 70, generator=g), torch.randn(200, 70, generator=g)
    product = blas.mm(a, b.T)  # a transposed view, as the loss and the search pass it
    assert blas.backend() == (forced, "MMALIGN_BLAS")
    assert torch.allclose(product, a @ b.T, atol=1e-4) and torch.equal(product, blas.mm(a, b.T))
    out = torch.empty(300, 200)
    assert blas.mm(a, b.T, out=out) is out and torch.equal(out, product)


def test_bfloat16_and_recorded_products_stay_with_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMALIGN_BLAS", "openblas")
    a = torch.randn(8, 4, requires_grad=True)
    product = blas.mm(a, torch.randn(4, 3))
    assert product.requires_grad  # autograd records it: torch's product
    assert blas.mm(a.detach().bfloat16(), torch.randn(4, 3).bfloat16()).dtype == torch.bfloat16


def test_rule_and_bad_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MMALIGN_BLAS", raising=False)
    monkeypatch.setattr(blas, "cpuinfo", lambda key: "GenuineIntel")
    assert blas.backend()[0] == "torch"
    blas.backend.cache_clear()
    monkeypatch.setattr(blas, "cpuinfo", lambda key: "AuthenticAMD")
    monkeypatch.setattr(blas, "_numpy_blas", lambda: "scipy-openblas")
    assert blas.backend()[0] == ("openblas" if torch.backends.mkl.is_available() else "torch")
    blas.backend.cache_clear()
    monkeypatch.setenv("MMALIGN_BLAS", "mkl")
    with pytest.raises(MMAlignError, match="MMALIGN_BLAS='mkl' is not one of torch, openblas"):
        blas.backend()
