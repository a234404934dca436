"""The one place that deals with a CUDA torchvision wheel sitting on a CPU-only torch.

On machines where only the CPU build of torch exists, the only torchvision that matches it
(0.28.0 for torch 2.13.0) is a CUDA build. Importing it fails with
``RuntimeError: operator torchvision::nms does not exist`` because its compiled ops need CUDA
torch libraries, and timm (and transformers / sentence-transformers) import torchvision
unconditionally. We declare the two op schemas torchvision registers without a guard, so the
pure-Python parts (models, transforms) import; the compiled ops stay unavailable, and nothing in
mmalign uses them (images are decoded with PIL).

Where torchvision imports normally (a regular or GPU install) this does nothing.
Import :func:`ensure_torchvision` before the first ``import timm``.
"""

from __future__ import annotations

import sys

_LIBRARY = None  # kept alive at module level: the schemas vanish with the Library object


def ensure_torchvision() -> bool:
    """Make ``import torchvision`` work; return True when the CPU workaround was needed."""
    global _LIBRARY
    if "torchvision" in sys.modules and _LIBRARY is None:
        return False
    try:
        import torchvision  # noqa: F401

        return False
    except RuntimeError as error:
        if "torchvision::nms" not in str(error) and "does not exist" not in str(error):
            raise
    import torch

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    if _LIBRARY is None:
        _LIBRARY = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            _LIBRARY.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision  # noqa: F401,F811

    return True


def import_timm():
    """Return the ``timm`` module, importing torchvision safely first."""
    ensure_torchvision()
    import timm

    return timm
