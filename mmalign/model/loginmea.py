"""LoginMEA (Su et al., ECAI 2024): local fusion of modalities, then global relational attention.

The assembly follows loginmea-spec §2; :class:`~mmalign.model.config.ModelConfig` exposes every
place where the paper and the authors' code differ, and the ablations of the paper's Table 3 /
§5.4.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.nn.functional import normalize

from mmalign.graph import Graph
from mmalign.model.activation import tanh
from mmalign.model.config import ModelConfig
from mmalign.model.encoders import ModalityEncoder, dense, multiply, row_slice
from mmalign.model.fusion import AdaptiveWeights, ConcatFusion, EarlyConcat, LowRankFusion, weighted_sum
from mmalign.model.rrea import GraphStack, relation_set_vectors
from mmalign.sparse import SLICE_ROWS, spmm


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
        # alone rank almost as well projected to 300 as exact; docs/benchmarks.md, History,
        # "Names"). Fixed, not learned: a projection trained on the seeds fits their names and
        # loses what generalises to the others.
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

    @property
    def width(self) -> int:
        """Columns of :meth:`forward`'s output, known before any forward (to lay out its output)."""
        c = self.config
        width = (c.depth + 1) * c.dim if self.use_structure else 0
        if self.n_fused:
            fused = c.modal_dim if c.fusion == "weighted_sum" else c.dim
            layer0 = self.n_fused * c.modal_dim if c.joint_layer0 == "early_concat" else fused
            if c.paradigm == "login":
                width += layer0 + c.depth * fused
            else:
                width += layer0 + (fused if c.joint_layer0 == "early_concat" else 0)
        return width + self.direct_width

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
        return list(self.iter_blocks(features, graph, entities))

    def iter_blocks(self, features: list[torch.Tensor], graph: Graph, entities: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
        """The blocks of :meth:`forward_blocks`, each yielded as soon as it is final.

        Without gradients nothing else keeps a yielded block alive, so a consumer that copies
        each one away and drops it (:meth:`~mmalign.training.loop.Trainer.embeddings`) holds
        its output, the block the next layer reads and that layer's temporaries: at 1M
        entities a side the whole-graph forward's blocks alone are 4.8 GB.
        """
        blocks = self._model_blocks(features, graph, entities)
        if torch.is_grad_enabled():
            # Training keeps every block for the backward anyway. The direct blocks' norms are
            # taken after the last model block, as they always were: autograd sums a block's
            # gradients in the order its uses were built, and with it the trained bits.
            kept = list(blocks)
            if self.direct:
                kept += self.direct_blocks(features, sum((b.float() * b.float()).sum(1) for b in kept))
            yield from kept
            return
        squared: torch.Tensor | int = 0  # Σ of the model blocks' squared row norms, for the direct blocks
        for block in blocks:
            if self.direct:
                squared = squared + (block.float() * block.float()).sum(1)
            yield block
            del block
        if self.direct:
            yield from self.direct_blocks(features, squared)

    def _model_blocks(self, features: list[torch.Tensor], graph: Graph, entities: torch.Tensor | None) -> Iterator[torch.Tensor]:
        """The structure stack's blocks, then the local stage's and the joint stack's."""
        c = self.config
        set_vectors = relation_set_vectors(graph, self.relation_table) if c.graph_layer == "rrea" else None
        structure: list[torch.Tensor] = []  # kept only where the graph projection reads them
        if self.use_structure:
            table = self.entity_table if entities is None else self.entity_table.index_select(0, entities)
            stack = self.structure.iterate(tanh(spmm(graph.mean_pattern, graph.mean_weights, table)), graph, set_vectors)
            del table
            for block in stack:
                if c.paradigm == "gam":
                    structure.append(block)
                yield block
                del block
        if not self.n_fused:
            return
        layer0, fused = self._local_stage(features, structure, graph, set_vectors)
        del structure
        if c.paradigm != "login":
            yield layer0
            if layer0 is not fused:
                yield fused
            return
        joint = self.joint.iterate(fused, graph, set_vectors)
        del fused
        next(joint)  # its input, the fused block: replaced by the layer-0 block
        yield layer0
        del layer0
        yield from joint

    def _local_stage(self, features: list[torch.Tensor], structure: list[torch.Tensor], graph: Graph,
                     set_vectors: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer-0 block and the fused block (the same tensor unless layer 0 is the early concatenation).

        Without gradients, on a graph of more than :data:`SLICE_ROWS` entities, the stage runs
        on slices of rows (encoders, weights and fusion are row-wise): the fusion's
        N × (rank · width) products would otherwise be the forward's largest temporaries
        (6.4 GB per modality at 1M entities a side). Graphs upon each modality (``gum``) are
        not row-wise and run whole.
        """
        n = graph.n_entities
        if torch.is_grad_enabled() or self.config.paradigm == "gum" or n <= SLICE_ROWS:
            return self._local(features, structure, graph, set_vectors)
        layer0 = fused = None
        for start in range(0, n, SLICE_ROWS):
            stop = min(start + SLICE_ROWS, n)
            piece0, piece = self._local([row_slice(f, start, stop) for f in features], [b[start:stop] for b in structure], graph, set_vectors)
            if fused is None:
                fused = piece.new_empty(n, piece.shape[1])
                layer0 = fused if piece0 is piece else piece0.new_empty(n, piece0.shape[1])
            fused[start:stop] = piece
            if layer0 is not fused:
                layer0[start:stop] = piece0
        assert layer0 is not None and fused is not None
        return layer0, fused

    def _local(self, features: list[torch.Tensor], structure: list[torch.Tensor], graph: Graph,
               set_vectors: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoders, graph projection or per-modality stacks, fusion: (layer-0 block, fused block)."""
        c = self.config
        xs = [encoder(f) for encoder, f in zip(self.encoders, features)]
        if c.paradigm == "gum":
            xs = [stack(tanh(x), graph, set_vectors)[-1] for stack, x in zip(self.modality_stacks, xs)]
        if c.paradigm == "gam":
            xs.append(self.graph_projection(torch.cat(structure, dim=1)))
        fused = tanh(self.fuse(xs))
        return (self.early(xs) if c.joint_layer0 == "early_concat" else fused), fused

    def reweight_direct(self, embeddings: torch.Tensor, weight: float) -> torch.Tensor:
        """L2-normalised outputs as if ``direct_weight`` were ``weight`` — exact, no forward.

        The direct blocks are the last ``direct_width`` columns; rescaling them and normalising
        again gives what the model computes with that weight, so evaluation can try several.
        """
        scaled = embeddings.clone()
        scaled[:, embeddings.shape[1] - self.direct_width :] *= weight / self.config.direct_weight
        return normalize(scaled, dim=1)

    def direct_blocks(self, features: list[torch.Tensor], squared: torch.Tensor) -> list[torch.Tensor]:
        """One block per shared-space modality: its unit rows scaled to ``w`` × the model rows' norm.

        ``squared``: the model blocks' squared row norms, summed. Scaling by each row's norm
        makes the weight exact after the final L2 normalisation: an output cosine is
        ``(cos_model + w² Σ cos_direct / D) / (1 + w²)`` for ``D`` direct modalities, whatever
        the scale the model's blocks reach. Zero rows (no name) stay zero.
        """
        scale = self.config.direct_weight / math.sqrt(len(self.direct)) * torch.sqrt(squared).unsqueeze(1)
        return [scale * unit for unit in self.direct_units(features)]

    @torch.no_grad()
    def direct_units(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Unit rows of each direct modality, computed once per input object.

        They depend only on the fixed inputs and the fixed projection, yet every forward (each
        step, each evaluation) asked for them again, a cost paid on every forward for nothing
        (docs/benchmarks.md, "Memory and speed of the training step").
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
