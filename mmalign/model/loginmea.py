"""LoginMEA (Su et al., ECAI 2024): local fusion of modalities, then global relational attention.

The assembly follows loginmea-spec §2; :class:`~mmalign.model.config.ModelConfig` exposes every
place where the paper and the authors' code differ, and the ablations of the paper's Table 3 /
§5.4.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn.functional import normalize

from mmalign.graph import Graph
from mmalign.model.config import ModelConfig
from mmalign.model.encoders import ModalityEncoder, dense, multiply
from mmalign.model.fusion import AdaptiveWeights, ConcatFusion, EarlyConcat, LowRankFusion, weighted_sum
from mmalign.model.rrea import GraphStack, relation_set_vectors
from mmalign.sparse import spmm


class LoginMEA(nn.Module):
    """Maps modality inputs + the graph to one embedding per entity (rows: global ids)."""

    def __init__(self, config: ModelConfig, modality_dims: list[int], n_entities: int, n_relations: int,
                 direct: Sequence[int] = (), compute_dtype: torch.dtype = torch.float32) -> None:
        """``config`` resolved (no unset variant settings); ``direct``: indices of the modalities
        whose inputs share one space across the KGs; ``compute_dtype``: of the fusion's big products."""
        super().__init__()
        if config.structure_branch is None or config.joint_layer0 is None:
            raise ValueError("LoginMEA needs a resolved ModelConfig (TrainConfig.resolved())")
        c = self.config = config
        self.direct = list(direct) if c.direct_weight > 0 else []
        # A fixed Gaussian projection (Johnson-Lindenstrauss) brings wide inputs such as 16k
        # hashed n-gram buckets down to the graph width with cosines nearly kept (zh_en names
        # alone: H@1 0.736 exact, 0.726 projected to 300). Fixed, not learned: a projection
        # trained on the seeds fits their names and loses what generalises to the others.
        # Built from its own generator, so it is the same in every run and never checkpointed.
        generator = torch.Generator().manual_seed(0)
        self._direct_units: tuple[tuple, list[torch.Tensor]] | None = None  # see direct_units
        self.direct_width = sum(min(modality_dims[m], c.direct_dim) for m in self.direct)  # output columns
        for m in self.direct:
            if modality_dims[m] > c.direct_dim:
                projection = torch.randn(modality_dims[m], c.direct_dim, generator=generator) / math.sqrt(c.direct_dim)
                self.register_buffer(f"direct_projection_{m}", projection, persistent=False)
        self.encoders = nn.ModuleList(ModalityEncoder(d, c.modal_dim) for d in modality_dims)
        if c.graph_layer == "rrea":  # GAT layers use no relation information
            self.relation_table = nn.Parameter(torch.empty(2 * n_relations, c.dim))
            nn.init.xavier_uniform_(self.relation_table)
        self.use_structure = c.structure_branch or c.paradigm == "gam" or not modality_dims
        if self.use_structure:
            self.entity_table = nn.Parameter(torch.empty(n_entities, c.dim))
            nn.init.xavier_uniform_(self.entity_table)
            self.structure = GraphStack(c.dim, c.depth, c.graph_layer, c.attention)
        n_fused = len(modality_dims) + (1 if c.paradigm == "gam" else 0)
        self.n_fused = n_fused
        if n_fused:
            if c.paradigm == "gam":
                self.graph_projection = nn.Linear(c.dim * (c.depth + 1), c.modal_dim)
            if c.paradigm == "gum":
                self.modality_stacks = nn.ModuleList(GraphStack(c.modal_dim, c.depth, c.graph_layer, c.attention) for _ in modality_dims)
            if c.adaptive_weights and c.fusion != "concat":
                self.weights = AdaptiveWeights(c.modal_dim, n_fused, c.modality_score == "per_modality")
            if c.fusion == "lmf":
                self.fusion = LowRankFusion([c.modal_dim] * n_fused, c.dim, c.rank, None if compute_dtype == torch.float32 else compute_dtype)
            elif c.fusion == "concat":
                self.fusion = ConcatFusion([c.modal_dim] * n_fused, c.dim)
            if c.joint_layer0 == "early_concat":
                self.early = EarlyConcat(n_fused)
            if c.paradigm == "login":
                self.joint = GraphStack(c.dim, c.depth, c.graph_layer, c.attention)

    def modality_weights(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """Entity-adaptive weights α (N × M); uniform when the ablation turns them off."""
        if self.config.adaptive_weights:
            return self.weights(xs)
        return xs[0].new_full((xs[0].shape[0], len(xs)), 1.0 / len(xs))

    def fuse(self, xs: list[torch.Tensor]) -> torch.Tensor:
        if self.config.fusion == "concat":
            return self.fusion(xs)
        alpha = self.modality_weights(xs)
        weighted = [alpha[:, m : m + 1] * normalize(x, dim=1) for m, x in enumerate(xs)]
        return self.fusion(weighted) if self.config.fusion == "lmf" else weighted_sum(weighted)

    def forward(self, features: list[torch.Tensor], graph: Graph) -> torch.Tensor:
        """Embeddings ``[G0;G1;G2 ; J0;J1;J2]`` (code) or ``[H0;J1;J2]`` (paper), N × D."""
        return torch.cat(self.forward_blocks(features, graph), dim=1)

    def forward_blocks(self, features: list[torch.Tensor], graph: Graph, entities: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The blocks of :meth:`forward` before concatenation.

        Training gathers only the rows its loss needs from each block, which avoids an N × D
        copy forward and an N × D zero-filled gradient backward. ``entities``: the global ids
        of ``graph``'s rows when it is a part of the whole graph (partitioned training;
        ``features`` then hold those rows only).
        """
        c = self.config
        set_vectors = relation_set_vectors(graph, self.relation_table) if c.graph_layer == "rrea" else None
        blocks: list[torch.Tensor] = []
        if self.use_structure:
            table = self.entity_table if entities is None else self.entity_table.index_select(0, entities)
            g0 = torch.tanh(spmm(graph.mean_pattern, graph.mean_weights, table))
            blocks += self.structure(g0, graph, set_vectors)
        if not self.n_fused:
            return blocks
        xs = [encoder(f) for encoder, f in zip(self.encoders, features)]
        if c.paradigm == "gum":
            xs = [stack(torch.tanh(x), graph, set_vectors)[-1] for stack, x in zip(self.modality_stacks, xs)]
        if c.paradigm == "gam":
            xs.append(self.graph_projection(torch.cat(blocks, dim=1)))
        fused = torch.tanh(self.fuse(xs))
        layer0 = self.early(xs) if c.joint_layer0 == "early_concat" else fused
        if c.paradigm == "login":
            blocks += [layer0] + self.joint(fused, graph, set_vectors)[1:]
        else:
            blocks += [layer0, fused] if c.joint_layer0 == "early_concat" else [fused]
        if self.direct:
            blocks += self.direct_blocks(features, blocks)
        return blocks

    def reweight_direct(self, embeddings: torch.Tensor, weight: float) -> torch.Tensor:
        """L2-normalised outputs as if ``direct_weight`` were ``weight`` — exact, no forward.

        The direct blocks are the last ``direct_width`` columns; rescaling them and normalising
        again gives what the model computes with that weight, so evaluation can try several.
        """
        scaled = embeddings.clone()
        scaled[:, embeddings.shape[1] - self.direct_width :] *= weight / self.config.direct_weight
        return normalize(scaled, dim=1)

    def direct_blocks(self, features: list[torch.Tensor], blocks: list[torch.Tensor]) -> list[torch.Tensor]:
        """One block per shared-space modality: its unit rows scaled to ``w`` × the model rows' norm.

        Scaling by each row's norm makes the weight exact after the final L2 normalisation: an
        output cosine is ``(cos_model + w² Σ cos_direct / D) / (1 + w²)`` for ``D`` direct
        modalities, whatever the scale the model's blocks reach. Zero rows (no name) stay zero.
        """
        norm = torch.sqrt(sum((b.float() * b.float()).sum(1) for b in blocks)).unsqueeze(1)
        scale = self.config.direct_weight / math.sqrt(len(self.direct)) * norm
        return [scale * unit for unit in self.direct_units(features)]

    @torch.no_grad()
    def direct_units(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Unit rows of each direct modality, computed once per input object.

        They depend only on the fixed inputs and the fixed projection, yet every forward (each
        step, each evaluation) asked for them again: about 0.1 s each on zh_en's 39k names.
        The cache holds the inputs themselves, so other inputs are never served stale rows.
        """
        inputs = tuple(features[m] for m in self.direct)
        cached = self._direct_units
        if cached is None or any(old is not new for old, new in zip(cached[0], inputs)):
            units = []
            for m, x in zip(self.direct, inputs):
                projection = getattr(self, f"direct_projection_{m}", None)
                projected = multiply(x, projection) if projection is not None else dense(x)
                units.append(normalize(projected.float(), dim=1))
            self._direct_units = (inputs, units)
        return self._direct_units[1]
