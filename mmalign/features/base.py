"""The modality plug: how a modality turns workspace data into one N × D matrix.

Rows follow the model's global id space (KG1 entities first, then KG2). A builder returns
``None`` when no entity has the modality, so the model skips it (and the run summary says so)
instead of fusing a column of fallbacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from mmalign.report import SILENT, Reporter


@dataclass
class FeatureContext:
    """What a modality builder may read: the workspace, the graph, the options, a reporter."""

    workspace: Any  # mmalign.workspace.Workspace
    options: dict[str, Any]
    neighbors: Any = None  # scipy-free CSR adjacency (torch sparse CSR, N × N, both KGs), optional
    reporter: Reporter = SILENT


@dataclass
class ModalityFeatures:
    """One modality's input matrix (dense float32 or sparse CSR) and who really has it."""

    name: str
    matrix: torch.Tensor
    present: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])


Builder = Callable[[FeatureContext], "ModalityFeatures | None"]
REGISTRY: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator: make ``build`` available as modality ``name``."""

    def wrap(build: Builder) -> Builder:
        REGISTRY[name] = build
        return build

    return wrap
