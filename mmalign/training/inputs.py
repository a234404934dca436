"""What every model of a run reads: the graph and the modality features, built once per run.

Both KGs live in one global id space (KG1 entities first, then KG2; KG2's relations after
KG1's). An ensemble's members share these inputs, so a second member costs no rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmalign.features import REGISTRY
from mmalign.features.base import FeatureContext, ModalityFeatures
from mmalign.features.config import FeatureConfig
from mmalign.graph import Graph, build_graph
from mmalign.model.encoders import SparseInput, prepare_input
from mmalign.report import Reporter
from mmalign.workspace import Workspace


@dataclass
class Inputs:
    """The graph, the features and their device-ready matrices; ids are global."""

    graph: Graph
    features: list[ModalityFeatures]
    matrices: list["torch.Tensor | SparseInput"]
    n1: int  # KG1 entities: global ids 0..n1-1
    n_entities: int
    n_relations: int
    triples: np.ndarray  # global (head, relation, tail) rows the graph was built from

    @property
    def direct(self) -> list[int]:
        """Indices of the modalities whose rows share one space across the KGs (names)."""
        return [m for m, f in enumerate(self.features) if f.shared_space]

    def summary(self, requested: tuple[str, ...]) -> tuple[dict[str, dict], list[str]]:
        """Each built modality's width, coverage and builder info; the requested ones skipped."""
        modalities = {f.name: {"dim": f.dim, "present_kg1": int(f.present[: self.n1].sum()),
                               "present_kg2": int(f.present[self.n1 :].sum()), **f.info} for f in self.features}
        built = {f.modality for f in self.features}
        return modalities, [m for m in requested if m not in built]


def global_triples(workspace: Workspace) -> tuple[np.ndarray, int]:
    """Both KGs' triples in the global id space, and the number of relation ids."""
    kg1, kg2 = workspace.kg1, workspace.kg2
    second = kg2.triples.astype(np.int64) + np.array([len(kg1.entities), len(kg1.relations), len(kg1.entities)])
    return np.concatenate([kg1.triples.astype(np.int64), second]), len(kg1.relations) + len(kg2.relations)


def build_inputs(workspace: Workspace, config: FeatureConfig, seed: int, device: torch.device, reporter: Reporter) -> Inputs:
    """The graph and every requested modality that some entity has, in registry order."""
    triples, n_relations = global_triples(workspace)
    n1 = len(workspace.kg1.entities)
    n_entities = n1 + len(workspace.kg2.entities)
    graph = build_graph(triples, n_entities, n_relations)
    context = FeatureContext(workspace=workspace, config=config, seed=seed, device=str(device), neighbors=graph.counts,
                             reporter=reporter, n_kg1=n1, n_kg2=n_entities - n1, triples=triples, n_relations=n_relations)
    features: list[ModalityFeatures] = []
    for name in config.modalities:
        built = REGISTRY[name](context)
        if built is None:
            reporter.info(f"modality {name}: no entity has it, skipped")
        else:
            features += built if isinstance(built, list) else [built]
    matrices = [prepare_input(f.matrix, device) for f in features]
    return Inputs(graph.to(device), features, matrices, n1, n_entities, n_relations, triples)
