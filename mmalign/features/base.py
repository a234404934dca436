"""The modality plug: how a modality turns workspace data into N × D matrices.

Rows follow the model's global id space (KG1 entities first, then KG2). A builder returns
one :class:`ModalityFeatures`, or a list when the user asked for several encodings of one
modality (names by ``char+sbert``: each is fused as a modality of its own), or ``None`` when
no entity has the modality, so the model skips it (and the run summary says so) instead of
fusing a column of fallbacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from mmalign.features.config import FeatureConfig
from mmalign.report import SILENT, Reporter


@dataclass
class FeatureContext:
    """What a modality builder may read: the workspace, the graph, its settings, a reporter."""

    workspace: Any  # mmalign.workspace.Workspace
    config: FeatureConfig
    seed: int = 0  # of anything a builder draws at random (a fallback for missing images)
    device: str = "cpu"  # where an encoder that needs one runs (sbert names)
    neighbors: Any = None  # torch sparse CSR N × N: triple counts between entities, both directions
    reporter: Reporter = SILENT
    n_kg1: int = 0  # KG1 entities (global ids 0..n_kg1-1); KG2 follow
    n_kg2: int = 0
    triples: np.ndarray | None = None  # (T, 3) global (head, relation, tail), both KGs
    n_relations: int = 0  # relation ids of both KGs (KG2's offset by KG1's count)

    @property
    def n_entities(self) -> int:
        return self.n_kg1 + self.n_kg2


@dataclass
class ModalityFeatures:
    """One modality's input matrix (dense float32 or sparse CSR) and who really has it.

    ``shared_space``: rows of both KGs live in one space where equal things get near rows
    (one text encoder for every name), unlike bags over each KG's own relation vocabulary.
    Such a modality may also enter the output embedding directly (``ModelConfig.direct_weight``).
    """

    name: str  # the modality, or ``modality:encoding`` when a builder gives several
    matrix: torch.Tensor
    present: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    shared_space: bool = False

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def modality(self) -> str:
        """The registered modality these features belong to (``name`` for ``name:char``)."""
        return self.name.partition(":")[0]


Builder = Callable[[FeatureContext], "ModalityFeatures | list[ModalityFeatures] | None"]
REGISTRY: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator: make ``build`` available as modality ``name``."""

    def wrap(build: Builder) -> Builder:
        REGISTRY[name] = build
        return build

    return wrap
